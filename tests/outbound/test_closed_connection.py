"""A reply queued while the connection was open, whose connection closed before the worker got to
it: Evolution would answer the send with an id (PENDING) and never deliver it, so the worker does
not hand it over — the attempt is a retryable error, retried with the usual backoff; the reply
goes out if the phone reconnects before the last attempt and fails with the reason otherwise,
never shown as sent without having left. The API's own worker is off: the test steps one."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from backend.connections.providers import registry
from backend.core.config import Settings
from backend.outbound.worker import OutboundWorker
from tests.factories import make_tenant
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.outbound.helpers import held_ticket, unsigned
from tests.webhooks.helpers import connection_state


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"OUTBOUND_WORKER_ENABLED": False, "OUTBOUND_MAX_ATTEMPTS": 3}


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with registry.http_client(settings) as c:
        yield c


async def _queued_then_closed(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> tuple[dict[str, Any], str, str]:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    r = await client.post(f"/api/v1/tickets/{ticket_id}/messages", json={"body": "já resolvo"}, headers=agent)
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    await connection_state(evolution, db, conn, "close")
    return conn, phone, str(r.json()["id"])


async def _received(evolution: FakeEvolution, phone: str) -> list[str]:
    return [unsigned(s["text"]) for s in await evolution.sent() if s["number"] == phone]


async def test_a_reply_whose_connection_closed_is_retried_then_fails_with_the_reason(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
) -> None:
    conn, phone, message_id = await _queued_then_closed(client, admin_headers, evolution, db)
    worker = OutboundWorker(db, settings, http)
    await worker.run_once()
    first = await db.outbox_attempts.find_one({"_id": f"{message_id}:1"})
    assert (first["result"], first["retryable"], first["error"]) == ("error", True, "connection not connected")
    assert (await db.messages.find_one({"_id": message_id}))["status"] == "pending"

    async def settled_message() -> dict[str, Any] | None:
        await worker.run_once()
        doc: dict[str, Any] = await db.messages.find_one({"_id": message_id})
        return doc if doc["status"] != "pending" else None

    doc = await wait_for(settled_message, timeout=60)
    assert (doc["status"], doc["failure_reason"]) == ("failed", "connection not connected")
    assert await db.outbox_attempts.count_documents({"_id": {"$regex": f"^{message_id}:"}}) == 3
    assert await _received(evolution, phone) == []  # never handed to the provider
    await connection_state(evolution, db, conn, "open")


async def test_a_reply_whose_connection_reopens_before_the_last_attempt_is_sent(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
) -> None:
    conn, phone, message_id = await _queued_then_closed(client, admin_headers, evolution, db)
    worker = OutboundWorker(db, settings, http)
    await worker.run_once()
    assert (await db.outbox_attempts.find_one({"_id": f"{message_id}:1"}))["error"] == "connection not connected"
    await connection_state(evolution, db, conn, "open")

    async def sent() -> dict[str, Any] | None:
        await worker.run_once()
        doc: dict[str, Any] = await db.messages.find_one({"_id": message_id})
        return doc if doc["status"] != "pending" else None

    doc = await wait_for(sent, timeout=60)
    assert doc["status"] == "sent" and doc["provider_message_id"]
    assert await _received(evolution, phone) == ["já resolvo"]
