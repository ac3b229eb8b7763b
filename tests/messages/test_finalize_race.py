"""A client message that races a finalize is never left in the finalized ticket: it moves on to
the client's next ticket (espera), and its announcement names that ticket. Each test puts the
finalize at one exact point of the inbound path (backend/messages/service.py explains the
handshake), then the 200-round test lets the two run against each other freely."""

import asyncio
import random
from collections.abc import Awaitable
from datetime import datetime
from typing import Any

import httpx
import pytest

from backend.audit import service as events  # what tickets.service writes the log through
from backend.core.clock import as_utc
from backend.core.ids import new_id
from backend.messages import repository as messages_repo
from backend.messages import service as messages
from backend.messages.models import Message
from backend.tickets import intake
from backend.tickets import repository as tickets_repo
from backend.tickets import service as tickets
from backend.tickets.models import Ticket, TicketEvent
from backend.users import repository as users
from tests.factories import API, Tenant, get_ticket, make_client, make_tenant


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


class Chat:
    """One client writing on one WhatsApp number, as the webhook processor feeds intake."""

    def __init__(self, db: Any, tenant: Tenant, client_id: str) -> None:
        self.db, self.tenant, self.client_id, self.channel = db, tenant, client_id, new_id()

    async def say(self, body: str) -> tuple[Ticket, Message]:
        fresh = await users.get_internal(self.db, self.client_id)  # loaded per message, as ingestion does
        assert fresh is not None
        ticket, message, _ = await intake.receive_client_message(
            self.db,
            reseller_id=self.tenant.id,
            client=fresh,
            department_id=self.tenant.departments[0]["id"],
            channel=self.channel,
            body=body,
            message_id=new_id(),
        )
        return ticket, message


async def _chat(client: httpx.AsyncClient, db: Any, tenant: Tenant) -> Chat:
    customer = await make_client(client, tenant)
    return Chat(db, tenant, customer["id"])


async def _finalize(client: httpx.AsyncClient, tenant: Tenant, ticket_id: str) -> httpx.Response:
    return await client.post(f"{API}/tickets/{ticket_id}/finalize", headers=tenant.headers)


async def _announcements(db: Any, message_id: str) -> list[dict[str, Any]]:
    """The realtime feed records announcing this message, in feed order."""
    records = await db.tenant_events.find({"type": "message.created", "message.id": message_id}).to_list(None)
    return sorted(records, key=lambda r: r["seq"])


async def _assert_moved_to_new_espera_ticket(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, message_id: str, finalized_id: str
) -> dict[str, Any]:
    stored = await db.messages.find_one({"_id": message_id})
    assert stored is not None
    assert stored["ticket_id"] != finalized_id, "the message stayed in the finalized ticket"
    assert stored["moved_from_ticket_id"] == finalized_id
    new = await get_ticket(client, tenant.headers, stored["ticket_id"])
    old = await get_ticket(client, tenant.headers, finalized_id)
    assert old["status"] == "finalizado"
    assert new["status"] == "espera" and new["client_id"] == old["client_id"]
    # The queue shows it with the message as its activity.
    assert (new["last_message_preview"], new["last_message_direction"]) == (stored["body"], "in")
    r = await client.get(f"{API}/tickets/{new['id']}/messages", headers=tenant.headers)
    assert r.status_code == 200, r.text
    shown = {m["id"]: m for m in r.json()["items"]}
    assert shown[message_id]["moved_from_ticket_id"] == finalized_id
    r = await client.get(f"{API}/tickets/{finalized_id}/messages", headers=tenant.headers)
    assert message_id not in [m["id"] for m in r.json()["items"]]
    # The realtime feed tells every screen where the message really is.
    last = (await _announcements(db, message_id))[-1]
    assert last["ticket"]["id"] == new["id"] and last["message"]["ticket_id"] == new["id"]
    return new


