"""An agent's reply, file reply, note, read and schedule while the store loses one of its writes.

The backend reaches the store through a relay (tests/tcp_relay.py) that stalls the one connection
carrying a chosen write: the command never runs (`lose="request"`) or it runs and its answer never
comes back (`lose="reply"`); with MONGO_SOCKET_TIMEOUT_MS the request fails after 1.5 s (503 "the
database did not answer; retry", over the real port) — or succeeds, where the write is one the
product tolerates losing. Then the agent does what the real UI does: the Composer repeats an
unanswered send with the same `Idempotency-Key`; anything else is clicked again.

The writes, in the order a reply makes them (messages.service `send_as_agent`, `append`,
`_after_stored`): its chat position (`outbox_chats`), its queue entry (`outbox`), the message
(`messages`), the ticket's activity (`tickets` findAndModify), the announcement (`tenant_events`
"message.created"). A keyed reply keeps no idempotency record of its own: the key derives the
message's `_id` (`keyed_reply_id`), and that insert is the record. A file reply first writes its
bytes (GridFS `media.chunks`, then `media.files`) and the tenant's media record (`media`).

The end state must hold: one message per intended reply, taken by the provider once (a file
byte-identical), "sent", announced to open screens (`message.created` naming it), the repeated
request answered 2xx with the same id (or a clear 409); a note stored once and shown in the thread;
the unread count 0 after a repeated read; a schedule stored once (one waiting, or the edit's one
replacement with the original marked edited)."""

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from backend.core.clock import utcnow
from backend.messages import notes as notes_service
from backend.outbound import service as outbound_service
from backend.scheduled import service as scheduled
from backend.unread.repository import marker_prefix
from tests.factories import Tenant, make_tenant
from tests.fakes.harness import (
    FakeEvolution,
    app,
    backend_port,
    evolution,
    last_within,
    make_connection,
    settings,
    wait_for,
)
from tests.holds import Hold, arrived, holds
from tests.media.helpers import fixture
from tests.outbound.helpers import held_ticket, unsigned
from tests.tcp_relay import Lose, StoreProxy, command_marker, relayed, string_element, unanswered

__all__ = ["app", "backend_port", "evolution", "holds", "settings"]

SETTLE = 15.0  # a reply's way to "sent" after a fault: a stall, the worker's poll, a lease (3 s)
SHOWN = 5.0  # how long an announcement may take after the request that should make it
LOSSES: list[Lose] = ["request", "reply"]


@pytest.fixture(scope="module")
def settings_overrides(store_relay: StoreProxy) -> dict[str, Any]:
    return {
        **relayed(store_relay),
        "OUTBOUND_LEASE_SECONDS": 3.0,
        "SCHEDULED_MESSAGES_ENABLED": False,  # the schedule tests run their due pass themselves
        "TICKET_SWEEP_SECONDS": 0.5,
    }


@pytest.fixture(scope="module")
async def company(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution
) -> tuple[Tenant, dict[str, Any]]:
    tenant = await make_tenant(client, admin_headers, agents=1)
    return tenant, await make_connection(client, tenant, evolution)


@dataclass
class Chat:
    tenant: Tenant
    ticket_id: str
    phone: str
    agent: dict[str, str]
    agent_id: str

    def reply_id(self, key: str) -> str:
        """The message id a reply sent with `key` takes (messages.service.keyed_reply_id)."""
        raw = f"reply\0{self.tenant.id}\0{self.ticket_id}\0{self.agent_id}\0{key}"
        return hashlib.sha256(raw.encode()).hexdigest()[:24]


@pytest.fixture
async def chat(
    client: httpx.AsyncClient, company: tuple[Tenant, dict[str, Any]], evolution: FakeEvolution, db: Any
) -> Chat:
    """A fresh client's ticket, held by the company's agent."""
    tenant, conn = company
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    return Chat(tenant, ticket_id, phone, agent, str(tenant.agents[0]["id"]))


async def _post_reply(browser: httpx.AsyncClient, chat: Chat, key: str, **kwargs: Any) -> httpx.Response:
    headers = {**chat.agent, "Idempotency-Key": key}
    return await browser.post(f"/api/v1/tickets/{chat.ticket_id}/messages", headers=headers, **kwargs)


async def _announced_created(direct: Any, message_id: str) -> int:
    return int(await direct.tenant_events.count_documents({"type": "message.created", "message.id": message_id}))


