"""The inbound lanes under the processor (backend/webhooks/processor.py): holes left by writers
that died, cursors after bursts, one lane's backlog beside another lane's message, lanes retired
by lowering WEBHOOK_LANES, and failures worth retrying. As in test_processor, the API process
runs no processor: deliveries are stored by `service.receive` (what the route runs) and the
tests drive processors themselves."""

import asyncio
import contextlib
import json
import math
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from backend.core import group_commit
from backend.core.clock import as_utc, utcnow
from backend.core.config import Settings
from backend.core.db import durable_database
from backend.core.errors import Conflict, NotYetVisible
from backend.core.seqlog import SeqLog
from backend.core.tuning import HANDED_MAX_BYTES
from backend.tickets import intake
from backend.webhooks import processor as processor_module
from backend.webhooks import repository, service, signals
from backend.webhooks.processor import BATCH, CURSOR_EVERY, FOREIGN_CHECK_EVERY, WebhookProcessor
from tests.factories import make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.monitoring import CommandRecorder
from tests.simulated_processes import SimulatedProcesses
from tests.webhooks.helpers import text_upsert


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"WEBHOOK_PROCESSOR_ENABLED": False, "WEBHOOK_LANES": 4, "WEBHOOK_HOLE_GRACE_SECONDS": 1.0}


def _upsert(phone: str, key_id: str) -> bytes:
    return json.dumps(text_upsert(phone, key_id, key_id)).encode()


class Hook:
    """Stores deliveries for one connection as the webhook route does."""

    def __init__(self, db: Any, settings: Settings, conn: dict[str, Any], token: str) -> None:
        self.db, self.settings, self.conn_id, self.token = db, settings, conn["id"], token
        self.sent = 0

    def lane(self, phone: str) -> int:
        return service.lane_of(self.conn_id, f"{phone}@s.whatsapp.net", self.settings.WEBHOOK_LANES)

    async def deliver(self, phone: str, *, via: Any = None) -> str:
        """`via`: another process's database handle (its own client and runtime) to store it."""
        self.sent += 1
        _, raw_id = await service.receive(
            via if via is not None else self.db,
            connection_id=self.conn_id,
            token=self.token,
            event_hint=None,
            body=_upsert(phone, f"3EB0{phone}-{self.sent}"),
            lanes=self.settings.WEBHOOK_LANES,
        )
        return raw_id


@pytest.fixture
async def hook(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any, settings: Settings
) -> Hook:
    """A tenant with an open connection, and nothing pending in any lane."""
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution, processed=False)
    await WebhookProcessor(db, settings).run_once()
    token = (await db.whatsapp_connections.find_one({"_id": conn["id"]}))["webhook_token"]
    return Hook(db, settings, conn, token)


def _phone_in_lane(hook: Hook, wanted: set[int]) -> str:
    while True:
        phone = unique_phone()
        if hook.lane(phone) in wanted:
            return phone


