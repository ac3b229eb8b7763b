"""A scheduled message whose insert lands more than a lease after the due pass queued it (a stalled
store), after the outbox worker passed its entry as never stored, and whose pass died right after
that insert, before its own look for the worker's mark (`run_due` → messages.send_as_agent →
outbound `queue_again_if_passed`): the worker's walk of what it passed
(`OutboundWorker._recheck_passed`) finds it stored and pending and sends it, with no one else
coming (no later due pass). Agents' replies in the same case: tests/outbound/test_order.py.

No due pass or outbox worker runs in the API process here: the test runs one due pass, at a `now`
past the schedule's time, and a worker with a half-second lease itself, so that nothing but that
worker touches the message after its writer died."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from backend.connections.providers import registry
from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.messages import repository as messages_repo
from backend.outbound import service as outbound
from backend.scheduled import service
from tests.factories import make_tenant
from tests.fakes.harness import FakeEvolution, make_connection
from tests.holds import arrived, holds
from tests.outbound.helpers import held_ticket, passes_until_sent, quick_lease_worker, unsigned, writer_dies_once

__all__ = ["holds"]

LATER = timedelta(hours=2)  # the pass's `now`: past the schedule's time


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"SCHEDULED_MESSAGES_ENABLED": False, "OUTBOUND_WORKER_ENABLED": False}


async def test_a_late_stored_scheduled_message_whose_pass_died_is_sent_with_no_one_else_coming(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    holds: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    send_at = datetime.now(UTC) + timedelta(hours=1)
    body = {"body": "lembrete: a visita é amanhã", "send_at": send_at.isoformat()}
    r = await client.post(f"/api/v1/tickets/{ticket_id}/scheduled-messages", json=body, headers=agent)
    assert r.status_code == 201, r.text
    schedule_id = r.json()["id"]
    message_id = service.message_id_of(schedule_id)
    held = holds(messages_repo, "insert", lambda _db, message: message.scheduled_id == schedule_id)
    passing = asyncio.create_task(service.run_due(db, utcnow() + LATER))
    await arrived(held.entered, passing, "the scheduled message's insert")
    async with registry.http_client(settings) as http:
        worker = quick_lease_worker(db, settings, http)
        await asyncio.sleep(worker.policy.lease_seconds + 0.2)  # the queue entry outlives a lease
        await worker.run_once()
        assert await outbound.gave_up(db, message_id), "the entry was not passed"
        died = writer_dies_once(monkeypatch, message_id)
        held.go.set()
        assert await passing == 0  # the pass logs the schedule's error; no later pass runs here
        assert died, "the writer did not get to its look for the mark"
        assert (await db.messages.find_one({"_id": message_id}))["status"] == "pending"

        await passes_until_sent(db, worker, [message_id], timeout=30)
    received = [unsigned(s["text"]) for s in await evolution.sent() if s["number"] == phone]
    assert received == ["lembrete: a visita é amanhã"]
