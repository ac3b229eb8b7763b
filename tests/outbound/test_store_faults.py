"""An agent's reply on its way through the outbox while the store loses one write.

The backend reaches the store through a relay (tests/tcp_relay.py) that stalls the one connection
carrying a chosen command: the command never runs (`lose="request"`) or it runs and its answer
never comes back (`lose="reply"`); with MONGO_SOCKET_TIMEOUT_MS the caller gets a NetworkTimeout
after 1.5 s, as from any store hiccup. The writes that matter on the way of a reply:
- the API's queue writes: its chat position (`outbox_chats`) and its queue entry (`outbox`);
- the worker's claim of attempt 1 (`outbox_attempts` insert), the attempt's verdict (its
  `outbox_attempts` update), the message's move to "sent" (`messages` findAndModify: FerretDB's
  conditional update, backend/core/conditional.py) and the walk's cursor (`outbox_state`);
- for a scheduled reply, the due pass's outcome claim (`natural_keys`) and the message it stores.
Whatever is lost, the end state must hold: the client got the reply (once: the fake posts the
fromMe echo, so even an unanswered send is told apart, worker.py module docstring), the message
reads "sent" (never "sent" unless the provider took it, never left pending), the chat's next
reply reached the client after it, and open screens were told (`tenant_events` "message.status"
"sent", what backend/outbound/service.py `announce_status` publishes).

The API's own worker is off: each test starts a real `OutboundWorker.run` loop (the same loop the
backend runs in its lifespan) on the API's database handle, which goes through the relay, once
the trap is armed on the reply's id."""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from backend.core.clock import utcnow
from backend.scheduled import service as scheduled
from tests.factories import Tenant, make_tenant
from tests.fakes.harness import FakeEvolution, last_within, make_connection
from tests.outbound.helpers import held_ticket, unsigned, worker_loop
from tests.tcp_relay import Lose, StoreProxy, command_marker, relayed, string_element

__all__ = ["worker_loop"]  # the `start_worker` fixture (tests/outbound/helpers.py)

LEASE = 5.0  # OUTBOUND_LEASE_SECONDS: what a claimed attempt that never got its verdict waits out
SETTLE = 45.0  # how long a faulted reply may take to settle: a stall, a lease, a backoff, a pass


@pytest.fixture(scope="module")
def settings_overrides(store_relay: StoreProxy) -> dict[str, Any]:
    return {
        **relayed(store_relay),
        "OUTBOUND_WORKER_ENABLED": False,  # each test runs its own, started once its trap is armed
        "OUTBOUND_LEASE_SECONDS": LEASE,
        "SCHEDULED_MESSAGES_ENABLED": False,  # the scheduled test runs its due passes itself
    }


@dataclass
class Chat:
    tenant: Tenant
    conn: dict[str, Any]
    ticket_id: str
    phone: str
    agent: dict[str, str]


async def _chat(client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any) -> Chat:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    return Chat(tenant, conn, ticket_id, phone, agent)


async def _reply(client: httpx.AsyncClient, chat: Chat, text: str) -> str:
    r = await client.post(f"/api/v1/tickets/{chat.ticket_id}/messages", json={"body": text}, headers=chat.agent)
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    return str(r.json()["id"])


async def _received(evolution: FakeEvolution, phone: str) -> list[dict[str, Any]]:
    """What the provider took for the client, in the order it took it (signature removed)."""
    return [{**s, "text": unsigned(s["text"])} for s in await evolution.sent() if s["number"] == phone]


async def _announced(direct: Any, message_id: str, status: str) -> int:
    """Feed records telling open screens that the message has `status` (service.announce_status)."""
    query = {"type": "message.status", "data.message_id": message_id, "data.status": status}
    return int(await direct.tenant_events.count_documents(query))


async def _settled(direct: Any, ids: list[str]) -> list[dict[str, Any]] | None:
    found = {m["_id"]: m for m in await direct.messages.find({"_id": {"$in": ids}}).to_list(None)}
    if len(found) < len(ids) or any(found[i]["status"] == "pending" for i in ids):
        return None
    return [found[i] for i in ids]


