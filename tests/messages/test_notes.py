"""Internal notes (issue 17 item 5): staff only, never sent, never a reply, announced live."""

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from backend.core.tenancy import Actor, Role
from backend.messages import notes
from backend.realtime.audience import may_receive
from tests.factories import (
    API,
    Tenant,
    assume,
    get_ticket,
    make_agent,
    make_client_ticket,
    make_department,
    make_tenant,
    make_ticket,
)
from tests.fakes.harness import FakeEvolution, app, backend_port, evolution, make_connection, settings, wait_for
from tests.fakes.harness import settings_overrides as settings_overrides
from tests.messages.helpers import walk_thread
from tests.outbound.helpers import held_ticket, unsigned

__all__ = ["app", "backend_port", "evolution", "settings"]


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=2)


@pytest.fixture(scope="module")
async def other(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


async def _note(client: httpx.AsyncClient, ticket_id: str, headers: dict[str, str], body: str) -> httpx.Response:
    return await client.post(f"{API}/tickets/{ticket_id}/notes", json={"body": body}, headers=headers)


async def test_a_note_on_a_whatsapp_ticket_never_reaches_the_provider(
    client: httpx.AsyncClient, tenant: Tenant, evolution: FakeEvolution, db: Any
) -> None:
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    outbox_before = await db.outbox.count_documents({})
    r = await _note(client, ticket_id, agent, "cliente VIP, não oferecer desconto")
    assert r.status_code == 201, r.text
    note = r.json()
    assert (note["direction"], note["type"], note["sender_type"]) == ("note", "note", "agent")
    assert await db.outbox.count_documents({}) == outbox_before  # never enqueued
    # A reply enqueued after the note: the worker sends in queue order, so once the reply is out,
    # a queued note would have been sent before it.
    r = await client.post(f"{API}/tickets/{ticket_id}/messages", json={"body": "Já verifico"}, headers=agent)
    assert r.status_code == 201, r.text

    async def sent_to_client() -> list[dict[str, Any]]:
        return [s for s in await evolution.sent() if s.get("number") == phone]

    sent = await wait_for(sent_to_client)
    assert [unsigned(s.get("text") or "") for s in sent] == ["Já verifico"]
    assert all("VIP" not in str(s) for s in await evolution.sent())
    thread, _ = await walk_thread(client, agent, f"{API}/tickets/{ticket_id}/messages")
    assert [m["direction"] for m in thread] == ["in", "note", "out"]


async def test_notes_leave_the_ticket_activity_alone(client: httpx.AsyncClient, tenant: Tenant, db: Any) -> None:
    ticket = await make_client_ticket(client, tenant, db, message="pergunta")
    r = await _note(client, ticket["id"], tenant.headers, "nota do dono")
    assert r.status_code == 201 and r.json()["sender_type"] == "reseller"
    after = await get_ticket(client, tenant.headers, ticket["id"])
    assert (after["last_message_at"], after["last_message_preview"], after["last_message_direction"]) == (
        ticket["last_message_at"],
        "pergunta",
        "in",
    )


async def test_who_may_write_and_read_notes(
    client: httpx.AsyncClient, tenant: Tenant, other: Tenant, admin_headers: dict[str, str], db: Any
) -> None:
    holder, peer = tenant.agents
    outsider_dept = await make_department(client, tenant)
    outsider = await make_agent(client, tenant, [outsider_dept["id"]])
    espera = await make_ticket(client, tenant)
    held = await make_client_ticket(client, tenant, db)
    await assume(client, holder["headers"], held["id"])
    closed = await make_ticket(client, tenant)
    await assume(client, holder["headers"], closed["id"])
    assert (await client.post(f"{API}/tickets/{closed['id']}/finalize", headers=holder["headers"])).status_code == 200
    before = await db.messages.count_documents({})
    refused = [
        (held, peer["headers"], 404),  # held by someone else: not visible to the peer
        (espera, outsider["headers"], 404),  # another department's queue
        (held, other.agents[0]["headers"], 404),  # another tenant
        (held, other.headers, 404),
        (held, admin_headers, 403),  # notes are the tenant's staff's
    ]
    for ticket, headers, status in refused:
        r = await _note(client, ticket["id"], headers, "não deveria ficar")
        assert r.status_code == status, (ticket["status"], status, r.text)
    for body in ({"body": ""}, {"body": "  "}, {"body": "x" * 4097}, {}, {"body": 3}):
        r = await client.post(f"{API}/tickets/{held['id']}/notes", json=body, headers=holder["headers"])
        assert r.status_code == 422, (body, r.text)
    assert await db.messages.count_documents({}) == before
    accepted = [
        (espera, peer["headers"]),  # espera in the agent's department: no need to assume first
        (held, holder["headers"]),
        (closed, holder["headers"]),  # a remark after closing
        (held, tenant.headers),  # the reseller owner
    ]
    for ticket, headers in accepted:
        assert (await _note(client, ticket["id"], headers, "nota")).status_code == 201
    # Read back only by whoever sees the ticket, like the thread it is part of.
    r = await client.get(f"{API}/tickets/{held['id']}/messages", headers=peer["headers"])
    assert r.status_code == 404
    r = await client.get(f"{API}/tickets/{held['id']}/messages", headers=other.headers)
    assert r.status_code == 404
    thread = (await client.get(f"{API}/tickets/{held['id']}/messages", headers=holder["headers"])).json()["items"]
    assert [m["direction"] for m in thread] == ["in", "note", "note"]


async def test_a_note_is_announced_to_exactly_the_tickets_audience(
    client: httpx.AsyncClient, tenant: Tenant, other: Tenant, db: Any
) -> None:
    holder, peer = tenant.agents
    ticket = await make_ticket(client, tenant)
    await assume(client, holder["headers"], ticket["id"])
    note = (await _note(client, ticket["id"], holder["headers"], "anunciada")).json()
    records = await db.tenant_events.find({"message.id": note["id"]}).to_list(None)
    assert [r["type"] for r in records] == ["message.created"]
    record = records[0]
    assert record["message"]["direction"] == "note"

    def actor(role: Role, user: dict[str, Any], reseller_id: str) -> Actor:
        return Actor(
            id=user["id"],
            role=role,
            name="",
            reseller_id=reseller_id,
            department_ids=tuple(user.get("department_ids", ())),
        )

    assert may_receive(actor("agent", holder, tenant.id), record)
    assert may_receive(actor("reseller", {"id": tenant.owner_id}, tenant.id), record)
    assert not may_receive(actor("agent", peer, tenant.id), record)
    assert not may_receive(actor("agent", other.agents[0], other.id), record)


async def test_two_attempts_of_one_keyed_note_at_once_store_it_once_and_both_announce_it(
    client: httpx.AsyncClient, tenant: Tenant, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Composer's repeat of a note whose answer is late can run beside the first attempt: the
    first is held after its look for an earlier note and before its insert while the repeat
    stores the note; the first then meets the stored one (its key's id), answers it and announces
    it too: the attempt that stored it may have failed before its own announcement (a screen
    applies a second record of one message by its id)."""
    ticket = await make_client_ticket(client, tenant, db, message="pergunta")
    agent = tenant.agents[0]["headers"]
    await assume(client, agent, ticket["id"])

    held, repeat_done = asyncio.Event(), asyncio.Event()
    real_store = notes.store
    calls = 0

    async def first_held(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            held.set()
            await repeat_done.wait()
        return await real_store(*args, **kwargs)

    monkeypatch.setattr(notes, "store", first_held)
    real_read_winner, winners_read = notes.read_winner, []

    async def read_winner(*args: Any, **kwargs: Any) -> Any:
        winners_read.append(kwargs.get("what"))
        return await real_read_winner(*args, **kwargs)

    monkeypatch.setattr(notes, "read_winner", read_winner)
    headers = {**agent, "Idempotency-Key": uuid.uuid4().hex}
    url = f"{API}/tickets/{ticket['id']}/notes"
    first = asyncio.ensure_future(client.post(url, json={"body": "ligar amanhã"}, headers=headers))
    await asyncio.wait_for(held.wait(), timeout=15)
    repeat = await client.post(url, json={"body": "ligar amanhã"}, headers=headers)
    repeat_done.set()
    answer = await asyncio.wait_for(first, timeout=15)
    assert repeat.status_code == 201 and answer.status_code == 201, (repeat.text, answer.text)
    assert answer.json()["id"] == repeat.json()["id"]
    assert winners_read == ["note"]  # the first met the repeat's insert on the key's id
    note_id = answer.json()["id"]
    assert await db.messages.count_documents({"ticket_id": ticket["id"], "direction": "note"}) == 1
    assert await db.tenant_events.count_documents({"type": "message.created", "message.id": note_id}) == 2
