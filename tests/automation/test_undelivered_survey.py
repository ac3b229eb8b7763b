"""A survey question the client never received asks nothing: the outbox worker is off here (the
question stays queued, as on a connection that cannot send), so a lone digit is a message of a
conversation; once the question leaves, the same digit rates."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from backend.connections.providers import registry
from backend.core.config import Settings
from backend.outbound.worker import OutboundWorker
from tests.automation.helpers import automatic, company, open_ticket, tickets_of, write
from tests.factories import API, unique_phone
from tests.fakes.harness import FakeEvolution, wait_for

CONFIG = {"closing_message": "Tchau {{cliente}}", "csat_enabled": True, "csat_window_hours": 24}


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"OUTBOUND_WORKER_ENABLED": False}


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with registry.http_client(settings) as c:
        yield c


async def test_a_digit_after_an_undelivered_survey_joins_a_conversation_and_after_a_delivered_one_rates(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
) -> None:
    tenant, conn = await company(client, admin_headers, evolution, config=CONFIG)
    agent = tenant.agents[0]["headers"]

    async def finalized_with_survey(phone: str) -> dict[str, Any]:
        await write(evolution, db, conn, phone, "preciso de ajuda")
        ticket = await open_ticket(db, tenant, phone)
        assert (await client.post(f"{API}/tickets/{ticket['_id']}/assume", headers=agent)).status_code == 200
        assert (await client.post(f"{API}/tickets/{ticket['_id']}/finalize", headers=agent)).status_code == 200
        stored = await automatic(db, ticket["_id"])
        assert [(m["automatic_purpose"], m["status"]) for m in stored] == [
            ("closing", "pending"),
            ("survey", "pending"),
        ]
        return ticket

    phone = unique_phone()
    ticket = await finalized_with_survey(phone)
    await write(evolution, db, conn, phone, "5")
    found = await tickets_of(db, tenant, phone)
    assert [t["status"] for t in found] == ["finalizado", "espera"]
    assert await db.messages.find_one({"ticket_id": found[1]["_id"], "body": "5"}) is not None
    assert (await db.tickets.find_one({"_id": ticket["_id"]})).get("rating") is None

    # Another client's survey leaves (the worker runs): its digit rates the finalized ticket.
    phone = unique_phone()
    ticket = await finalized_with_survey(phone)
    worker = OutboundWorker(db, settings, http)

    async def survey_left() -> bool:
        await worker.run_once()
        stored = [m for m in await automatic(db, ticket["_id"]) if m["automatic_purpose"] == "survey"]
        return stored[0]["status"] == "sent"

    assert await wait_for(survey_left, timeout=60)
    raw = await write(evolution, db, conn, phone, "4️⃣")
    assert raw["result"][0].startswith(f"rating 4 of ticket {ticket['_id']}"), raw["result"]
    assert len(await tickets_of(db, tenant, phone)) == 1