async def _thread(browser: httpx.AsyncClient, chat: Chat) -> list[dict[str, Any]]:
    r = await browser.get(f"/api/v1/tickets/{chat.ticket_id}/messages", params={"limit": 100}, headers=chat.agent)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def _past_pending(direct: Any, message_id: str) -> dict[str, Any] | None:
    doc: dict[str, Any] | None = await direct.messages.find_one({"_id": message_id})
    return doc if doc is not None and doc["status"] != "pending" else None


def _check_retry(first: httpx.Response, again: httpx.Response, message_id: str) -> None:
    """The faulted attempt was unanswered (503) or acknowledged; the repeat names the same reply."""
    assert unanswered(first) or (first.status_code == 201 and first.json()["id"] == message_id), first.text
    assert again.status_code in (200, 201) and again.json()["id"] == message_id, again.text


async def _check_reply(
    direct: Any, evolution: FakeEvolution, browser: httpx.AsyncClient, chat: Chat, message_id: str, text: str
) -> dict[str, Any]:
    """One message from the agent in the ticket, sent once, "sent", shown in the thread and
    announced as created. Returns what the provider took."""
    assert await direct.messages.count_documents({"ticket_id": chat.ticket_id, "sender_id": chat.agent_id}) == 1
    doc = await last_within(lambda: _past_pending(direct, message_id), timeout=SETTLE)
    assert doc is not None, f"still pending {SETTLE}s later: {await direct.messages.find_one({'_id': message_id})}"
    assert doc["status"] == "sent", doc
    taken = [s for s in await evolution.sent() if s["number"] == chat.phone and unsigned(s.get("text") or "") == text]
    assert len(taken) == 1, f"the provider took {text!r} {len(taken)} times"
    assert doc["provider_message_id"] == taken[0]["key_id"], (doc, taken)
    assert [m["id"] for m in await _thread(browser, chat)].count(message_id) == 1
    created = await last_within(lambda: _announced_created(direct, message_id), timeout=SHOWN)
    assert created >= 1, f"reply {message_id} stored and sent, never announced (no message.created)"
    return dict(taken[0])


TEXT_WRITES = ["chat_position", "queue_entry", "message", "activity", "feed"]


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", TEXT_WRITES)
async def test_a_keyed_text_reply_that_loses_a_write_is_sent_once_when_repeated(
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    direct: Any,
    store_proxy: StoreProxy,
    chat: Chat,
    write: str,
    lose: Lose,
) -> None:
    key = str(uuid.uuid4())
    message_id = chat.reply_id(key)
    text = f"resposta {uuid.uuid4().hex[:8]}"
    markers = {
        "chat_position": (command_marker("insert", "outbox_chats"), string_element("message_id", message_id)),
        "queue_entry": (command_marker("insert", "outbox"), string_element("message_id", message_id)),
        "message": (command_marker("insert", "messages"), string_element("_id", message_id)),
        "activity": (
            command_marker("findAndModify", "tickets"),
            string_element("_id", chat.ticket_id),
            string_element("last_message_direction", "out"),
        ),
        "feed": (
            command_marker("insert", "tenant_events"),
            string_element("type", "message.created"),
            string_element("id", message_id),
        ),
    }[write]
    stalled = store_proxy.stall_next(*markers, lose=lose)
    first = await _post_reply(browser, chat, key, json={"body": text})
    assert stalled.is_set(), f"the trap on the {write} never sprang: {first.status_code} {first.text}"
    again = await _post_reply(browser, chat, key, json={"body": text})
    _check_retry(first, again, message_id)
    await _check_reply(direct, evolution, browser, chat, message_id, text)


async def test_a_repeat_sent_while_the_first_attempt_stores_the_reply_announces_it(
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    direct: Any,
    store_proxy: StoreProxy,
    chat: Chat,
    holds: Callable[..., Hold],
) -> None:
    """The Composer repeats a send whose answer it never got (a dropped connection) while the first
    attempt (A) is still at work on the server. Both look for the keyed reply before either stored
    it; A's insert lands first, and its answer is lost (A answers 503). The repeat (B) meets A's
    message at its insert and answers 2xx: B must announce it, as A never will and the Composer,
    told it is sent, repeats nothing."""
    key = str(uuid.uuid4())
    message_id = chat.reply_id(key)
    text = f"resposta {uuid.uuid4().hex[:8]}"

    def queues_it(*args: Any, **kwargs: Any) -> bool:
        return bool(kwargs.get("message_id") == message_id)

    a_queues = holds(outbound_service, "enqueue", queues_it)
    first = asyncio.ensure_future(_post_reply(browser, chat, key, json={"body": text}))
    await arrived(a_queues.entered, first, "the first attempt's queue entry")
    b_queues = holds(outbound_service, "enqueue", queues_it)
    repeat = asyncio.ensure_future(_post_reply(browser, chat, key, json={"body": text}))
    await arrived(b_queues.entered, repeat, "the repeat's queue entry")  # B looked: nothing stored
    sprung = store_proxy.stall_next(
        command_marker("insert", "messages"), string_element("_id", message_id), lose="reply"
    )
    a_queues.go.set()
    await arrived(sprung, first, "the trap on the first attempt's insert")
    assert await wait_for(lambda: direct.messages.find_one({"_id": message_id}), timeout=SETTLE)
    b_queues.go.set()
    again = await repeat
    assert again.status_code in (200, 201) and again.json()["id"] == message_id, again.text
    assert unanswered(await first)
    await _check_reply(direct, evolution, browser, chat, message_id, text)


