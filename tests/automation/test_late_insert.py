"""An automatic message whose insert lands more than a lease after it was queued (a stalled store),
after the outbox worker passed its entry as never stored, and whose writer died right after that
insert, before its own look for the worker's mark (automation `_send` → outbound
`queue_again_if_passed`): the worker's walk of what it passed (`OutboundWorker._recheck_passed`)
finds it stored and pending and sends it, with no one else coming (no redelivery of the client's
message, no retry of the step). Agents' replies in the same case: tests/outbound/test_order.py.

No processor, outbox worker or ticket sweep runs in the API process here: the test runs the
processor's pass and a worker with a half-second lease itself, so that nothing but that worker
touches the message after its writer died."""

import asyncio
from typing import Any

import httpx
import pytest

from backend.automation.service import GREETING
from backend.connections.providers import registry
from backend.core.config import Settings
from backend.messages import repository as messages_repo
from backend.messages.models import Message
from backend.outbound import service as outbound
from backend.webhooks.processor import WebhookProcessor
from tests.automation.helpers import company, sent_to
from tests.factories import unique_phone
from tests.fakes.harness import FakeEvolution
from tests.holds import arrived, holds
from tests.outbound.helpers import passes_until_sent, quick_lease_worker, writer_dies_once
from tests.webhooks.helpers import raw_id_of, text_upsert

__all__ = ["holds"]

HOOK = "/api/v1/webhooks/whatsapp"
CONFIG = {"welcome_message": "Olá {{cliente}}, já vamos atender."}


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"WEBHOOK_PROCESSOR_ENABLED": False, "OUTBOUND_WORKER_ENABLED": False, "TICKET_SWEEP_ENABLED": False}


async def _process_pending(db: Any, settings: Settings, conn: dict[str, Any]) -> None:
    """The processor's pass over the connection's deliveries not yet processed."""
    pending = await db.webhook_events_raw.find({"connection_id": conn["id"], "status": "received"}).to_list(None)
    await WebhookProcessor(db, settings).run_once({int(r["_id"].split(":")[1]) for r in pending})


async def _deliver(client: httpx.AsyncClient, db: Any, conn: dict[str, Any], phone: str, text: str) -> int:
    """The provider posts a client's message; returns its lane."""
    token = (await db.whatsapp_connections.find_one({"_id": conn["id"]}))["webhook_token"]
    upsert = text_upsert(phone, f"A{phone}", text, name="Maria")
    r = await client.post(f"{HOOK}/{conn['id']}", json=upsert, headers={"X-Webhook-Token": token})
    assert r.status_code == 200, r.text
    return int(raw_id_of(r).split(":")[1])


async def test_a_late_stored_greeting_whose_writer_died_is_sent_with_no_one_else_coming(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    holds: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant, conn = await company(client, admin_headers, evolution, config=CONFIG, processed=False)
    await _process_pending(db, settings, conn)  # the phone's "open": the connection can send
    assert (await db.whatsapp_connections.find_one({"_id": conn["id"]}))["status"] == "open"
    phone = unique_phone()
    ids: list[str] = []

    def greeting(_db: Any, message: Message) -> bool:
        if message.automatic_purpose == GREETING and message.reseller_id == tenant.id:
            ids.append(message.id)
            return True
        return False

    held = holds(messages_repo, "insert", greeting)
    lane = await _deliver(client, db, conn, phone, "oi")
    processing = asyncio.create_task(WebhookProcessor(db, settings).run_once({lane}))
    await arrived(held.entered, processing, "the greeting's insert")
    async with registry.http_client(settings) as http:
        worker = quick_lease_worker(db, settings, http)
        await asyncio.sleep(worker.policy.lease_seconds + 0.2)  # the queue entry outlives a lease
        await worker.run_once()
        assert await outbound.gave_up(db, ids[0]), "the entry was not passed"
        died = writer_dies_once(monkeypatch, ids[0])
        held.go.set()
        await processing  # the processor logs the step's error; no one runs it again here
        assert died, "the writer did not get to its look for the mark"
        stored = await db.messages.find_one({"_id": ids[0]})
        assert stored["status"] == "pending"

        await passes_until_sent(db, worker, [ids[0]], timeout=30)
    assert await sent_to(evolution, phone) == [stored["body"]]