async def _cursor_past(direct: Any, message_ids: list[str]) -> bool:
    """The walk's cursor moved past every queue entry of these messages: none is left queued."""
    entries = await direct.outbox.find({"message_id": {"$in": message_ids}}).to_list(None)
    cursor = await direct.outbox_state.find_one({"_id": "cursor"})
    return bool(entries) and cursor is not None and cursor["seq"] >= max(e["seq"] for e in entries)


async def _check_end_state(
    direct: Any, evolution: FakeEvolution, chat: Chat, sent: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """The chat's replies `sent` ((message id, text), in the order written) all settle "sent",
    each taken once by the provider, in order, with the provider id it answered; each announced
    to open screens; none left queued. Returns the provider's records for the chat."""
    ids = [m for m, _ in sent]
    messages = await last_within(lambda: _settled(direct, ids), timeout=SETTLE)
    assert messages, (
        f"a reply is still pending {SETTLE}s later: {await direct.messages.find({'_id': {'$in': ids}}).to_list(None)}"
    )
    received = await _received(evolution, chat.phone)
    texts = [r["text"] for r in received]
    for message, (_, text) in zip(messages, sent, strict=True):
        # Never "sent" unless the provider took it: and then with the very id it answered.
        assert message["status"] == "sent", message
        assert texts.count(text) == 1, f"{text!r} taken {texts.count(text)} times by the provider: {texts}"
        (taken,) = [r for r in received if r["text"] == text]
        assert message["provider_message_id"] == taken["key_id"], (message, taken)
    assert texts == [t for _, t in sent], f"the client read the replies out of order: {texts}"
    for message_id, text in sent:
        shown = await last_within(lambda m=message_id: _announced(direct, m, "sent"), timeout=10)
        assert shown >= 1, f"{text!r} ({message_id}) is sent but no open screen was told (no message.status 'sent')"
    passed = await last_within(lambda: _cursor_past(direct, ids), timeout=10)
    assert passed, "the walk's cursor never passed the replies"
    return received


async def _fault_on_first_reply(
    client: httpx.AsyncClient,
    chat: Chat,
    start_worker: Callable[[], None],
    arm: Callable[[str], asyncio.Event],
) -> list[tuple[str, str]]:
    """The chat's first reply is written, the trap armed on its id and the worker started; once
    the trap sprang, the agent writes the next reply (it must wait for the first). Returns
    (message id, text) of both, in the order written."""
    first_text, second_text = "primeira: o boleto segue em anexo", "segunda: qualquer dúvida, estou aqui"
    first = await _reply(client, chat, first_text)
    stalled = arm(first)
    start_worker()
    await asyncio.wait_for(stalled.wait(), timeout=20)
    second = await _reply(client, chat, second_text)
    return [(first, first_text), (second, second_text)]


@pytest.mark.parametrize("lose", ["request", "reply"])
async def test_a_lost_claim_of_the_first_attempt(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    start_worker: Callable[[], None],
    lose: Lose,
) -> None:
    """The insert of attempt 1 (the claim). `request`: nothing claimed, the next pass claims again.
    `reply`: the claim is stored and its worker never heard: it is an attempt whose worker died
    before calling the provider, taken over once its lease ends (attempt 2), sent once."""
    chat = await _chat(client, admin_headers, evolution, db)

    def arm(message_id: str) -> asyncio.Event:
        claim = string_element("_id", f"{message_id}:1")
        return store_proxy.stall_next(command_marker("insert", "outbox_attempts"), claim, lose=lose)

    sent = await _fault_on_first_reply(client, chat, start_worker, arm)
    await _check_end_state(direct, evolution, chat, sent)
    attempts = await direct.outbox_attempts.find({"message_id": sent[0][0]}).sort("attempt", 1).to_list(None)
    if lose == "reply":
        assert [a["attempt"] for a in attempts] == [1, 2] and attempts[0].get("result") is None, attempts
    assert attempts[-1]["result"] == "sent", attempts


@pytest.mark.parametrize("lose", ["request", "reply"])
async def test_a_lost_verdict_of_a_send_the_provider_took(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    start_worker: Callable[[], None],
    lose: Lose,
) -> None:
    """The provider took the send; the attempt's "sent" verdict write is lost. `request`: the
    attempt stays unanswered, the fromMe echo that came meanwhile is held for it, and once its
    lease ends the echo answers it (`answered_by` "echo"): sent, not sent again. `reply`: the
    verdict is stored; the next pass settles it."""
    chat = await _chat(client, admin_headers, evolution, db)

    def arm(message_id: str) -> asyncio.Event:
        attempt = string_element("_id", f"{message_id}:1")
        return store_proxy.stall_next(command_marker("update", "outbox_attempts"), attempt, lose=lose)

    sent = await _fault_on_first_reply(client, chat, start_worker, arm)
    await _check_end_state(direct, evolution, chat, sent)
    attempts = await direct.outbox_attempts.find({"message_id": sent[0][0]}).to_list(None)
    assert len(attempts) == 1 and attempts[0]["result"] == "sent", attempts
    if lose == "request":
        assert attempts[0].get("answered_by") == "echo", attempts


@pytest.mark.parametrize("lose", ["request", "reply"])
async def test_a_lost_move_of_the_message_to_sent(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    start_worker: Callable[[], None],
    lose: Lose,
) -> None:
    """The attempt's verdict is stored; the message's own move to "sent" is lost. `request`: the
    message is still pending and the next pass settles the stored success. `reply`: the message
    is "sent" in the store, but its worker never heard: the announcement that follows the move
    must still reach the screens (the agent otherwise sees the reply pending until a reload)."""
    chat = await _chat(client, admin_headers, evolution, db)

    def arm(message_id: str) -> asyncio.Event:
        move = command_marker("findAndModify", "messages")
        return store_proxy.stall_next(
            move, string_element("_id", message_id), string_element("status", "sent"), lose=lose
        )

    sent = await _fault_on_first_reply(client, chat, start_worker, arm)
    await _check_end_state(direct, evolution, chat, sent)


@pytest.mark.parametrize("lose", ["request", "reply"])
async def test_a_lost_cursor_write(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    start_worker: Callable[[], None],
    lose: Lose,
) -> None:
    """The walk's cursor (a hint) fails to move past the first reply: the pass fails after the
    reply went; nothing is sent again, and the cursor moves on at a later pass."""
    chat = await _chat(client, admin_headers, evolution, db)

    def arm(message_id: str) -> asyncio.Event:
        cursor = string_element("_id", "cursor")
        return store_proxy.stall_next(command_marker("update", "outbox_state"), cursor, lose=lose)

    sent = await _fault_on_first_reply(client, chat, start_worker, arm)
    await _check_end_state(direct, evolution, chat, sent)


async def test_a_queue_entry_stored_but_its_answer_lost(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    start_worker: Callable[[], None],
) -> None:
    """The API's queue entry is stored and its answer lost: the append retries (seqlog
    `_insert_in_order`), meets its own entry and knows it by what it holds, so the reply is
    queued once. The request still succeeds; the reply is sent once."""
    chat = await _chat(client, admin_headers, evolution, db)
    entry = string_element("ticket_id", chat.ticket_id)
    stalled = store_proxy.stall_next(command_marker("insert", "outbox"), entry, lose="reply")
    first_text, second_text = "primeira: enfileirada duas vezes", "segunda: depois dela"
    first = await _reply(client, chat, first_text)
    assert stalled.is_set()
    entries = await direct.outbox.find({"message_id": first}).to_list(None)
    assert len(entries) == 1, entries  # not a second copy under the next number
    start_worker()
    second = await _reply(client, chat, second_text)
    await _check_end_state(direct, evolution, chat, [(first, first_text), (second, second_text)])


async def test_a_chat_position_stored_but_its_answer_lost(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    start_worker: Callable[[], None],
    backend_port: int,
) -> None:
    """The reply's chat position is stored and its answer lost: the request fails (the agent sees
    an error, nothing is stored as its message, nothing goes to the client), and the chat's next
    reply passes the orphan position once it is older than a lease rather than wait forever."""
    chat = await _chat(client, admin_headers, evolution, db)
    start_worker()
    stalled = store_proxy.stall_next(command_marker("insert", "outbox_chats"), lose="reply")
    lost_text = "esta resposta não foi aceita"
    # Over the real port: what a browser gets.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{backend_port}", timeout=60) as real:
        r = await real.post(f"/api/v1/tickets/{chat.ticket_id}/messages", json={"body": lost_text}, headers=chat.agent)
    assert stalled.is_set()
    # Not acknowledged: the agent is told to try again (app.py's answer to a silent store).
    assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
    assert r.json() == {"detail": "the database did not answer; retry"}
    orphan = await direct.outbox_chats.find_one({"chat": {"$regex": f"^{chat.conn['id']}:"}, "k": 1})
    assert orphan is not None and await direct.messages.find_one({"_id": orphan["message_id"]}) is None, orphan
    next_text = "esta sim"
    second = await _reply(client, chat, next_text)
    received = await _check_end_state(direct, evolution, chat, [(second, next_text)])
    assert lost_text not in [s["text"] for s in received]


@pytest.mark.parametrize(
    "fault",
    ["outcome-claim:reply", "message-insert:request", "message-insert:reply"],
)
async def test_a_scheduled_reply_whose_due_pass_loses_a_write(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    start_worker: Callable[[], None],
    fault: str,
) -> None:
    """A due pass claims the schedule's outcome ("sent"), then stores the reply it becomes; one of
    those writes is lost and the pass fails. The next pass must finish the job: the reply stored
    once, queued, sent once, the schedule settled "sent", and the reply shown like any reply
    (announced as created, the ticket's activity moved to it) — what the first pass would have
    done."""
    chat = await _chat(client, admin_headers, evolution, db)
    start_worker()
    text = "lembrete: o boleto vence amanhã"
    r = await client.post(
        f"/api/v1/tickets/{chat.ticket_id}/scheduled-messages",
        json={"body": text, "send_at": (utcnow() + timedelta(hours=1)).isoformat()},
        headers=chat.agent,
    )
    assert r.status_code == 201, r.text
    schedule_id = str(r.json()["id"])
    message_id = scheduled.message_id_of(schedule_id)
    what, lose = fault.split(":")
    if what == "outcome-claim":
        key = f"{scheduled.OUTCOME}:{chat.tenant.id}:{schedule_id}"
        marker = (command_marker("insert", "natural_keys"), string_element("_id", key))
    else:
        marker = (command_marker("insert", "messages"), string_element("_id", message_id))
    stalled = store_proxy.stall_next(*marker, lose="reply" if lose == "reply" else "request")
    later = utcnow() + timedelta(hours=2)
    assert await scheduled.run_due(db, later) == 0  # the pass met the lost write: nothing settled
    assert stalled.is_set()
    schedule = await direct.scheduled_messages.find_one({"_id": schedule_id})
    assert schedule["status"] == "scheduled", schedule  # still waiting for a pass
    assert await scheduled.run_due(db, later) == 1
    assert await scheduled.run_due(db, later) == 0  # settled: never again
    schedule = await direct.scheduled_messages.find_one({"_id": schedule_id})
    assert schedule["status"] == "sent" and schedule["message_id"] == message_id, schedule
    assert await direct.messages.count_documents({"_id": message_id}) == 1
    await _check_end_state(direct, evolution, chat, [(message_id, text)])
    # What storing a reply is followed by (messages.service `_after_stored`, `_recorded`), checked
    # together so a failure names everything the retried pass left undone. The ticket's activity
    # is also repaired by the ticket sweep (every TICKET_SWEEP_SECONDS): given the time for it.

    async def undone() -> list[str]:
        message = await direct.messages.find_one({"_id": message_id})
        created = await direct.tenant_events.count_documents({"type": "message.created", "message.id": message_id})
        ticket = await direct.tickets.find_one({"_id": chat.ticket_id})
        r = await client.get("/api/v1/reports/summary", headers=chat.tenant.headers)
        assert r.status_code == 200, r.text
        missing = []
        if created < 1:
            missing.append("never announced as created (no message.created feed record)")
        if ticket["last_message_at"] < message["created_at"]:
            missing.append(f"the ticket's activity never moved to it ({ticket['last_message_at']})")
        if r.json()["messages_out"] != 1:  # the tenant's one agent reply (the client's message is "in")
            missing.append(f"not in the reports: messages_out {r.json()['messages_out']}")
        return missing

    async def all_done() -> bool:
        return not await undone()

    await last_within(all_done, timeout=15)
    left = await undone()
    assert not left, f"the scheduled reply was stored and sent, but {left}"