MEDIA_WRITES = ["chunks", "files", "record", "message"]


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", MEDIA_WRITES)
async def test_a_keyed_file_reply_that_loses_a_write_is_sent_once_and_whole(
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    direct: Any,
    store_proxy: StoreProxy,
    chat: Chat,
    write: str,
    lose: Lose,
) -> None:
    key = str(uuid.uuid4())
    message_id = chat.reply_id(key)
    tail = uuid.uuid4().hex.encode()  # after IEND: still the same PNG, a sha256 of its own
    png = fixture("photo.png") + tail
    sha = hashlib.sha256(png).hexdigest()
    caption = f"foto {uuid.uuid4().hex[:8]}"
    markers = {
        "chunks": (command_marker("insert", "media.chunks"), tail),
        "files": (command_marker("insert", "media.files"), string_element("sha256", sha)),
        "record": (command_marker("insert", "media"), string_element("sha256", sha)),
        "message": (command_marker("insert", "messages"), string_element("_id", message_id)),
    }[write]
    form = {"files": {"file": ("foto.png", png, "image/png")}, "data": {"body": caption}}
    stalled = store_proxy.stall_next(*markers, lose=lose)
    first = await _post_reply(browser, chat, key, **form)
    assert stalled.is_set(), f"the trap on the {write} never sprang: {first.status_code} {first.text}"
    again = await _post_reply(browser, chat, key, **form)
    _check_retry(first, again, message_id)
    taken = await _check_reply(direct, evolution, browser, chat, message_id, caption)
    doc = await direct.messages.find_one({"_id": message_id})
    assert doc["type"] == "image" and doc["media"]["sha256"] == sha and doc["media"]["status"] == "ready", doc
    assert taken["media"]["sha256"] == sha, taken
    async with httpx.AsyncClient(base_url=evolution.url, timeout=30) as fake:
        r = await fake.get(f"/_control/sent_media/{taken['key_id']}")
    assert r.status_code == 200 and r.content == png, "the client got other bytes than the agent sent"


