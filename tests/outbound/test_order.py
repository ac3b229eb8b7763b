"""Replies reach the client in the order the agent wrote them, per chat (connection + client
number), whatever the provider does to the first one and however many workers run. The API's own
worker is off: the tests drive workers themselves (in-process `OutboundWorker`s, whose passes
they step, and real `python -m backend.outbound` processes)."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo.errors import AutoReconnect

from backend.connections.providers import registry
from backend.core import natural_keys
from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.messages import public as messages_public
from backend.messages import repository as messages_repo
from backend.messages.models import Message
from backend.outbound import repository
from backend.outbound import service as outbound
from backend.outbound.worker import OutboundWorker
from tests.factories import Tenant, make_tenant
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.holds import Hold, arrived, holds
from tests.outbound.helpers import (
    held_ticket,
    passes_until_sent,
    quick_lease_worker,
    start_worker,
    unsigned,
    writer_dies_once,
)

__all__ = ["holds"]


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    # A held send must outlast the test's steps, and its lease must not expire meanwhile.
    return {"OUTBOUND_WORKER_ENABLED": False, "EVOLUTION_TIMEOUT_SECONDS": 60.0, "OUTBOUND_LEASE_SECONDS": 60.0}


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with registry.http_client(settings) as c:
        yield c


@pytest.fixture
async def evolution_reset(evolution: FakeEvolution) -> AsyncIterator[FakeEvolution]:
    yield evolution
    await evolution.control("POST", "release")
    await evolution.mode("ok", fail_next=0, hold_next=0)


async def _chat(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> tuple[Tenant, dict[str, Any], str, str, dict[str, str]]:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    return tenant, conn, ticket_id, phone, agent


async def _reply(client: httpx.AsyncClient, ticket_id: str, agent: dict[str, str], text: str) -> str:
    r = await client.post(f"/api/v1/tickets/{ticket_id}/messages", json={"body": text}, headers=agent)
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    return str(r.json()["id"])


async def _received(evolution: FakeEvolution, phone: str) -> list[str]:
    """What the client got, in the order the provider took it."""
    return [unsigned(s["text"]) for s in await evolution.sent() if s["number"] == phone]


async def _held_sends(evolution: FakeEvolution) -> int:
    """How many sends the fake has held so far (the module's tests share the fake)."""
    calls = await evolution.control("GET", "calls")
    return sum(c["mode"] == "held" for c in calls)


async def _passes_until(workers: list[OutboundWorker], done: Any) -> None:
    """Steps the workers' passes (together) until `done()` holds."""

    async def step() -> Any:
        await asyncio.gather(*(w.run_once() for w in workers))
        return await done()

    await wait_for(step, timeout=60)


async def _status(db: Any, message_id: str) -> str:
    return str((await db.messages.find_one({"_id": message_id}))["status"])


async def test_a_reply_retried_after_a_5xx_still_reaches_the_client_before_the_next_ones(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution_reset: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
) -> None:
    evolution = evolution_reset
    _, _, ticket_id, phone, agent = await _chat(client, admin_headers, evolution, db)
    texts = ["primeira", "segunda", "terceira"]
    ids = [await _reply(client, ticket_id, agent, t) for t in texts]
    await evolution.mode("ok", fail_next=1)  # the first send answers 500 and is retried
    worker = OutboundWorker(db, settings, http)
    await worker.run_once()
    assert await _received(evolution, phone) == []  # the later ones waited for the first
    first = await db.outbox_attempts.find_one({"_id": f"{ids[0]}:1"})
    assert first["result"] == "error" and first["retryable"]
    assert await db.outbox_attempts.find_one({"_id": f"{ids[1]}:1"}) is None

    async def all_sent() -> bool:
        return [await _status(db, i) for i in ids] == ["sent"] * 3

    await _passes_until([worker], all_sent)
    assert await _received(evolution, phone) == texts


async def test_a_reply_failed_for_good_does_not_hold_its_chat(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution_reset: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
) -> None:
    """The failed reply shows as failed (the agent can write it again); the next ones go on."""
    evolution = evolution_reset
    _, _, ticket_id, phone, agent = await _chat(client, admin_headers, evolution, db)
    ids = [await _reply(client, ticket_id, agent, t) for t in ("perdida", "depois 1", "depois 2")]
    await evolution.mode("ok", fail_next=settings.OUTBOUND_MAX_ATTEMPTS)
    worker = OutboundWorker(db, settings, http)

    async def settled() -> bool:
        return all([await _status(db, i) != "pending" for i in ids])

    await _passes_until([worker], settled)
    assert [await _status(db, i) for i in ids] == ["failed", "sent", "sent"]
    assert await _received(evolution, phone) == ["depois 1", "depois 2"]
    last_failure = await db.outbox_attempts.find_one({"_id": f"{ids[0]}:{settings.OUTBOUND_MAX_ATTEMPTS}"})
    first_sent = await db.outbox_attempts.find_one({"_id": f"{ids[1]}:1"})
    assert first_sent["claimed_at"] >= last_failure["finished_at"]


async def test_a_delayed_first_send_holds_its_chat_in_every_worker_but_not_other_chats(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution_reset: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
) -> None:
    evolution = evolution_reset
    tenant, conn, ticket_a, phone_a, agent = await _chat(client, admin_headers, evolution, db)
    ticket_b, phone_b, _ = await held_ticket(client, tenant, evolution, conn, db)
    texts = ["um", "dois", "três"]
    ids = [await _reply(client, ticket_a, agent, t) for t in texts]
    held_before = await _held_sends(evolution)
    await evolution.mode("ok", hold_next=1)  # the provider takes its time over the first send
    first, second = OutboundWorker(db, settings, http), OutboundWorker(db, settings, http)
    held_pass = asyncio.create_task(first.run_once())
    try:

        async def held() -> bool:
            return await _held_sends(evolution) > held_before

        await wait_for(held)
        other = await _reply(client, ticket_b, agent, "outro chat")

        # The second worker, pass after pass: the other chat goes, this chat's next replies wait.
        async def other_sent() -> bool:
            return await _status(db, other) == "sent"

        await _passes_until([second], other_sent)
        await second.run_once()
        assert await _received(evolution, phone_b) == ["outro chat"]
        assert await _received(evolution, phone_a) == []
        assert await _status(db, ids[0]) == "pending"
        for later in ids[1:]:
            assert await db.outbox_attempts.find_one({"_id": f"{later}:1"}) is None
    finally:
        await evolution.control("POST", "release")
        await held_pass

    async def all_sent() -> bool:
        return [await _status(db, i) for i in ids] == ["sent"] * 3

    await _passes_until([first, second], all_sent)
    assert await _received(evolution, phone_a) == texts
    assert await db.outbox_attempts.count_documents({"message_id": {"$in": ids}}) == 3


async def test_a_chat_position_whose_request_died_holds_the_chat_only_for_the_lease(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution_reset: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The request dies between taking its place in the chat and queueing: no message is ever
    stored for that place. The next reply waits while the request might still be storing it
    (younger than the lease), then goes."""
    evolution = evolution_reset
    _, conn, ticket_id, phone, agent = await _chat(client, admin_headers, evolution, db)

    async def dies(*_: Any, **__: Any) -> int:
        raise RuntimeError("process killed")

    with monkeypatch.context() as m:
        m.setattr(repository, "enqueue", dies)
        with pytest.raises(RuntimeError):
            await client.post(f"/api/v1/tickets/{ticket_id}/messages", json={"body": "nunca"}, headers=agent)
    after = await _reply(client, ticket_id, agent, "depois")
    worker = OutboundWorker(db, settings, http)
    await worker.run_once()
    assert await _status(db, after) == "pending"  # the dead request's place is young
    chat = repository.chat_key(conn["id"], phone)
    await db.outbox_chats.update_one(
        {"_id": repository.chat_entry_id(chat, 1)},
        {"$set": {"enqueued_at": utcnow() - timedelta(seconds=settings.OUTBOUND_LEASE_SECONDS + 1)}},
    )

    async def sent() -> bool:
        return await _status(db, after) == "sent"

    await _passes_until([worker], sent)
    assert await _received(evolution, phone) == ["depois"]


@dataclass
class LateReply:
    """A reply whose insert landed more than a lease after it was queued (a stalled store), after
    the worker passed its entry as never stored; with `dies`, its request died right after that
    insert, before looking for the worker's mark (stored, pending, its entry passed)."""

    message_id: str
    ticket_id: str
    phone: str
    agent: dict[str, str]
    worker: OutboundWorker


async def _passes_one_entry_each(db: Any, settings: Settings, http: httpx.AsyncClient) -> None:
    """Passes of a worker that looks at one open entry per pass, round the open queue: as another
    process's worker whose page holds a later reply without the earlier one (in one page, a
    chat's entries go in order, and the first unfinished one stops the rest)."""
    lone = quick_lease_worker(db, settings, http, OUTBOUND_SCAN_LIMIT=1)
    for _ in range(await repository.queue.head(db) - await repository.queue.get_cursor(db)):
        await lone.run_once()


@pytest.fixture
def late_reply(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution_reset: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
    holds: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Awaitable[LateReply]]:
    """`late_reply(dies=..., key=None)` stages a `LateReply` in a chat of its own."""

    async def stage(*, dies: bool, key: str | None = None) -> LateReply:
        return await _late_reply(
            client, admin_headers, evolution_reset, db, settings, http, holds, monkeypatch, dies=dies, key=key
        )

    return stage


async def _insert_held_past_a_lease(
    client: httpx.AsyncClient, holds: Any, worker: OutboundWorker, ticket_id: str, headers: dict[str, str]
) -> tuple[Hold, "asyncio.Task[httpx.Response]", list[str]]:
    """The agent's reply "atrasada" is queued and its insert held (until the Hold's `go`) past the
    worker's lease. Returns the hold, the request under way and (once its insert arrived) its id."""
    ids: list[str] = []

    def late(_db: Any, message: Message) -> bool:
        if "atrasada" in message.body:
            ids.append(message.id)
            return True
        return False

    held = holds(messages_repo, "insert", late)
    url = f"/api/v1/tickets/{ticket_id}/messages"
    request = asyncio.create_task(client.post(url, json={"body": "atrasada"}, headers=headers))
    await arrived(held.entered, request, "the reply's insert")
    await asyncio.sleep(worker.policy.lease_seconds + 0.2)
    return held, request, ids


async def _late_reply(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
    holds: Any,
    monkeypatch: pytest.MonkeyPatch,
    *,
    dies: bool,
    key: str | None,
) -> LateReply:
    _, _, ticket_id, phone, agent = await _chat(client, admin_headers, evolution, db)
    worker = quick_lease_worker(db, settings, http)
    headers = {**agent, **({"Idempotency-Key": key} if key else {})}
    held, request, ids = await _insert_held_past_a_lease(client, holds, worker, ticket_id, headers)
    await worker.run_once()
    assert await natural_keys.lookup(db, outbound.PASSED_KEY, ids[0]), "the entry was not passed"
    if dies:
        writer_dies_once(monkeypatch, ids[0])
    held.go.set()
    if dies:
        with pytest.raises(RuntimeError):
            await request
        assert await _status(db, ids[0]) == "pending"
    else:
        assert (await request).status_code == 201
    return LateReply(ids[0], ticket_id, phone, agent, worker)


async def test_a_reply_stored_after_the_worker_passed_its_entry_is_sent_all_the_same(
    client: httpx.AsyncClient,
    evolution_reset: FakeEvolution,
    db: Any,
    late_reply: Callable[..., Awaitable[LateReply]],
) -> None:
    """A late-stored reply (`LateReply`) is sent all the same, before the next reply, and is not
    left pending (shown waiting, never sent, holding up its chat)."""
    scene = await late_reply(dies=False)
    after = await _reply(client, scene.ticket_id, scene.agent, "depois")
    await passes_until_sent(db, scene.worker, [scene.message_id, after])
    assert await _received(evolution_reset, scene.phone) == ["atrasada", "depois"]


async def test_a_late_stored_reply_whose_writer_died_is_queued_again_by_the_next_reply_of_its_chat(
    client: httpx.AsyncClient,
    evolution_reset: FakeEvolution,
    db: Any,
    late_reply: Callable[..., Awaitable[LateReply]],
) -> None:
    """A late-stored reply whose request died: the agent's next reply in the chat must not wait
    for it forever; both reach the client (the late one after the next: its place in the chat was
    given up)."""
    scene = await late_reply(dies=True)
    await asyncio.sleep(scene.worker.policy.lease_seconds + 0.2)  # the stored reply outlives a lease too
    after = await _reply(client, scene.ticket_id, scene.agent, "depois")
    await passes_until_sent(db, scene.worker, [scene.message_id, after])
    assert await _received(evolution_reset, scene.phone) == ["depois", "atrasada"]


async def test_a_late_stored_reply_whose_writer_died_is_queued_again_by_the_agents_repeat(
    client: httpx.AsyncClient,
    evolution_reset: FakeEvolution,
    db: Any,
    late_reply: Callable[..., Awaitable[LateReply]],
) -> None:
    """A late-stored reply whose request died, sent again by the agent's screen (which never got
    an answer) with its Idempotency-Key: the repeat answers the stored reply and queues it again;
    it reaches the client once."""
    key = "resposta-atrasada-1"
    scene = await late_reply(dies=True, key=key)
    url = f"/api/v1/tickets/{scene.ticket_id}/messages"
    r = await client.post(url, json={"body": "atrasada"}, headers={**scene.agent, "Idempotency-Key": key})
    assert (r.status_code, r.json()["id"]) == (201, scene.message_id), r.text
    await passes_until_sent(db, scene.worker, [scene.message_id])
    assert await _received(evolution_reset, scene.phone) == ["atrasada"]


async def test_a_late_stored_reply_whose_writer_died_is_sent_with_no_one_else_coming(
    client: httpx.AsyncClient,
    evolution_reset: FakeEvolution,
    db: Any,
    late_reply: Callable[..., Awaitable[LateReply]],
) -> None:
    """A late-stored reply whose request died, with no repeat and no later reply in its chat: the
    worker's walk of what it passed finds it stored and sends it, rather than leaving it pending
    (shown with the clock, never sent) for good."""
    scene = await late_reply(dies=True)
    await passes_until_sent(db, scene.worker, [scene.message_id])
    assert await _received(evolution_reset, scene.phone) == ["atrasada"]


async def test_a_reply_queued_after_a_late_reply_was_queued_again_waits_for_it(
    client: httpx.AsyncClient,
    evolution_reset: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
    late_reply: Callable[..., Awaitable[LateReply]],
) -> None:
    """A late-stored reply queued again (its first place given up) holds the replies written after
    it from its new place: while its send waits out a backoff, the next reply waits too."""
    evolution = evolution_reset
    scene = await late_reply(dies=True)
    await evolution.mode("ok", fail_next=1)  # its first send answers 500: retried after a backoff
    worker = scene.worker

    async def tried_once() -> bool:
        return await db.outbox_attempts.find_one({"_id": f"{scene.message_id}:1"}) is not None

    await _passes_until([worker], tried_once)
    again = await db.outbox_chats.find_one({"message_id": scene.message_id, "again": True})
    assert again is not None, "not queued again"
    await asyncio.sleep(worker.policy.lease_seconds + 0.2)  # the stored reply outlives a lease
    after = await _reply(client, scene.ticket_id, scene.agent, "depois")
    await _passes_one_entry_each(db, settings, http)
    assert await _status(db, after) == "pending"
    await passes_until_sent(db, worker, [scene.message_id, after])
    assert await _received(evolution, scene.phone) == ["atrasada", "depois"]


async def test_a_reply_that_showed_up_at_the_workers_last_look_keeps_its_place(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution_reset: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
    holds: Any,
) -> None:
    """The worker marks a reply it is about to give up on, then looks once more: stored meanwhile,
    its entry is not given up. The mark alone must not let the next reply pass it: while its send
    waits out a backoff, the next reply waits too."""
    evolution = evolution_reset
    _, _, ticket_id, phone, agent = await _chat(client, admin_headers, evolution, db)
    worker = quick_lease_worker(db, settings, http)
    inserting = holds(messages_repo, "insert", lambda _db, message: "atrasada" in message.body)
    url = f"/api/v1/tickets/{ticket_id}/messages"
    request = asyncio.create_task(client.post(url, json={"body": "atrasada"}, headers=agent))
    await arrived(inserting.entered, request, "the reply's insert")
    await asyncio.sleep(worker.policy.lease_seconds + 0.2)
    marking = holds(outbound.natural_keys, "bind", lambda _db, kind, *_, **__: kind == outbound.PASSED_KEY)
    passing = asyncio.create_task(worker.run_once())
    await arrived(marking.entered, passing, "the worker's mark")
    inserting.go.set()
    first = await request
    assert first.status_code == 201, first.text
    marking.go.set()
    await passing
    late = first.json()["id"]
    assert await db.natural_keys.find_one({"_id": f"{outbound.PASSED_KEY}:{late}"}), "not marked"
    assert not await outbound.gave_up(db, late)
    await evolution.mode("ok", fail_next=1)  # its first send answers 500: retried after a backoff

    async def tried_once() -> bool:
        return await db.outbox_attempts.find_one({"_id": f"{late}:1"}) is not None

    await _passes_until([worker], tried_once)
    await asyncio.sleep(worker.policy.lease_seconds + 0.2)  # the stored reply outlives a lease
    after = await _reply(client, ticket_id, agent, "depois")
    await _passes_one_entry_each(db, settings, http)
    assert await _status(db, after) == "pending"
    await passes_until_sent(db, worker, [late, after])
    assert await _received(evolution, phone) == ["atrasada", "depois"]


@pytest.mark.parametrize("dies_at", ["enqueue", "mark_chat_again"])
async def test_a_requeue_that_dies_between_its_writes_loses_nothing_and_holds_no_chat(
    client: httpx.AsyncClient,
    evolution_reset: FakeEvolution,
    db: Any,
    late_reply: Callable[..., Awaitable[LateReply]],
    monkeypatch: pytest.MonkeyPatch,
    dies_at: str,
) -> None:
    """A late-stored reply queued again takes a new place in its chat, then its queue entry, then
    marks that place `again`. The store fails (or the process dies) after the first write
    (`enqueue`: the place has no entry to send from) or after the second (`mark_chat_again`: the
    place is not marked, so the next reply may go before it, the slip the mark is for). Neither
    the next reply nor the late one is lost, held for good, or sent twice."""
    scene = await late_reply(dies=True)
    real, died = getattr(repository, dies_at), list[bool]()

    async def dies_once(db_: Any, *args: Any) -> Any:
        if not died:
            died.append(True)
            raise AutoReconnect("the store went away")
        return await real(db_, *args)

    monkeypatch.setattr(repository, dies_at, dies_once)
    await asyncio.sleep(scene.worker.policy.lease_seconds + 0.2)  # the walk of the passed log is due
    await scene.worker.run_once()  # queues it again, and fails at `dies_at`
    assert died, "the requeue did not run"
    places = await db.outbox_chats.find({"message_id": scene.message_id}).to_list(None)
    entries = await db.outbox.find({"message_id": scene.message_id}).to_list(None)
    assert (len(places), len(entries)) == (2, 1 if dies_at == "enqueue" else 2), (places, entries)
    assert not [p for p in places if p.get("again")]
    after = await _reply(client, scene.ticket_id, scene.agent, "depois")
    await passes_until_sent(db, scene.worker, [scene.message_id, after])
    assert sorted(await _received(evolution_reset, scene.phone)) == ["atrasada", "depois"]


async def test_a_reply_passed_by_an_older_version_does_not_hold_the_next_reply_of_its_chat(
    client: httpx.AsyncClient,
    evolution_reset: FakeEvolution,
    db: Any,
    late_reply: Callable[..., Awaitable[LateReply]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An entry passed by the version before this one (its mark alone, naming the message; no
    give-up key, nothing in the passed log), whose reply was stored late by a writer that died:
    after the deploy, the next reply of its chat queues it again and goes, as it did then."""

    async def older_pass(db_: Any, *, message_id: str, ticket_id: str) -> bool:
        await natural_keys.bind(db_, outbound.PASSED_KEY, message_id, target=message_id)
        return await messages_public.get_internal(db_, message_id) is None

    with monkeypatch.context() as older:
        older.setattr(outbound, "pass_unstored", older_pass)
        scene = await late_reply(dies=True)
    assert await db.outbox_passed.find_one({"message_id": scene.message_id}) is None
    await asyncio.sleep(scene.worker.policy.lease_seconds + 0.2)  # the stored reply outlives a lease
    after = await _reply(client, scene.ticket_id, scene.agent, "depois")
    await passes_until_sent(db, scene.worker, [scene.message_id, after])
    assert await _received(evolution_reset, scene.phone) == ["depois", "atrasada"]


async def test_the_passed_logs_walk_does_not_stop_looking_before_the_pass_gives_up(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution_reset: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
    holds: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between a pass's last look (nothing stored) and its give-up, the reply's insert lands and
    its writer dies; another process's walk of the passed log looks right then (stored, pending,
    not given up yet). It must look again later, not count the reply as taken care of: the pass
    then gives its entry up, and no one else would send it."""
    _, _, ticket_id, phone, agent = await _chat(client, admin_headers, evolution_reset, db)
    worker, other = quick_lease_worker(db, settings, http), quick_lease_worker(db, settings, http)
    inserting, request, ids = await _insert_held_past_a_lease(client, holds, worker, ticket_id, agent)
    giving_up = holds(outbound.natural_keys, "bind", lambda _db, kind, *_, **__: kind == outbound.GAVE_UP_KEY)
    passing = asyncio.create_task(worker.run_once())
    await arrived(giving_up.entered, passing, "the pass's give-up")
    writer_dies_once(monkeypatch, ids[0])
    inserting.go.set()
    with pytest.raises(RuntimeError):
        await request
    await other.passed_walk.run_once(db, other._recheck_passed)  # the other process's walk, alone
    giving_up.go.set()
    await passing
    assert await outbound.gave_up(db, ids[0])
    await passes_until_sent(db, other, [ids[0]])
    assert await _received(evolution_reset, phone) == ["atrasada"]


async def test_two_worker_processes_keep_every_chat_in_order(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution_reset: FakeEvolution,
    db: Any,
    settings: Settings,
    tmp_path: Path,
) -> None:
    evolution = evolution_reset
    tenant, conn, ticket, phone, agent = await _chat(client, admin_headers, evolution, db)
    chats = [(ticket, phone)]
    for _ in range(2):
        more_ticket, more_phone, _ = await held_ticket(client, tenant, evolution, conn, db)
        chats.append((more_ticket, more_phone))
    written: dict[str, list[str]] = {p: [] for _, p in chats}
    ids = []
    for i in range(6):  # interleaved across the chats, as agents type
        for ticket_id, chat_phone in chats:
            text = f"{chat_phone[-4:]} resposta {i}"
            ids.append(await _reply(client, ticket_id, agent, text))
            written[chat_phone].append(text)
    await evolution.mode("ok", fail_next=3)  # the first sends the workers make answer 500
    workers = [
        start_worker(settings, tmp_path / f"worker{i}.log", OUTBOUND_BACKOFF_BASE_SECONDS="0.2") for i in range(2)
    ]
    try:

        async def all_sent() -> bool:
            return await db.messages.count_documents({"_id": {"$in": ids}, "status": "sent"}) == len(ids)

        await wait_for(all_sent, timeout=120)
    finally:
        for w in workers:
            w.terminate()
            w.wait(10)
    for _, chat_phone in chats:
        assert await _received(evolution, chat_phone) == written[chat_phone]