@pytest.fixture
def dying(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """Raw entries whose `_id` is put here are never stored: their writer hangs in the insert
    until it is cancelled — a process killed between taking a lane number and storing it."""
    doomed: set[str] = set()
    real = group_commit.insert_one

    async def insert_one(collection: Any, doc: dict[str, Any]) -> None:
        if doc["_id"] in doomed:
            await asyncio.Event().wait()
        await real(collection, doc)

    monkeypatch.setattr(group_commit, "insert_one", insert_one)
    yield doomed


async def test_any_pattern_of_holes_is_passed_in_one_poll_once_the_entries_after_it_outlived_the_grace(
    db: Any, hook: Hook, dying: set[str]
) -> None:
    phone = unique_phone()
    seqlog = repository.lane(hook.lane(phone))
    first = await hook.deliver(phone)
    base = int(first.rsplit(":", 1)[1])
    dead = {2, 5, 6, 11, 17} | set(range(20, 35)) | {37, 38, 45}  # offsets; a run of 15 among them
    dying.update(seqlog.entry_id(base + k) for k in dead)
    hung: list[asyncio.Task[str]] = []
    stored = [first]
    for k in range(1, 47):
        writer = asyncio.create_task(hook.deliver(phone))
        if k in dead:
            await wait_for(lambda k=k: _reserved(seqlog, db, base + k))  # it took its number and hangs
            hung.append(writer)
        else:
            stored.append(await writer)
    for writer in hung:
        writer.cancel()
    await asyncio.gather(*hung, return_exceptions=True)
    # ... a while ago: the grace for those writers has run out
    chat = {"connection_id": hook.conn_id, "chat": f"{phone}@s.whatsapp.net"}
    await db.webhook_events_raw.update_many(chat, {"$set": {"received_at": utcnow() - timedelta(seconds=5)}})

    assert await WebhookProcessor(db, hook.settings).run_once() == len(stored)

    raws = {r["_id"]: r for r in await db.webhook_events_raw.find({"_id": {"$in": stored}}).to_list(None)}
    assert {r["status"] for r in raws.values()} == {"processed"}
    holes = await db.webhook_events_raw.find({"_id": {"$in": sorted(dying)}}).to_list(None)
    assert len(holes) == len(dead) and all(h["hole"] for h in holes)
    # one chat, processed in the order stored
    messages = await db.messages.find({"connection_id": hook.conn_id}).to_list(None)
    by_key = {m["provider_message_id"]: m for m in messages}
    order = [json.loads(raws[r]["body"])["data"]["key"]["id"] for r in sorted(stored, key=lambda r: raws[r]["seq"])]
    stamps = [by_key[key]["created_at"] for key in order]
    assert stamps == sorted(stamps)


async def _processed_in_delivery_order(db: Any, hook: Hook, phone: str, delivered: list[str]) -> None:
    """Every delivery of `delivered` (raw ids, in the order they were acknowledged) processed, and
    their messages created in that order."""
    raws = {r["_id"]: r for r in await db.webhook_events_raw.find({"_id": {"$in": delivered}}).to_list(None)}
    assert [raws[r]["status"] for r in delivered] == ["processed"] * len(delivered)
    assert [raws[r]["seq"] for r in delivered] == sorted(raws[r]["seq"] for r in delivered)
    keys = [json.loads(raws[r]["body"])["data"]["key"]["id"] for r in delivered]
    messages = await db.messages.find({"connection_id": hook.conn_id, "provider_message_id": {"$in": keys}}).to_list(
        None
    )
    by_key = {m["provider_message_id"]: m for m in messages}
    stamps = [by_key[key]["created_at"] for key in keys]
    assert stamps == sorted(stamps)


async def test_a_newer_delivery_to_a_process_that_synced_before_a_dead_writers_holes_is_processed_after_the_older(
    db: Any, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13 item 4: process P1 took three numbers of a chat's lane, stored (and acknowledged)
    the third and was SIGKILLed before storing the first two. P2 synced earlier and has not
    collided since; it receives a newer delivery of the same chat. The processor must handle the
    older one first, and pass the dead numbers without waiting for the grace."""
    phone = unique_phone()
    chat = f"{phone}@s.whatsapp.net"
    processes = SimulatedProcesses(db)
    processes.become("P2")
    delivered = [await hook.deliver(phone) for _ in range(9)]

    processes.become("P1")
    hung: list[int] = []
    real = group_commit.insert_one

    async def insert_one(collection: Any, doc: dict[str, Any]) -> None:
        if processes.current == "P1" and doc.get("chat") == chat and len(hung) < 2:
            hung.append(doc["seq"])
            await asyncio.Event().wait()  # killed in the insert: never stored
        await real(collection, doc)

    monkeypatch.setattr(group_commit, "insert_one", insert_one)
    dead = []
    for k in (1, 2):
        dead.append(asyncio.create_task(hook.deliver(phone)))

        async def took_its_number(k: int = k) -> bool:
            return len(hung) == k

        await wait_for(took_its_number)
    delivered.append(await hook.deliver(phone))  # the older delivery, acknowledged
    for task in dead:  # SIGKILL
        task.cancel()
    await asyncio.gather(*dead, return_exceptions=True)
    processes.become("P2")
    processes.kill("P1")
    delivered.append(await hook.deliver(phone))  # the newer one

    patient = hook.settings.model_copy(update={"WEBHOOK_HOLE_GRACE_SECONDS": 600.0})
    assert await WebhookProcessor(db, patient).run_once() == len(delivered)  # one poll, no grace waited
    await _processed_in_delivery_order(db, hook, phone, delivered)


@pytest.mark.parametrize("poll", [True, False])
async def test_deliveries_alternating_between_two_processes_are_processed_in_order_without_waiting_a_grace(
    db: Any, hook: Hook, poll: bool
) -> None:
    """WORKERS=2 behind a round-robin balancer: one chat's deliveries reach the two processes in
    turn (and sometimes one process gets a run, leaving the other idle with an open block). Each
    process leaves numbers of its block behind at every switch; one walk passes all of them."""
    phone = unique_phone()
    processes = SimulatedProcesses(db)
    delivered = []
    for name in "ABABBBAABABBBBBBBBBBAB":
        processes.become(name)
        delivered.append(await hook.deliver(phone))
    processes.become("A")

    patient = hook.settings.model_copy(update={"WEBHOOK_HOLE_GRACE_SECONDS": 600.0})
    lanes = None if poll else {hook.lane(phone)}  # a poll, or a walk woken by the last delivery
    assert await WebhookProcessor(db, patient).run_once(lanes) == len(delivered)
    await _processed_in_delivery_order(db, hook, phone, delivered)


async def _reserved(seqlog: Any, db: Any, seq: int) -> bool:
    return bool(seqlog.hint(db) >= seq)


async def test_a_burst_worked_off_by_woken_walks_has_every_cursor_at_its_top_after_one_poll(
    db: Any, hook: Hook, mongo_url: str
) -> None:
    """Issue 21: woken walks never saved a cursor, so a restart re-read whole lanes."""
    lanes = range(hook.settings.WEBHOOK_LANES)
    busy = unique_phone()
    phones = [busy] * (CURSOR_EVERY + 30) + [unique_phone() for _ in range(12)]
    for phone in phones:
        await hook.deliver(phone)
    processor = WebhookProcessor(db, hook.settings)
    assert await processor.run_once(set(lanes)) == len(phones)  # wake-ups did all the work

    await processor.run_once()  # each lane's next poll
    tops = {lane: await repository.lane(lane).top(db) for lane in lanes}
    assert {lane: await repository.lane(lane).get_cursor(db) for lane in lanes} == tops

    recorder = CommandRecorder()
    other: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True, event_listeners=[recorder])
    try:
        await WebhookProcessor(durable_database(other, db.name), hook.settings).run_once()  # a restart
    finally:
        await other.close()
    reread: Counter[int] = Counter()
    for command in recorder.named("find"):
        _id = command.get("filter", {}).get("_id")
        if isinstance(_id, str) and _id.startswith("w:") and _id.rsplit(":", 1)[1].isdigit():
            lane, seq = (int(part) for part in _id.split(":")[1:])
            reread[lane] += seq <= tops.get(lane, 0)
    assert all(count <= CURSOR_EVERY for count in reread.values()), reread


async def test_a_thousand_message_burst_of_one_tenant_does_not_hold_up_another_tenants_message(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any, hook: Hook
) -> None:
    burst_phone = unique_phone()
    for _ in range(20):  # one chat: stored in whatever order they arrive
        await asyncio.gather(*(hook.deliver(burst_phone) for _n in range(50)))
    tenant_b = await make_tenant(client, admin_headers, agents=0)
    conn_b = await make_connection(client, tenant_b, evolution, processed=False)
    token_b = (await db.whatsapp_connections.find_one({"_id": conn_b["id"]}))["webhook_token"]
    other = Hook(db, hook.settings, conn_b, token_b)
    phone_b = _phone_in_lane(other, set(range(hook.settings.WEBHOOK_LANES)) - {hook.lane(burst_phone)})
    burst = {"connection_id": hook.conn_id, "chat": f"{burst_phone}@s.whatsapp.net"}

    async def burst_done(until: Any) -> int:
        n: int = await db.webhook_events_raw.count_documents({**burst, "processed_at": {"$lte": until}})
        return n

    # one processing slot: the single message must get it between two batches of the burst
    settings = hook.settings.model_copy(update={"WEBHOOK_PROCESSOR_CONCURRENCY": 1})
    stop = asyncio.Event()
    running = asyncio.create_task(WebhookProcessor(db, settings).run(stop))
    try:
        await wait_for(lambda: burst_done(utcnow()), timeout=120)  # the burst is being worked off
        raw_id = await other.deliver(phone_b)
        raw_b = await db.webhook_events_raw.find_one({"_id": raw_id})

        async def single_done() -> dict[str, Any] | None:
            found: dict[str, Any] | None = await db.webhook_events_raw.find_one({"_id": raw_id, "status": "processed"})
            return found

        done_b = await wait_for(single_done, timeout=600)
    finally:
        stop.set()
        await running
    before = await burst_done(as_utc(raw_b["received_at"]))
    during = await burst_done(as_utc(done_b["processed_at"])) - before
    assert during <= 2 * BATCH, during  # entries of the burst processed while the message waited
    assert before + during < 1000


@pytest.mark.parametrize("loop", [False, True])
async def test_deliveries_in_lanes_beyond_a_lowered_webhook_lanes_are_still_processed(
    db: Any, hook: Hook, settings: Settings, loop: bool
) -> None:
    retired = [await hook.deliver(_phone_in_lane(hook, {2, 3})) for _ in range(4)]
    fewer = settings.model_copy(update={"WEBHOOK_LANES": 2, "WEBHOOK_POLL_SECONDS": 0.1})

    async def all_processed() -> bool:
        raws = await db.webhook_events_raw.find({"_id": {"$in": retired}}).to_list(None)
        return [r["status"] for r in raws] == ["processed"] * len(retired)

    if loop:  # a processor process started with the new setting
        stop = asyncio.Event()
        running = asyncio.create_task(WebhookProcessor(db, fewer).run(stop))
        try:
            await wait_for(all_processed, timeout=60)
        finally:
            stop.set()
            await running
    else:  # one poll of every lane
        await WebhookProcessor(db, fewer).run_once()
        assert await all_processed()


@pytest.mark.parametrize(
    "failure", [Conflict("could not open a ticket; retry"), NotYetVisible("ticket t exists but is not visible yet")]
)
async def test_a_retryable_failure_is_retried_with_backoff_not_failed_for_good(
    db: Any, hook: Hook, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    phone = unique_phone()
    raw_id = await hook.deliver(phone)
    real = intake.receive_client_message
    calls: list[int] = []

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise failure
        return await real(*args, **kwargs)

    monkeypatch.setattr(intake, "receive_client_message", flaky)
    processor = WebhookProcessor(db, hook.settings)
    await processor.run_once({hook.lane(phone)})
    raw = await db.webhook_events_raw.find_one({"_id": raw_id})
    assert (raw["status"], raw["attempts"]) == ("received", 1), raw
    assert raw["retry_at"] is not None and type(failure).__name__ in raw["error"]

    await db.webhook_events_raw.update_one({"_id": raw_id}, {"$set": {"retry_at": utcnow()}})  # backoff over
    await processor.run_once({hook.lane(phone)})
    raw = await db.webhook_events_raw.find_one({"_id": raw_id})
    assert (raw["status"], raw["attempts"]) == ("processed", 2), raw


@contextlib.asynccontextmanager
async def _second_process(
    db: Any, hook: Hook, mongo_url: str
) -> AsyncIterator[tuple[Any, WebhookProcessor, CommandRecorder]]:
    """Another process on the test's database: its own client (its commands recorded), runtime
    and processor, woken by what it stores itself."""
    recorder = CommandRecorder()
    other: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True, event_listeners=[recorder])
    try:
        own = durable_database(other, db.name)
        processor = WebhookProcessor(own, hook.settings)
        processor._wakeup = signals.subscribe(own, worker=processor.worker_id)
        yield own, processor, recorder
        signals.unsubscribe(own, processor._wakeup)
    finally:
        await other.close()


async def test_a_delivery_too_large_to_hand_over_is_read_once_by_its_woken_walk_and_nothing_past_it(
    db: Any, hook: Hook, mongo_url: str
) -> None:
    """Issue 20: a delivery whose body is too large to hold in memory (base64 media) is only
    announced to the processor; its woken walk reads it back once, whole, and stops there
    instead of reading past the lane's end (an entry read and a marker read per delivery)."""
    async with _second_process(db, hook, mongo_url) as (own, processor, recorder):
        phone = unique_phone()
        lane = hook.lane(phone)
        payload = json.loads(_upsert(phone, f"3EB0{phone}-big"))
        payload["data"]["message"]["conversation"] = "a" * (HANDED_MAX_BYTES + 1)
        await processor.run_once({lane})  # the lane's cursor read, as a running process has
        _, raw_id = await service.receive(
            own,
            connection_id=hook.conn_id,
            token=hook.token,
            event_hint=None,
            body=json.dumps(payload).encode(),
            lanes=hook.settings.WEBHOOK_LANES,
        )
        assert not processor._wakeup.handed.get(lane) and processor._wakeup.announced[lane] > 0
        recorder.commands.clear()
        assert await processor.run_once({lane}) == 1
    assert (await db.webhook_events_raw.find_one({"_id": raw_id}))["status"] == "processed"
    lane_reads = [c for c in recorder.named("find") if str(c.get("filter", {}).get("_id", "")).startswith(f"w:{lane}:")]
    # (Numbers before it may be read too: this client opened a block of its own in the lane.)
    seq = int(raw_id.rsplit(":", 1)[1])
    assert [c.get("projection") for c in lane_reads if c["filter"]["_id"] == raw_id] == [None], lane_reads
    past = [
        c
        for c in lane_reads
        if c["filter"]["_id"].split(":")[2].isdigit() and int(c["filter"]["_id"].split(":")[2]) > seq
    ]
    assert not past, past


def _idle_reads(recorder: CommandRecorder) -> list[str]:
    return [c["filter"]["_id"] for c in recorder.named("find")]


def _a_poll_period_later(processor: WebhookProcessor) -> None:
    """As if WEBHOOK_POLL_SECONDS had passed since its last read of the block openings."""
    processor._opened_read_at = -math.inf


@pytest.mark.parametrize("passed_by", ["this process", "another process"])
async def test_a_poll_of_a_quiet_lane_in_the_block_its_process_writes_reads_no_marker_and_misses_nothing(
    db: Any, hook: Hook, mongo_url: str, passed_by: str
) -> None:
    """Issue 20: an idle processor read each lane's next entry and the next block's marker every
    second. Where the next number lies in the block this process owns and has not handed out,
    only this process can store it (and wakes its walk), or another process in a newer block,
    which it announces (repository.opened): the poll reads the announcements (one read for all
    lanes) and no marker. Another process opening the next block and storing there between two
    polls is found by the next poll after its announcement is read (or passed by that process's
    own walk first), and this process's next delivery goes above it, in order."""
    async with _second_process(db, hook, mongo_url) as (own, processor, recorder):
        phone = unique_phone()
        lane = hook.lane(phone)
        mine = Hook(own, hook.settings, {"id": hook.conn_id}, hook.token)
        mine.sent = 1000  # provider ids of its own
        delivered = [await mine.deliver(phone)]
        assert await processor.run_once({lane}) == 1  # woken
        seq = int(delivered[0].rsplit(":", 1)[1])
        assert seq % 8, "the next number must lie in the same block"  # seqlog.MARK_EVERY
        assert await processor._walk(lane, poll=True) == 0  # its first poll checks every lane once
        recorder.commands.clear()
        _a_poll_period_later(processor)
        assert await processor._walk(lane, poll=True) == 0
        reads = _idle_reads(recorder)
        assert reads and all(r.startswith("opened:") for r in reads), reads  # the next announcement: no marker
        recorder.commands.clear()
        assert await processor._walk(lane, poll=True) == 0  # within the same half period: no read at all
        assert _idle_reads(recorder) == []

        delivered.append(await hook.deliver(phone))  # another process: a block above this one's
        assert int(delivered[1].rsplit(":", 1)[1]) > (seq - 1) // 8 * 8 + 8
        if passed_by == "another process":  # it tombstones the rest of this process's block first
            assert await WebhookProcessor(db, hook.settings).run_once({lane}) == 1
        _a_poll_period_later(processor)
        assert await processor._walk(lane, poll=True) == (passed_by == "this process")
        delivered.append(await mine.deliver(phone))  # this process leaves its superseded block
        assert await processor.run_once({lane}) == 1
    await _processed_in_delivery_order(db, hook, phone, delivered)


async def test_a_block_nobody_announced_is_found_by_the_every_nth_poll(
    db: Any, hook: Hook, mongo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process of a version before announcements opens a block and stores a delivery there,
    and its processor never processes it (it died). This process's polls skip the marker while
    nothing is announced, and the FOREIGN_CHECK_EVERY-th one reads it and processes the delivery."""
    async with _second_process(db, hook, mongo_url) as (own, processor, recorder):
        phone = unique_phone()
        lane = hook.lane(phone)
        mine = Hook(own, hook.settings, {"id": hook.conn_id}, hook.token)
        mine.sent = 2000
        delivered = [await mine.deliver(phone)]
        assert await processor.run_once({lane}) == 1
        await processor._read_openings()  # its first read: every lane is to be checked once
        assert lane in processor._foreign
        assert await processor._walk(lane, poll=True) == 0  # checked: nothing past it
        assert lane not in processor._foreign
        next_block = (int(delivered[0].rsplit(":", 1)[1]) - 1) // 8 + 1
        lane_log = repository.lane(lane)
        # The old version's process (the test's own runtime) opens block+1 for its delivery
        # with a marker and no announcement.
        announcing = repository.lane

        def silent(n: int) -> SeqLog:
            log = announcing(n)
            log.announce = None
            return log

        monkeypatch.setattr(repository, "lane", silent)
        old = Hook(db, hook.settings, {"id": hook.conn_id}, hook.token)
        old.sent = 3000
        delivered.append(await old.deliver(phone))
        monkeypatch.setattr(repository, "lane", announcing)
        assert (int(delivered[1].rsplit(":", 1)[1]) - 1) // 8 >= next_block  # above this process's block
        for _ in range(FOREIGN_CHECK_EVERY - 1):
            _a_poll_period_later(processor)
            recorder.commands.clear()
            assert await processor._walk(lane, poll=True) == 0
            assert lane_log.marker_id(next_block) not in _idle_reads(recorder)
        _a_poll_period_later(processor)
        assert await processor._walk(lane, poll=True) == 1  # the backstop: read, found, processed
        delivered.append(await mine.deliver(phone))
        assert await processor.run_once({lane}) == 1
    await _processed_in_delivery_order(db, hook, phone, delivered)


@contextlib.asynccontextmanager
async def _handed_to(db: Any, hook: Hook) -> AsyncIterator[WebhookProcessor]:
    """A processor running in the test's own process (subscribed to its deliveries, walked by
    the test): what the test stores is handed over to it, and names it as its first attempt's
    holder."""
    processor = WebhookProcessor(db, hook.settings)
    processor._wakeup = signals.subscribe(db, worker=processor.worker_id)
    try:
        yield processor
    finally:
        signals.unsubscribe(db, processor._wakeup)


def _spy_retries(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[tuple[int | None, bool | None]]]:
    """(attempt, retry) of every processing, per raw id."""
    seen: dict[str, list[tuple[int | None, bool | None]]] = {}
    real = service.process

    async def process(db: Any, raw: Any, **kwargs: Any) -> Any:
        seen.setdefault(raw.id, []).append((kwargs.get("attempt"), kwargs.get("retry")))
        return await real(db, raw, **kwargs)

    monkeypatch.setattr(service, "process", process)
    return seen


async def _attempt_docs(db: Any, raw_ids: list[str]) -> list[dict[str, Any]]:
    return await db.webhook_attempts.find({"raw_id": {"$in": raw_ids}}).to_list(None)


async def test_a_delivery_handed_over_is_made_by_its_processor_without_a_claim_and_not_overtaken_meanwhile(
    db: Any, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20: the acknowledgement's insert claims attempt 1 for the processor it hands the
    delivery to (one `webhook_attempts` insert fewer per delivery). Another processor that polls
    the lane between the acknowledgement and that processor's walk holds back, as from a live
    claim: it neither processes nor claims, and the chat's order holds."""
    seen = _spy_retries(monkeypatch)
    phone = unique_phone()
    lane = hook.lane(phone)
    async with _handed_to(db, hook) as processor:
        raw_ids = [await hook.deliver(phone) for _ in range(3)]
        stored = await db.webhook_events_raw.find({"_id": {"$in": raw_ids}}).to_list(None)
        assert {doc["handed_to"] for doc in stored} == {processor.worker_id}

        assert await WebhookProcessor(db, hook.settings).run_once() == 0  # the competitor's poll
        assert not seen and not await _attempt_docs(db, raw_ids)
        assert await processor.run_once({lane}) == 3

    for raw_id in raw_ids:
        raw = await db.webhook_events_raw.find_one({"_id": raw_id})
        assert (raw["status"], raw["attempts"]) == ("processed", 1), raw
        assert seen[raw_id] == [(1, False)]
    assert not await _attempt_docs(db, raw_ids)
    bodies = [f"3EB0{phone}-{n}" for n in range(hook.sent - 2, hook.sent + 1)]
    thread = await db.messages.find({"body": {"$in": bodies}}).sort([("created_at", 1), ("_id", 1)]).to_list(None)
    assert [m["body"] for m in thread] == bodies


async def test_what_a_stopping_processor_was_handed_and_did_not_start_is_taken_by_another_at_once(
    db: Any, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deploy stops the processor with deliveries handed to it and not started: it releases
    them, so the next processor's poll claims and makes them at once, as attempt 1 and no retry
    (nobody started them), instead of waiting out the acknowledgement's hold."""
    seen = _spy_retries(monkeypatch)
    phone = unique_phone()
    async with _handed_to(db, hook) as processor:
        raw_id = await hook.deliver(phone)
    await processor._release(processor._wakeup)  # what run() does once its walks have ended

    assert await WebhookProcessor(db, hook.settings).run_once() == 1
    raw = await db.webhook_events_raw.find_one({"_id": raw_id})
    assert (raw["status"], raw["attempts"], raw["handed_to"]) == ("processed", 1, None), raw
    assert seen[raw_id] == [(1, False)]


async def test_a_processor_stopping_between_the_acknowledgements_claim_and_its_hand_over_is_released_by_the_ack(
    db: Any, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The acknowledgement names the processor before its insert and hands the delivery over
    after it: a processor that stops in between (its release has run) is never handed it, so the
    acknowledgement releases it itself and nothing waits for the hold."""
    phone = unique_phone()
    async with _handed_to(db, hook) as processor:
        real = SeqLog.append

        async def append(self: SeqLog, db: Any, body: dict[str, Any], **kwargs: Any) -> tuple[int, str]:
            stored = await real(self, db, body, **kwargs)
            if "handed_to" in body:  # the delivery (not a block's announcement)
                assert body["handed_to"] == processor.worker_id  # named before the insert
                signals.unsubscribe(db, processor._wakeup)  # it stops right after the insert
                await processor._release(processor._wakeup)
            return stored

        monkeypatch.setattr(SeqLog, "append", append)
        raw_id = await hook.deliver(phone)
        monkeypatch.undo()
        raw = await db.webhook_events_raw.find_one({"_id": raw_id})
        assert raw["handed_to"] is None and not processor._wakeup.handed.get(hook.lane(phone))  # released

    assert await WebhookProcessor(db, hook.settings).run_once() == 1
    assert (await db.webhook_events_raw.find_one({"_id": raw_id}))["status"] == "processed"


async def test_what_a_killed_processor_was_handed_waits_out_the_hold_then_is_retried(
    db: Any, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGKILL releases nothing: another processor holds back from the delivery until 1.5
    leases after its acknowledgement (the latest start its holder could make unclaimed, plus a
    lease), then makes it as a retry, which completes what the dead holder may have begun."""
    seen = _spy_retries(monkeypatch)
    phone = unique_phone()
    async with _handed_to(db, hook):
        raw_id = await hook.deliver(phone)
    other = WebhookProcessor(db, hook.settings)
    lease = timedelta(seconds=hook.settings.WEBHOOK_LEASE_SECONDS)
    received = as_utc((await db.webhook_events_raw.find_one({"_id": raw_id}))["received_at"])

    await db.webhook_events_raw.update_one({"_id": raw_id}, {"$set": {"received_at": received - lease * 1.4}})
    assert await other.run_once() == 0 and not seen
    await db.webhook_events_raw.update_one({"_id": raw_id}, {"$set": {"received_at": received - lease * 1.5}})
    assert await other.run_once() == 1
    assert seen[raw_id] == [(1, True)]
    claims = await _attempt_docs(db, [raw_id])
    assert [(c["attempt"], c["worker"]) for c in claims] == [(1, other.worker_id)]


async def test_a_handed_delivery_its_processor_reaches_late_is_claimed_as_usual_and_held_by_that_claim(
    db: Any, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past half a lease after the acknowledgement (a backlog), the holder claims attempt 1 like
    any processor before making it (not a retry: it knows it never started it); another
    processor polling the lane meanwhile holds back from that claim."""
    phone = unique_phone()
    lease = timedelta(seconds=hook.settings.WEBHOOK_LEASE_SECONDS)
    made: list[tuple[int | None, bool | None]] = []
    real = service.process

    async def competed(db: Any, raw: Any, **kwargs: Any) -> Any:
        made.append((kwargs.get("attempt"), kwargs.get("retry")))
        assert await WebhookProcessor(db, hook.settings).run_once() == 0  # between claim and outcome
        return await real(db, raw, **kwargs)

    async with _handed_to(db, hook) as processor:
        raw_id = await hook.deliver(phone)
        raw = await db.webhook_events_raw.find_one({"_id": raw_id})
        late = as_utc(raw["received_at"]) - lease * 0.6
        await db.webhook_events_raw.update_one({"_id": raw_id}, {"$set": {"received_at": late}})
        processor._wakeup.forget_up_to(hook.lane(phone), int(raw["seq"]))  # read back, as stored
        monkeypatch.setattr(service, "process", competed)
        assert await processor.run_once({hook.lane(phone)}) == 1

    assert made == [(1, False)]
    claims = await _attempt_docs(db, [raw_id])
    assert [(c["attempt"], c["worker"]) for c in claims] == [(1, processor.worker_id)]
    assert (await db.webhook_events_raw.find_one({"_id": raw_id}))["attempts"] == 1


async def test_a_walk_held_at_another_process_s_handed_delivery_walks_again_once_it_is_made_without_a_poll(
    db: Any, hook: Hook, mongo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes acknowledge deliveries of one lane (two chats behind a balancer). Process
    B's walk meets A's delivery before A made it and holds back; A then makes it, and nothing
    wakes B again. B walks again on its own within moments (LANE_HELD_RECHECK_SECONDS, doubling)
    and makes its own delivery: with polls a minute apart, the lane would otherwise wait for one."""
    lane = hook.lane(unique_phone())
    phone_a, phone_b = _phone_in_lane(hook, {lane}), _phone_in_lane(hook, {lane})
    slow_polls = hook.settings.model_copy(update={"WEBHOOK_POLL_SECONDS": 60.0})
    monkeypatch.setattr(processor_module.random, "uniform", lambda low, high: high)  # first polls a minute away
    other: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    stop = asyncio.Event()
    try:
        own_b = durable_database(other, db.name)
        b = WebhookProcessor(own_b, slow_polls)
        running = asyncio.create_task(b.run(stop))
        await wait_for(lambda: _subscribed(own_b))
        async with _handed_to(db, hook) as a:
            first = await hook.deliver(phone_a)  # A's, handed to A, not made yet
            second = await hook.deliver(phone_b, via=own_b)
            await wait_for(lambda: _is(lane in b._held))  # B's woken walk stopped at A's delivery
            assert (await db.webhook_events_raw.find_one({"_id": second}))["status"] == "received"
            assert await a.run_once({lane}) == 1  # A makes its own; nothing wakes B
        await wait_for(lambda: _status_is(db, second, "processed"), timeout=20)
        assert (await db.webhook_events_raw.find_one({"_id": first}))["status"] == "processed"
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await running
        await other.close()


async def _subscribed(db: Any) -> bool:
    return bool(signals.claimant(db, ""))


async def _is(value: bool) -> bool:
    return value


async def _status_is(db: Any, raw_id: str, status: str) -> bool:
    raw = await db.webhook_events_raw.find_one({"_id": raw_id}, {"status": 1})
    return raw is not None and raw["status"] == status


async def test_processes_that_meet_each_other_s_deliveries_stop_claiming_them_at_the_acknowledgement(
    db: Any, hook: Hook, mongo_url: str
) -> None:
    """Where two processes' processors share the lanes, walks that take whatever they reach go
    faster than walks holding back for each other (BENCHMARKS.md, `--processor twin`): a walk
    that meets a delivery the other process acknowledged has its own process's next
    acknowledgements name no holder, and the other process's walk, meeting those, does the same.
    A process alone keeps claiming (every other test here)."""
    phone = unique_phone()
    lane = hook.lane(phone)
    async with _second_process(db, hook, mongo_url) as (own_b, b, _), _handed_to(db, hook) as a:

        async def holder(raw_id: str) -> str | None:
            raw = await db.webhook_events_raw.find_one({"_id": raw_id})
            return raw["handed_to"] if raw["acked_by"] else "no acknowledging processor"

        first = await hook.deliver(phone)  # A's, claimed by the acknowledgement
        assert await holder(first) == a.worker_id
        assert await b.run_once({lane}) == 0  # B meets it and holds back
        second = await hook.deliver(phone, via=own_b)
        assert await holder(second) is None  # B no longer claims at its acknowledgement
        assert await a._walk(lane, poll=True) == 2  # A makes its own, then B's (claimed as usual)
        third = await hook.deliver(phone)
        assert await holder(third) is None  # A met B's delivery: it stops claiming too
        await b._walk(lane, poll=True)  # B takes A's delivery as any walk would (and passes its own)
    for raw_id in (first, second, third):
        assert (await db.webhook_events_raw.find_one({"_id": raw_id}))["status"] == "processed"