async def test_a_repeat_sent_while_the_first_attempt_stores_the_note_announces_it(
    browser: httpx.AsyncClient,
    direct: Any,
    store_proxy: StoreProxy,
    chat: Chat,
    holds: Callable[..., Hold],
) -> None:
    """As with a reply: the Composer repeats a note (same key) while its first attempt (A) is still
    at work. Both look for it before either stored it; A's insert lands, its answer is lost (A
    answers 503); the repeat (B) meets the note at its insert and answers 201. B must announce it:
    A never will, and the Composer, told it is added, repeats nothing."""
    text = f"nota interna {uuid.uuid4().hex[:8]}"
    path = f"/api/v1/tickets/{chat.ticket_id}/notes"
    keyed = {**chat.agent, "Idempotency-Key": uuid.uuid4().hex}

    def stores_it(*args: Any, **kwargs: Any) -> bool:
        return bool(kwargs.get("body") == text)

    a_stores = holds(notes_service, "store", stores_it)
    first = asyncio.ensure_future(browser.post(path, json={"body": text}, headers=keyed))
    await arrived(a_stores.entered, first, "the first attempt's store")
    b_stores = holds(notes_service, "store", stores_it)
    repeat = asyncio.ensure_future(browser.post(path, json={"body": text}, headers=keyed))
    await arrived(b_stores.entered, repeat, "the repeat's store")  # B looked: nothing stored
    sprung = store_proxy.stall_next(command_marker("insert", "messages"), string_element("body", text), lose="reply")
    a_stores.go.set()
    await arrived(sprung, first, "the trap on the first attempt's insert")
    assert await wait_for(lambda: direct.messages.find_one({"body": text}), timeout=SETTLE)
    b_stores.go.set()
    again = await repeat
    assert again.status_code == 201, again.text
    assert unanswered(await first)
    notes = await direct.messages.find({"ticket_id": chat.ticket_id, "body": text}).to_list(None)
    assert [n["_id"] for n in notes] == [again.json()["id"]], notes
    created = await last_within(lambda: _announced_created(direct, notes[0]["_id"]), timeout=SHOWN)
    assert created >= 1, "the note is stored and its repeat answered 201, but open screens were never told"


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", ["message", "feed"])
async def test_a_note_that_loses_a_write_is_stored_once_and_shown(
    browser: httpx.AsyncClient,
    direct: Any,
    store_proxy: StoreProxy,
    chat: Chat,
    write: str,
    lose: Lose,
) -> None:
    text = f"nota interna {uuid.uuid4().hex[:8]}"
    body = string_element("body", text)
    markers = {
        "message": (command_marker("insert", "messages"), body),
        "feed": (command_marker("insert", "tenant_events"), string_element("type", "message.created"), body),
    }[write]
    path = f"/api/v1/tickets/{chat.ticket_id}/notes"
    keyed = {**chat.agent, "Idempotency-Key": uuid.uuid4().hex}  # the Composer's, kept for its retries
    stalled = store_proxy.stall_next(*markers, lose=lose)
    first = await browser.post(path, json={"body": text}, headers=keyed)
    assert stalled.is_set(), f"the trap on the note's {write} never sprang: {first.status_code} {first.text}"
    if first.status_code != 201:  # unanswered: the agent clicks again
        assert unanswered(first), first.text
        again = await browser.post(path, json={"body": text}, headers=keyed)
        assert again.status_code == 201, again.text
    notes = await direct.messages.find({"ticket_id": chat.ticket_id, "body": text}).to_list(None)
    assert len(notes) == 1, f"one note written, {len(notes)} stored: {[n['_id'] for n in notes]}"
    assert [m["id"] for m in await _thread(browser, chat) if m["body"] == text] == [notes[0]["_id"]]
    created = await last_within(lambda: _announced_created(direct, notes[0]["_id"]), timeout=SHOWN)
    assert created >= 1, "the note is stored but open screens were never told (no message.created)"


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", ["marker", "hint"])
async def test_a_read_that_loses_a_write_clears_the_count_when_repeated(
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    company: tuple[Tenant, dict[str, Any]],
    store_proxy: StoreProxy,
    chat: Chat,
    write: str,
    lose: Lose,
) -> None:
    _, conn = company
    await evolution.inbound(conn["instance_name"], chat.phone, "mais uma dúvida")

    async def unread() -> int:
        r = await browser.get(f"/api/v1/tickets/{chat.ticket_id}", headers=chat.agent)
        assert r.status_code == 200, r.text
        return int(r.json()["unread_count"])

    assert await wait_for(lambda: _at_least(unread, 2)) >= 2
    prefix = marker_prefix(chat.agent_id, chat.ticket_id)
    markers = {
        "marker": (command_marker("insert", "read_markers"), string_element("ticket_id", chat.ticket_id)),
        "hint": (command_marker("update", "unread_hints"), string_element("_id", f"rd:{prefix}")),
    }[write]
    path = f"/api/v1/tickets/{chat.ticket_id}/read"
    stalled = store_proxy.stall_next(*markers, lose=lose)
    first = await browser.post(path, headers=chat.agent)
    assert stalled.is_set(), f"the trap on the read's {write} never sprang: {first.status_code} {first.text}"
    assert first.status_code == 200 or unanswered(first), first.text
    again = await browser.post(path, headers=chat.agent)
    assert again.status_code == 200 and again.json()["unread_count"] == 0, again.text
    assert await unread() == 0
    r = await browser.get("/api/v1/tickets", headers=chat.agent)
    assert r.status_code == 200, r.text
    listed = [t for t in r.json()["items"] if t["id"] == chat.ticket_id]
    assert listed and listed[0]["unread_count"] == 0, listed


async def _at_least(probe: Any, n: int) -> int:
    value = int(await probe())
    return value if value >= n else 0


