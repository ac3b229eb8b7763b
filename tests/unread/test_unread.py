"""Unread counts (issue 17 item 2): per user and ticket, client messages since that user last read
the ticket; kept server-side, cleared by POST /tickets/{id}/read, announced to the reader only."""

import asyncio
from typing import Any

import httpx
import pytest

from backend.core.runtime import runtime_of
from backend.core.tenancy import Actor
from backend.messages import service as messages
from backend.messages.models import Message
from backend.realtime import records
from backend.realtime.audience import may_receive
from backend.tickets import intake
from backend.tickets.models import Ticket
from backend.unread import repository, service
from backend.users.models import User
from tests.factories import API, Tenant, assume, get_ticket, make_client_ticket, make_tenant, make_ticket


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=2)


@pytest.fixture(scope="module")
async def other(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


async def _client_says(db: Any, ticket: dict[str, Any], body: str) -> Message:
    """A client message through the same intake WhatsApp deliveries use."""
    customer = User.model_validate(await db.users.find_one({"_id": ticket["client_id"]}))
    _, message, _ = await intake.receive_client_message(
        db,
        reseller_id=ticket["reseller_id"],
        client=customer,
        department_id=ticket["department_id"],
        channel=ticket["channel"],
        body=body,
    )
    assert message.ticket_id == ticket["id"]
    return message


async def _unread(client: httpx.AsyncClient, headers: dict[str, str], ticket_id: str) -> int:
    count: int = (await get_ticket(client, headers, ticket_id))["unread_count"]
    return count


async def _read(client: httpx.AsyncClient, headers: dict[str, str], ticket_id: str) -> httpx.Response:
    return await client.post(f"{API}/tickets/{ticket_id}/read", headers=headers)


async def test_client_messages_count_until_the_user_reads_the_ticket(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    agent, peer = tenant.agents
    ticket = await make_client_ticket(client, tenant, db, message="primeira")
    assert ticket["unread_count"] == 1  # the client wrote it; nobody has read it yet
    for text in ("segunda", "terceira"):
        await _client_says(db, ticket, text)
    assert await _unread(client, agent["headers"], ticket["id"]) == 3

    # The same count wherever the API returns the ticket to that user: the queue and a search.
    r = await client.get(f"{API}/tickets", params={"status": "espera"}, headers=agent["headers"])
    assert {t["id"]: t["unread_count"] for t in r.json()["items"]}[ticket["id"]] == 3
    r = await client.get(f"{API}/tickets", params={"q": f"#{ticket['number']}"}, headers=agent["headers"])
    assert [(t["id"], t["unread_count"]) for t in r.json()["items"]] == [(ticket["id"], 3)]

    r = await _read(client, agent["headers"], ticket["id"])
    assert r.status_code == 200, r.text
    assert r.json()["unread_count"] == 0
    assert await _unread(client, agent["headers"], ticket["id"]) == 0
    # Another user's count is its own: neither the peer agent nor the owner read it.
    assert await _unread(client, peer["headers"], ticket["id"]) == 3
    assert await _unread(client, tenant.headers, ticket["id"]) == 3

    await _client_says(db, ticket, "quarta")
    assert await _unread(client, agent["headers"], ticket["id"]) == 1
    assert await _unread(client, peer["headers"], ticket["id"]) == 4


async def test_replies_notes_and_transitions_never_count(client: httpx.AsyncClient, tenant: Tenant, db: Any) -> None:
    agent = tenant.agents[0]
    ticket = await make_client_ticket(client, tenant, db)
    held = await assume(client, agent["headers"], ticket["id"])
    assert held["unread_count"] == 1  # the answer of a transition carries the count as well
    r = await client.post(f"{API}/tickets/{ticket['id']}/messages", json={"body": "resposta"}, headers=agent["headers"])
    assert r.status_code == 201, r.text
    r = await client.post(f"{API}/tickets/{ticket['id']}/notes", json={"body": "nota"}, headers=agent["headers"])
    assert r.status_code == 201, r.text
    r = await client.post(f"{API}/tickets/{ticket['id']}/notes", json={"body": "nota"}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    assert await _unread(client, agent["headers"], ticket["id"]) == 1
    assert await _unread(client, tenant.headers, ticket["id"]) == 1  # the client's first message only
    assert await repository.inbound_head(db, ticket["id"]) == 1


async def test_a_redelivered_message_counts_once_and_concurrent_messages_each_once(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    ticket = await make_client_ticket(client, tenant, db)
    message = await _client_says(db, ticket, "uma vez")
    await messages.complete_stored(db, message)  # a retried delivery that finds it stored
    await service.record_inbound(db, Ticket.model_validate({**ticket, "_id": ticket["id"]}), message)
    assert await _unread(client, tenant.agents[0]["headers"], ticket["id"]) == 2

    await asyncio.gather(*(_client_says(db, ticket, f"rajada {i}") for i in range(8)))
    assert await _unread(client, tenant.agents[0]["headers"], ticket["id"]) == 10
    entries = await db[repository.INBOUND].find({"ticket_id": ticket["id"]}).to_list(None)
    assert sorted(e["n"] for e in entries) == list(range(1, 11))  # numbered without holes
    assert len({e["message_id"] for e in entries}) == 10


async def test_a_process_whose_remembered_count_is_behind_numbers_past_what_another_process_stored(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    """Issue 20: a process numbers a ticket's next client message right after the number it
    stored last, without reading. Competitors between its two messages — another process that
    numbered messages meanwhile, a redelivery of a numbered message — leave it numbering past
    them: numbers 1..n without holes, one per message."""
    ticket = await make_client_ticket(client, tenant, db)  # the ticket's creator numbered its first
    key = (db.name, ticket["id"])
    heads = runtime_of(db).unread_inbound_heads
    assert heads[key] == 1
    heads.pop(key)  # another process, knowing nothing of the ticket, numbers two more
    await _client_says(db, ticket, "de outro processo 1")
    await _client_says(db, ticket, "de outro processo 2")
    heads[key] = 1  # this process again: its memory is behind by two
    late = await _client_says(db, ticket, "deste processo")
    assert heads[key] == 4
    heads[key] = 1
    # Redelivered: no new number.
    await service.record_inbound(db, Ticket.model_validate({**ticket, "_id": ticket["id"]}), late)
    entries = await db[repository.INBOUND].find({"ticket_id": ticket["id"]}).to_list(None)
    assert sorted(e["n"] for e in entries) == [1, 2, 3, 4]
    assert len({e["message_id"] for e in entries}) == 4
    assert next(e["n"] for e in entries if e["message_id"] == late.id) == 4
    assert await repository.inbound_head(db, ticket["id"]) == 4
    heads.pop(key)
    service.starts_empty(db, ticket["id"])  # a wrong "just created" claim costs reads, never a number
    await _client_says(db, ticket, "mais uma")
    assert await repository.inbound_head(db, ticket["id"]) == 5
    assert await _unread(client, tenant.agents[0]["headers"], ticket["id"]) == 5


async def test_the_stored_count_hint_is_raised_every_few_numbers_and_every_process_still_counts_exactly(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    """Issue 20: a client message costs one write for its number; the stored hint of the count is
    raised at every INBOUND_HINT_EVERY-th number only. A reader in another process (knowing
    nothing of the ticket) gallops past the lagging hint; a process that remembers an older count
    while another process numbered more (and raised the hint) between its two reads counts those
    too. Unread stays exact for every reader."""
    every = repository.INBOUND_HINT_EVERY
    assert every == 4
    ticket = await make_client_ticket(client, tenant, db)
    key, hint_id = (db.name, ticket["id"]), f"in:{ticket['id']}"
    heads = runtime_of(db).unread_inbound_heads
    await _client_says(db, ticket, "dois")
    await _client_says(db, ticket, "tres")
    assert await db[repository.HINTS].find_one({"_id": hint_id}) is None  # numbers 1-3: no hint write
    heads.pop(key)  # a reader in another process
    assert await service.unread_for(db, tenant.agents[0]["id"], ticket["id"]) == 3
    assert heads[key] == 3  # it remembers what it read
    heads.pop(key)  # yet another process numbers the 4th: the hint is raised
    await _client_says(db, ticket, "quatro")
    assert (await db[repository.HINTS].find_one({"_id": hint_id}) or {}).get("n") == every
    heads[key] = 3  # the first reader again: its memory is behind by one
    assert await service.unread_for(db, tenant.agents[0]["id"], ticket["id"]) == 4
    await _client_says(db, ticket, "cinco")  # this process numbers it after the count it read
    heads.pop(key)
    assert await _unread(client, tenant.agents[0]["headers"], ticket["id"]) == 5
    entries = await db[repository.INBOUND].find({"ticket_id": ticket["id"]}).to_list(None)
    assert sorted(e["n"] for e in entries) == [1, 2, 3, 4, 5]
    assert (await db[repository.HINTS].find_one({"_id": hint_id}) or {}).get("n") == every


async def test_the_marker_only_moves_forward_when_two_devices_read_at_once(
    client: httpx.AsyncClient, tenant: Tenant, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = tenant.agents[0]
    ticket = await make_client_ticket(client, tenant, db)
    user_id = agent["id"]
    stale = Ticket.model_validate({**ticket, "_id": ticket["id"]})
    original = repository.marker
    injected = False

    async def marker_then_other_device(db_: Any, uid: str, tid: str) -> tuple[int, int]:
        """Device A read the head (1) and its marker; before A writes, the client writes again and
        device B reads the ticket up to the new head (2)."""
        nonlocal injected
        found = await original(db_, uid, tid)
        if not injected:
            injected = True
            await _client_says(db, ticket, "enquanto isso")
            monkeypatch.setattr(repository, "marker", original)
            assert (await _read(client, agent["headers"], ticket["id"])).json()["unread_count"] == 0
            monkeypatch.setattr(repository, "marker", marker_then_other_device)
        return found

    monkeypatch.setattr(repository, "marker", marker_then_other_device)
    moved = await service.mark_read(db, user_id, stale)
    monkeypatch.setattr(repository, "marker", original)
    assert injected and not moved  # A lost the insert, re-read B's marker and kept it
    assert await _unread(client, agent["headers"], ticket["id"]) == 0  # never back to 1
    chain = await db[repository.MARKERS].find({"user_id": user_id, "ticket_id": ticket["id"]}).to_list(None)
    assert [m["seq"] for m in sorted(chain, key=lambda m: m["k"])] == [2]

    # Both devices at once, for real: one marker entry per forward move, the count stays cleared.
    await _client_says(db, ticket, "mais uma")
    answers = await asyncio.gather(*(_read(client, agent["headers"], ticket["id"]) for _ in range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    assert await _unread(client, agent["headers"], ticket["id"]) == 0
    chain = await db[repository.MARKERS].find({"user_id": user_id, "ticket_id": ticket["id"]}).to_list(None)
    assert [m["seq"] for m in sorted(chain, key=lambda m: m["k"])] == [2, 3]


async def test_reading_is_announced_to_the_reader_only(client: httpx.AsyncClient, tenant: Tenant, db: Any) -> None:
    agent, peer = tenant.agents
    ticket = await make_ticket(client, tenant)
    await _client_says(db, ticket, "oi")
    head = await records.latest(db, tenant.id)
    assert (await _read(client, agent["headers"], ticket["id"])).status_code == 200
    # Nothing new, announced all the same: a screen asks only while it shows something unread,
    # which a read whose answer was lost leaves on the others (tickets/reads.py).
    assert (await _read(client, agent["headers"], ticket["id"])).status_code == 200
    new = [await records.get(db, tenant.id, s) for s in range(head + 1, await records.latest(db, tenant.id) + 1)]
    reads = [r for r in new if r is not None and r["type"] == "ticket.read"]
    assert [r["ticket"]["unread_count"] for r in reads] == [0, 0]
    record = reads[0]
    assert record["ticket"]["id"] == ticket["id"] and record["ticket"]["unread_count"] == 0

    def actor(user: dict[str, Any]) -> Actor:
        return Actor(
            id=user["id"], role="agent", name="x", reseller_id=tenant.id, department_ids=tuple(user["department_ids"])
        )

    assert may_receive(actor(agent), record)
    assert not may_receive(actor(peer), record)  # sees the ticket, but the count is not its own
    # Shared records leave the per-user count out, so no screen takes someone else's count.
    created = await records.get(db, tenant.id, head)
    assert created is not None and created["type"] == "message.created"
    assert "unread_count" not in created["ticket"]


async def test_read_is_scoped_like_the_ticket(
    client: httpx.AsyncClient, tenant: Tenant, other: Tenant, admin_headers: dict[str, str], db: Any
) -> None:
    ticket = await make_client_ticket(client, tenant, db)
    outsider = other.agents[0]["headers"]
    for headers in (other.headers, outsider):
        r = await _read(client, headers, ticket["id"])
        assert r.status_code == 404 and "ticket" in r.json()["detail"]
    assert (await _read(client, tenant.headers, "not-an-id")).status_code == 404
    assert (await _read(client, tenant.headers, "0" * 24)).status_code == 404
    peer = tenant.agents[1]["headers"]
    assert await _unread(client, peer, ticket["id"]) == 1  # the refused reads moved nothing
    r = await _read(client, admin_headers, ticket["id"])  # the admin sees every tenant: its own count
    assert r.status_code == 200 and r.json()["unread_count"] == 0
    assert await _unread(client, peer, ticket["id"]) == 1


async def test_history_carries_the_readers_counts(client: httpx.AsyncClient, tenant: Tenant, db: Any) -> None:
    agent = tenant.agents[0]
    first = await make_client_ticket(client, tenant, db)
    await assume(client, agent["headers"], first["id"])
    assert (await client.post(f"{API}/tickets/{first['id']}/finalize", headers=agent["headers"])).status_code == 200
    r = await client.post(
        f"{API}/tickets",
        json={"client_id": first["client_id"], "department_id": first["department_id"], "message": "voltei"},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    current = r.json()
    r = await client.get(f"{API}/tickets/{current['id']}/history", headers=agent["headers"])
    assert [(t["id"], t["unread_count"]) for t in r.json()["items"]] == [(first["id"], 1)]
    assert (await _read(client, agent["headers"], first["id"])).status_code == 200  # it finalized it: sees it
    r = await client.get(f"{API}/tickets/{current['id']}/history/{first['id']}", headers=agent["headers"])
    assert r.json()["unread_count"] == 0


async def test_a_message_that_raced_a_finalize_counts_in_the_ticket_it_moved_to(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    agent, peer = tenant.agents
    ticket = await make_client_ticket(client, tenant, db)
    await assume(client, agent["headers"], ticket["id"])
    stale = Ticket.model_validate(await db.tickets.find_one({"_id": ticket["id"]}))  # as intake loaded it, still open
    assert (await client.post(f"{API}/tickets/{ticket['id']}/finalize", headers=agent["headers"])).status_code == 200
    message, _ = await messages.append(
        db,
        stale,
        direction="in",
        sender_type="client",
        sender_id=ticket["client_id"],
        sender_name="Cliente",
        body="ainda estou aqui",
        status="received",
    )
    moved_to = message.ticket_id
    assert moved_to != ticket["id"]
    assert await repository.inbound_head(db, ticket["id"]) == 1  # the finalized ticket keeps its count
    assert await _unread(client, peer["headers"], moved_to) == 1  # counted where the client now is