async def test_a_finalize_between_lookup_and_append_files_the_message_in_a_new_espera_ticket(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat = await _chat(client, db, tenant)
    first, _ = await chat.say("oi, preciso de ajuda")
    original = messages.append

    async def finalize_then_append(db_: Any, ticket: Ticket, **kwargs: Any) -> Any:
        # intake found `first` open and is about to append to it: the agent presses Finalizar now.
        assert ticket.id == first.id and ticket.status == "espera"
        assert (await _finalize(client, tenant, first.id)).status_code == 200
        return await original(db_, ticket, **kwargs)

    monkeypatch.setattr(messages, "append", finalize_then_append)
    ticket, message = await chat.say("espera, mais uma coisa")
    monkeypatch.undo()

    new = await _assert_moved_to_new_espera_ticket(client, db, tenant, message.id, first.id)
    assert ticket.id == new["id"] == message.ticket_id
    # Never announced under the finalized ticket: every announcement names the new one.
    assert {r["ticket"]["id"] for r in await _announcements(db, message.id)} == {new["id"]}
    # The client's next message goes to the same new ticket: one open ticket on the channel.
    again, _ = await chat.say("alô?")
    assert again.id == new["id"]


async def test_a_finalize_between_the_message_insert_and_its_recheck_moves_the_message(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stored first, finalized next: stamped before `finalized_at`, but stored while nobody had
    seen it yet (it is announced only after the re-check), so it moves on too."""
    chat = await _chat(client, db, tenant)
    first, _ = await chat.say("bom dia")
    original = messages_repo.insert

    async def insert_then_finalize(db_: Any, doc: Message) -> None:
        await original(db_, doc)
        if doc.ticket_id == first.id and doc.body == "e outra coisa":
            assert (await _finalize(client, tenant, first.id)).status_code == 200

    monkeypatch.setattr(messages_repo, "insert", insert_then_finalize)
    ticket, message = await chat.say("e outra coisa")
    monkeypatch.undo()

    new = await _assert_moved_to_new_espera_ticket(client, db, tenant, message.id, first.id)
    assert ticket.id == new["id"]
    assert {r["ticket"]["id"] for r in await _announcements(db, message.id)} == {new["id"]}


async def test_a_finalize_between_the_activity_write_and_its_read_back_moves_the_message(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """append's activity write answers with the ticket as it found it (open), and that answer,
    completed by the event log, is its re-check: a finalize landing after the write (and after
    the finalize's own scan, which found the message stamped before `finalized_at`) is found in
    the log, and the message moves on, announced only where it ends."""
    chat = await _chat(client, db, tenant)
    first, _ = await chat.say("boa tarde")
    original = tickets_repo.touch_activity
    raced: list[str] = []

    async def touch_then_finalize(db_: Any, ticket: Ticket, **kwargs: Any) -> Ticket | None:
        written = await original(db_, ticket, **kwargs)
        if ticket.id == first.id and not raced:
            assert written is not None and written.status == "espera"  # what settle starts from
            raced.append(ticket.id)
            assert (await _finalize(client, tenant, first.id)).status_code == 200
        return written

    monkeypatch.setattr(tickets, "touch_activity", touch_then_finalize)  # the name messages calls
    ticket, message = await chat.say("mais uma coisa")
    monkeypatch.undo()

    assert raced == [first.id]
    new = await _assert_moved_to_new_espera_ticket(client, db, tenant, message.id, first.id)
    assert ticket.id == new["id"]
    assert {r["ticket"]["id"] for r in await _announcements(db, message.id)} == {new["id"]}


async def test_a_finalize_between_the_opening_message_and_its_re_check_moves_it_on(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The message that opens a ticket writes no activity (event v1 shows it, and the message
    takes the ticket's creation time, so it is stamped before any `finalized_at`: the finalize's
    scan leaves it). A finalize landing right after its insert is found by its re-check, the
    log read past event v1, and the message moves on, announced only where it ends."""
    chat = await _chat(client, db, tenant)
    original = messages_repo.insert
    raced: list[str] = []

    async def insert_then_finalize(db_: Any, message: Message) -> None:
        await original(db_, message)
        if message.sender_type == "client" and not raced:
            raced.append(message.ticket_id)
            assert (await _finalize(client, tenant, message.ticket_id)).status_code == 200

    touched: list[str] = []
    original_touch = tickets_repo.touch_activity

    async def counted_touch(db_: Any, ticket: Ticket, **kwargs: Any) -> Ticket | None:
        touched.append(ticket.id)
        return await original_touch(db_, ticket, **kwargs)

    monkeypatch.setattr(messages_repo, "insert", insert_then_finalize)
    monkeypatch.setattr(tickets, "touch_activity", counted_touch)
    ticket, message = await chat.say("primeira mensagem")
    monkeypatch.undo()

    assert len(raced) == 1
    opened = raced[0]
    assert opened not in touched  # the opening ticket got no activity write
    stored = await db.messages.find_one({"_id": message.id})
    first = await db.tickets.find_one({"_id": opened})
    assert first["status"] == "finalizado" and as_utc(stored["created_at"]) <= as_utc(first["finalized_at"])
    new = await _assert_moved_to_new_espera_ticket(client, db, tenant, message.id, opened)
    assert ticket.id == new["id"]
    assert {r["ticket"]["id"] for r in await _announcements(db, message.id)} == {new["id"]}


async def test_a_message_stored_while_the_finalize_was_under_way_is_moved_by_the_finalize(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The finalize took its time, then the whole message went through (found the ticket open,
    stored, re-checked, announced), then the finalize stored its event: the message is stamped
    after `finalized_at`, and only the finalize's own look can catch it."""
    chat = await _chat(client, db, tenant)
    first, _ = await chat.say("olá")
    original = events.insert
    raced: dict[str, Any] = {}

    async def message_then_event(db_: Any, event: TicketEvent) -> None:
        if event.ticket_id == first.id and event.type == "finalized":
            # Past the finalize's millisecond, so the message is stamped after `finalized_at`.
            await asyncio.sleep(0.005)
            ticket, message = await chat.say("só mais uma pergunta")
            assert ticket.id == first.id  # still open: filed there and announced there
            raced["message"] = message
        await original(db_, event)

    monkeypatch.setattr(events, "insert", message_then_event)
    assert (await _finalize(client, tenant, first.id)).status_code == 200
    monkeypatch.undo()

    message = raced["message"]
    new = await _assert_moved_to_new_espera_ticket(client, db, tenant, message.id, first.id)
    announced = [r["ticket"]["id"] for r in await _announcements(db, message.id)]
    assert announced == [first.id, new["id"]]


async def test_a_retry_of_an_attempt_killed_before_its_recheck_moves_the_message(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The processor's attempt died right after storing the message; the agent finalized; the
    retry finds the message stored (webhooks' complete_stored) and must not announce it under
    the finalized ticket."""
    chat = await _chat(client, db, tenant)
    first, _ = await chat.say("oi")
    original = messages_repo.insert

    class Killed(Exception):
        pass

    async def insert_then_die(db_: Any, doc: Message) -> None:
        await original(db_, doc)
        raise Killed

    monkeypatch.setattr(messages_repo, "insert", insert_then_die)
    with pytest.raises(Killed):
        await chat.say("ainda aí?")
    monkeypatch.undo()
    stored = await db.messages.find_one({"ticket_id": first.id, "body": "ainda aí?"})
    assert stored is not None
    assert (await _finalize(client, tenant, first.id)).status_code == 200

    await messages.complete_stored(db, Message.model_validate(stored))

    await _assert_moved_to_new_espera_ticket(client, db, tenant, stored["_id"], first.id)


async def _race(finalize: Awaitable[Any], message: Awaitable[Any], rng: random.Random) -> tuple[Any, Any]:
    async def later(step: Awaitable[Any]) -> Any:
        for _ in range(rng.randrange(4)):  # shifts where the two interleave, round by round
            await asyncio.sleep(0)
        return await step

    finalized, received = await asyncio.gather(later(finalize), later(message))
    return finalized, received


async def test_two_hundred_rounds_of_finalize_against_an_inbound_message(
    client: httpx.AsyncClient, db: Any, tenant: Tenant
) -> None:
    rng = random.Random(13)
    chats = [await _chat(client, db, tenant) for _ in range(4)]
    sent: dict[str, Chat] = {}
    outcomes = {"kept": 0, "moved": 0}
    for round_ in range(200):
        chat = chats[round_ % len(chats)]
        # The chat's open ticket (its first message opens one when the last round left none).
        current, opener = await chat.say(f"abre {round_}")
        sent[opener.id] = chat
        response, (_, message) = await _race(_finalize(client, tenant, current.id), chat.say(f"corrida {round_}"), rng)
        assert response.status_code == 200, response.text
        sent[message.id] = chat
        stored = await db.messages.find_one({"_id": message.id})
        outcomes["kept" if stored["ticket_id"] == current.id else "moved"] += 1

    # Every message stored once, under one ticket of its own client and channel ...
    stored_all = await db.messages.find({"_id": {"$in": list(sent)}}).to_list(None)
    assert sorted(m["_id"] for m in stored_all) == sorted(sent)
    loaded: dict[str, Ticket] = {}
    for m in stored_all:
        if m["ticket_id"] not in loaded:
            ticket = await tickets.load(db, m["ticket_id"])
            assert ticket is not None
            loaded[m["ticket_id"]] = ticket
        ticket = loaded[m["ticket_id"]]
        assert (ticket.client_id, ticket.channel) == (sent[m["_id"]].client_id, sent[m["_id"]].channel)
    # ... and none in a finalizado ticket stamped after its finalized_at.
    for m in stored_all:
        ticket = loaded[m["ticket_id"]]
        if ticket.status == "finalizado":
            finalized_at: datetime = as_utc(ticket.finalized_at)
            assert as_utc(m["created_at"]) <= finalized_at, (m["_id"], m["created_at"], finalized_at)
    # At most one open ticket per chat, as the event log says.
    for chat in chats:
        mine = await db.tickets.find({"client_id": chat.client_id}).to_list(None)
        states = [getattr(await tickets.load(db, t["_id"]), "status", None) for t in mine]
        assert sum(s in ("espera", "atendendo") for s in states) <= 1, states
    # Both outcomes happened, so the race was real on both sides of the line.
    assert outcomes["kept"] and outcomes["moved"], outcomes