async def _schedules(direct: Any, ticket_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await direct.scheduled_messages.find({"ticket_id": ticket_id}).to_list(None)
    return found


def _when(hours: int) -> str:
    return (utcnow() + timedelta(hours=hours)).isoformat()


async def _due_pass_sends_once(
    db: Any, direct: Any, evolution: FakeEvolution, browser: httpx.AsyncClient, chat: Chat, text: str
) -> None:
    """The due pass (a day later) sends exactly one reply for what the agent scheduled."""
    await scheduled.run_due(db, utcnow() + timedelta(days=1))
    sent = [
        s for s in await direct.scheduled_messages.find({"ticket_id": chat.ticket_id, "status": "sent"}).to_list(None)
    ]
    assert len(sent) == 1 and sent[0]["body"] == text, sent
    message_id = scheduled.message_id_of(sent[0]["_id"])
    doc = await last_within(lambda: _past_pending(direct, message_id), timeout=SETTLE)
    assert doc is not None and doc["status"] == "sent", doc
    taken = [s for s in await evolution.sent() if s["number"] == chat.phone]
    assert [unsigned(s["text"]) for s in taken] == [text], taken


@pytest.mark.parametrize("lose", LOSSES)
async def test_a_schedule_whose_insert_is_lost_is_stored_once_when_clicked_again(
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    chat: Chat,
    lose: Lose,
) -> None:
    text = f"lembrete {uuid.uuid4().hex[:8]}"
    path = f"/api/v1/tickets/{chat.ticket_id}/scheduled-messages"
    payload = {"body": text, "send_at": _when(1)}
    stalled = store_proxy.stall_next(
        command_marker("insert", "scheduled_messages"), string_element("body", text), lose=lose
    )
    first = await browser.post(path, json=payload, headers=chat.agent)
    assert stalled.is_set(), f"the trap never sprang: {first.status_code} {first.text}"
    assert unanswered(first), first.text
    again = await browser.post(path, json=payload, headers=chat.agent)
    assert again.status_code == 201, again.text
    waiting = [s for s in await _schedules(direct, chat.ticket_id) if s["status"] == "scheduled"]
    assert [s["_id"] for s in waiting] == [again.json()["id"]], (
        f"one schedule written, {len(waiting)} waiting: {[(s['_id'], s['body']) for s in waiting]}"
    )
    r = await browser.get(path, headers=chat.agent)
    assert [s["id"] for s in r.json()["items"] if s["status"] == "scheduled"] == [again.json()["id"]], r.text
    await _due_pass_sends_once(db, direct, evolution, browser, chat, text)


EDIT_WRITES = ["edited_insert", "outcome_claim", "original_settle"]


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", EDIT_WRITES)
async def test_an_edit_that_loses_a_write_leaves_one_replacement_when_clicked_again(
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    chat: Chat,
    write: str,
    lose: Lose,
) -> None:
    text, edited_text = f"lembrete {uuid.uuid4().hex[:8]}", f"lembrete corrigido {uuid.uuid4().hex[:8]}"
    r = await browser.post(
        f"/api/v1/tickets/{chat.ticket_id}/scheduled-messages",
        json={"body": text, "send_at": _when(1)},
        headers=chat.agent,
    )
    assert r.status_code == 201, r.text
    original = str(r.json()["id"])
    markers = {
        "edited_insert": (command_marker("insert", "scheduled_messages"), string_element("body", edited_text)),
        "outcome_claim": (
            command_marker("insert", "natural_keys"),
            string_element("_id", f"{scheduled.OUTCOME}:{chat.tenant.id}:{original}"),
        ),
        "original_settle": (
            command_marker("update", "scheduled_messages"),
            string_element("_id", original),
            string_element("reason", "edited"),
        ),
    }[write]
    path = f"/api/v1/scheduled-messages/{original}/replace"
    payload = {"body": edited_text, "send_at": _when(2)}
    stalled = store_proxy.stall_next(*markers, lose=lose)
    first = await browser.post(path, json=payload, headers=chat.agent)
    assert stalled.is_set(), f"the trap on the edit's {write} never sprang: {first.status_code} {first.text}"
    assert unanswered(first), first.text
    again = await browser.post(path, json=payload, headers=chat.agent)
    assert again.status_code == 201 or (again.status_code == 409 and "status" in again.json()["detail"]), again.text
    schedules = {s["_id"]: s for s in await _schedules(direct, chat.ticket_id)}
    waiting = [s for s in schedules.values() if s["status"] == "scheduled"]
    assert len(waiting) == 1 and waiting[0]["body"] == edited_text, (
        f"one edit made, {len(waiting)} waiting: {[(s['_id'], s['body'], s.get('replaces')) for s in waiting]}"
    )
    replacement = waiting[0]
    assert replacement["replaces"] == original, replacement
    if again.status_code == 201:
        assert again.json()["id"] == replacement["_id"], again.text
    old = schedules[original]
    assert (old["status"], old["reason"], old.get("replaced_by")) == ("canceled", "edited", replacement["_id"]), old
    await _due_pass_sends_once(db, direct, evolution, browser, chat, edited_text)
