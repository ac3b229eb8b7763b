"""The first response is measured to the earliest agent reply after the client's first message,
as the log orders them (time, then id), whatever order the replies are recorded in: two replies
sent at once, or one recorded late (a retry after a crash), must not leave the later reply
counted. The rebuild, which reads the log, agrees each time."""

from datetime import timedelta
from typing import Any

import httpx
import pytest

from backend.core.ids import new_id
from backend.messages import repository as messages_repo
from backend.messages.models import Message
from backend.reports import aggregates, rebuild, repository
from backend.reports import service as reports
from tests.factories import API, Tenant, make_client_ticket, make_open_connection, make_tenant


@pytest.fixture
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, departments=1, agents=1)


async def _replies(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, *offsets_ms: int
) -> tuple[dict[str, Any], int, list[Message]]:
    """A ticket its client opened and its agent assumed, and agent replies stored (not yet
    recorded) at the given times after the client's first message; with that message's time."""
    conn = await make_open_connection(client, tenant, db)
    ticket = await make_client_ticket(client, tenant, db, connection=conn, signed=True)
    r = await client.post(f"{API}/tickets/{ticket['id']}/assume", headers=tenant.agents[0]["headers"])
    assert r.status_code == 200, r.text
    first_in = await db.messages.find_one({"ticket_id": ticket["id"], "direction": "in"})
    stored = await db.tickets.find_one({"_id": ticket["id"]})
    replies = []
    for offset in offsets_ms:
        doc = Message.model_validate(
            {
                "_id": new_id(),
                "reseller_id": tenant.id,
                "ticket_id": ticket["id"],
                "direction": "out",
                "sender_type": "agent",
                "sender_id": tenant.agents[0]["id"],
                "agent_id": tenant.agents[0]["id"],
                "department_id": stored["department_id"],
                "channel": stored["channel"],
                "body": "resposta",
                "status": "sent",
                "created_at": first_in["created_at"] + timedelta(milliseconds=offset),
            }
        )
        await messages_repo.insert(db, doc)
        replies.append(doc)
    return stored, reports._epoch_ms(first_in["created_at"]), replies


async def _first_responses(db: Any, tenant: Tenant) -> list[int]:
    months = await repository.months(db, tenant.id, [m for m in await repository.known_months(db, tenant.id)])
    values: list[int] = []
    for state in months:
        for cell in state.get("cells", {}).values():
            values.extend(aggregates.unpack(cell.get("fr")))
    return sorted(values)


async def _clean(db: Any, tenant: Tenant) -> None:
    found = await rebuild.audit(db, tenant.id)
    assert found.clean, (found.month_differences, found.waiting_differences, found.corrupt)


async def test_the_later_reply_recorded_first_is_displaced(client: httpx.AsyncClient, db: Any, tenant: Tenant) -> None:
    ticket, _, (early, late) = await _replies(client, db, tenant, 1_000, 5_000)
    await reports.record_message(db, late, ticket)
    assert await _first_responses(db, tenant) == [5_000]
    await reports.record_message(db, early, ticket)
    assert await _first_responses(db, tenant) == [1_000]
    await _clean(db, tenant)
    # Recorded again (a retry, a redelivery), in either order: nothing moves.
    for doc in (early, late, late, early):
        await reports.record_message(db, doc, ticket)
    assert await _first_responses(db, tenant) == [1_000]
    await _clean(db, tenant)


async def test_three_replies_recorded_latest_first(client: httpx.AsyncClient, db: Any, tenant: Tenant) -> None:
    ticket, _, (a, b, c) = await _replies(client, db, tenant, 700, 2_000, 9_000)
    for doc in (c, b, a):
        await reports.record_message(db, doc, ticket)
    assert await _first_responses(db, tenant) == [700]
    await _clean(db, tenant)


async def test_an_earlier_reply_displaces_one_between_its_claim_and_its_entry(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The later reply has won the first-reply claim but not yet appended its entry when the
    earlier one is recorded from start to end: the earlier one records the later one's entry
    before taking its value back, so no fold removes a value that is not there yet."""
    ticket, _, (early, late) = await _replies(client, db, tenant, 1_500, 4_000)
    real_record = repository.record_month
    injected: list[str] = []

    async def interleaved(db_: Any, reseller_id: str, month: str, key: str, parts: list[dict[str, Any]]) -> None:
        if key == f"msg:{late.id}" and not injected:
            injected.append(key)
            await reports.record_message(db, early, ticket)  # the competitor, to its end
        await real_record(db_, reseller_id, month, key, parts)

    monkeypatch.setattr(repository, "record_month", interleaved)
    await reports.record_message(db, late, ticket)
    assert injected == [f"msg:{late.id}"]
    assert await _first_responses(db, tenant) == [1_500]
    await _clean(db, tenant)


async def test_a_reply_before_the_clients_first_message_is_not_a_response(
    client: httpx.AsyncClient, db: Any, tenant: Tenant
) -> None:
    ticket, _, (before, after) = await _replies(client, db, tenant, -3_000, 2_500)
    for doc in (after, before):
        await reports.record_message(db, doc, ticket)
    assert await _first_responses(db, tenant) == [2_500]
    await _clean(db, tenant)
