"""Reserved-number logs (backend/core/seqlog.py) on the real store, with writers that die between
taking a number and storing it and writers in several (simulated) processes: what is stored past
any pattern of holes is found, a writer never stores a delivery below one acknowledged before it
arrived, and a reader passes the numbers writers left behind without waiting."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import AutoReconnect, BulkWriteError

from backend.core import group_commit, seqlog
from backend.core.db import durable_database
from backend.core.runtime import runtime_of
from backend.core.seqlog import HOLE, REST, SeqLog
from tests.fakes.harness import wait_for
from tests.monitoring import CommandRecorder
from tests.simulated_processes import SimulatedProcesses


@pytest.fixture
async def db(mongo_url: str) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    yield durable_database(client, f"t_seqlog_{uuid.uuid4().hex[:8]}")
    await client.close()


@pytest.fixture
def log() -> SeqLog:
    return SeqLog("log", f"l{uuid.uuid4().hex[:6]}:", state_collection="state", cursor_id="cursor")


def _restart(db: Any, log: SeqLog) -> None:
    """The writing process is gone: a new one knows nothing of this log but what is stored."""
    key, runtime = (db.name, log.collection, log.prefix), runtime_of(db)
    for hints in (runtime.seqlog_heads, runtime.seqlog_reserved, runtime.seqlog_marked, runtime.seqlog_blocks):
        hints.pop(key, None)


@pytest.fixture
def dying(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """Entries whose `_id` is put here are never stored: their writer hangs in the insert, then
    dies (is cancelled) — a process killed between taking a number and storing it."""
    doomed: set[str] = set()
    real = group_commit.insert_one

    async def insert_one(collection: Any, doc: dict[str, Any]) -> None:
        if doc["_id"] in doomed:
            await asyncio.Event().wait()
        await real(collection, doc)

    monkeypatch.setattr(group_commit, "insert_one", insert_one)
    yield doomed


async def _store(db: Any, log: SeqLog, count: int, holes: set[int], doomed: set[str]) -> None:
    """Appends `count` entries, numbers 1..count; the writers of `holes` die."""
    await log.append(db, {"n": 1}, reserve=True)  # the first append syncs with the store first
    doomed.update(log.entry_id(n) for n in holes)
    writers = [asyncio.create_task(log.append(db, {"n": n}, reserve=True)) for n in range(2, count + 1)]
    stored = [w for n, w in enumerate(writers, start=2) if n not in holes]
    assert [seq for seq, _ in await asyncio.gather(*stored)] == [n for n in range(2, count + 1) if n not in holes]
    for writer in writers:
        writer.cancel()
    await asyncio.gather(*writers, return_exceptions=True)
    doomed.clear()


async def _read_all(db: Any, log: SeqLog) -> list[dict[str, Any]]:
    """The entries a reader hands on, in order, passing holes the way the processor does before
    any grace: it stops where it would have to wait for one."""
    seen: list[dict[str, Any]] = []
    n = 0
    while True:
        entry = await log.get(db, n + 1)
        if entry is None:
            passed = await log.pass_superseded(db, n + 1)
            if passed is None:
                return seen
            n = passed
            continue
        n = max(n + 1, int(entry.get(REST) or 0))
        if not entry.get(HOLE):
            seen.append(entry)


async def test_a_restarted_writer_over_stored_1_to_9_and_12_stores_above_12(
    db: Any, log: SeqLog, dying: set[str]
) -> None:
    await _store(db, log, 12, {10, 11}, dying)
    _restart(db, log)
    assert await log.top(db) == 12
    seq, _ = await log.append(db, {"n": 13}, reserve=True)
    assert seq > 12
    assert [e["n"] for e in await _read_all(db, log)] == [*range(1, 10), 12, 13]


async def test_what_is_stored_past_any_pattern_of_holes_is_found(db: Any, log: SeqLog, dying: set[str]) -> None:
    holes = {3, 8, 9, 17, 30} | set(range(40, 55)) | {63, 64, 65, 100}  # a run of 15 among them
    await _store(db, log, 101, holes, dying)
    _restart(db, log)
    for hole in sorted(holes):
        after = await log.after(db, hole)
        assert after is not None and after["seq"] == min(n for n in range(hole + 1, 102) if n not in holes)
    assert await log.after(db, 102) is None  # the log's end
    assert await log.top(db) == 101
    assert (await log.append(db, {"n": 102}, reserve=True))[0] > 101


async def test_a_writer_that_died_last_leaves_nothing_a_reader_waits_for_once_a_new_writer_stored(
    db: Any, log: SeqLog, dying: set[str]
) -> None:
    await _store(db, log, 20, set(range(12, 21)), dying)  # the last nine died
    _restart(db, log)
    assert await log.top(db) == 11
    assert await log.after(db, 12) is None
    seq, _ = await log.append(db, {"n": 12}, reserve=True)
    assert seq > 11
    assert [e["n"] for e in await _read_all(db, log)] == list(range(1, 13))


async def test_a_writer_whose_hint_predates_a_dead_writers_holes_stores_above_the_entry_it_acknowledged(
    db: Any, log: SeqLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13 item 4: P1 took three numbers, stored (and acknowledged) the third, and was
    killed before storing the first two. P2, which synced earlier and has not collided since,
    then receives a newer delivery of the same chat: it must be stored above P1's, not in the
    holes below it (where a reader would hand it on first)."""
    processes = SimulatedProcesses(db)
    processes.become("P2")
    for n in range(1, 10):
        await log.append(db, {"n": n}, reserve=True)

    processes.become("P1")
    hung: list[int] = []
    real = group_commit.insert_one

    async def insert_one(collection: Any, doc: dict[str, Any]) -> None:
        if processes.current == "P1" and "n" in doc and len(hung) < 2:
            hung.append(doc["seq"])
            await asyncio.Event().wait()  # killed in the insert: never stored
        await real(collection, doc)

    monkeypatch.setattr(group_commit, "insert_one", insert_one)
    dead = []
    for n in (10, 11):
        dead.append(asyncio.create_task(log.append(db, {"n": n}, reserve=True)))

        async def took_its_number(n: int = n) -> bool:
            return len(hung) == n - 9

        await wait_for(took_its_number)
    older, _ = await log.append(db, {"n": 12}, reserve=True)  # acknowledged
    assert hung == sorted(hung) and hung[-1] < older
    for task in dead:  # SIGKILL
        task.cancel()
    await asyncio.gather(*dead, return_exceptions=True)
    processes.become("P2")
    processes.kill("P1")

    newer, _ = await log.append(db, {"n": 13}, reserve=True)

    assert newer > older, f"the newer delivery took {newer}, below the older one's {older}"
    assert [e["n"] for e in await _read_all(db, log)] == [*range(1, 10), 12, 13]


@pytest.mark.parametrize("pattern", ["ABABABABAB", "AABBBABBBBBBBBBAAB", "ABBBBBBBBBBBBBBBBA"])
async def test_writers_alternating_between_processes_keep_order_and_leave_nothing_to_wait_for(
    db: Any, log: SeqLog, pattern: str
) -> None:
    """Deliveries sent one after the other to two processes in turn (a balancer): each is stored
    above the one acknowledged before it, whichever process took it, and a reader hands on all of
    them at once, passing the numbers each process left in its block (an idle process's too)."""
    processes = SimulatedProcesses(db)
    seqs = []
    for n, name in enumerate(pattern, start=1):
        processes.become(name)
        seqs.append((await log.append(db, {"n": n, "by": name}, reserve=True))[0])
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert [e["n"] for e in await _read_all(db, log)] == list(range(1, len(pattern) + 1))


async def test_an_append_costs_its_insert_and_at_most_one_id_read_plus_a_marker_per_block(
    mongo_url: str, log: SeqLog
) -> None:
    """Issue 20 counts commands per inbound message: one process appending one at a time pays
    the insert and one `_id` read of the next block's marker, plus one marker insert per block;
    concurrent appends share the read."""
    recorder = CommandRecorder()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True, event_listeners=[recorder])
    try:
        db = durable_database(client, f"t_seqlog_{uuid.uuid4().hex[:8]}")
        await log.append(db, {"n": 0}, reserve=True)  # the first append finds the highest marker
        recorder.commands.clear()
        for n in range(1, 4 * seqlog.MARK_EVERY + 1):
            await log.append(db, {"n": n}, reserve=True)
        inserts, finds = len(recorder.named("insert")), len(recorder.named("find"))
        assert (inserts, finds) == (4 * seqlog.MARK_EVERY + 4, 4 * seqlog.MARK_EVERY - 4), recorder.commands

        recorder.commands.clear()
        await asyncio.gather(*(log.append(db, {"n": n}, reserve=True) for n in range(100)))
        assert len(recorder.named("find")) <= 2 + 100 // seqlog.MARK_EVERY
    finally:
        await client.close()


async def test_an_entry_whose_number_a_reader_tombstoned_first_is_stored_once_in_a_newer_block(
    db: Any, log: SeqLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The competitor between P1's check and its insert: P2 opens a newer block, and a reader at
    P1's number passes P1's block at once by tombstoning it. P1's insert then loses to the
    tombstone; the delivery is stored once, in a block above, and the reader hands it on."""
    processes = SimulatedProcesses(db)
    processes.become("P1")
    await log.append(db, {"n": 1}, reserve=True)
    gate = asyncio.Event()
    held: list[int] = []
    real = group_commit.insert_one

    async def insert_one(collection: Any, doc: dict[str, Any]) -> None:
        if doc.get("n") == 2 and not held:
            held.append(doc["seq"])
            await gate.wait()
        await real(collection, doc)

    monkeypatch.setattr(group_commit, "insert_one", insert_one)
    slow = asyncio.create_task(log.append(db, {"n": 2}, reserve=True))

    async def took_its_number() -> bool:
        return bool(held)

    await wait_for(took_its_number)
    processes.become("P2")
    newer, _ = await log.append(db, {"n": 3}, reserve=True)
    assert seqlog.block_of(newer) > seqlog.block_of(held[0])
    assert await log.pass_superseded(db, held[0]) == seqlog.block_of(held[0]) * seqlog.MARK_EVERY + seqlog.MARK_EVERY

    processes.become("P1")
    gate.set()
    seq, _ = await slow
    assert seqlog.block_of(seq) > seqlog.block_of(newer)
    assert (await log.get(db, held[0]) or {}).get(HOLE) is True
    assert [e["n"] for e in await _read_all(db, log)] == [1, 3, 2]  # concurrent: either order is allowed
    stored = await db["log"].find({"_id": {"$regex": f"^{log.prefix}"}, "n": 2}).to_list(None)
    assert len(stored) == 1


async def test_a_plain_append_tries_the_number_after_its_own_last_and_passes_other_processes_entries(
    mongo_url: str, log: SeqLog
) -> None:
    """Issue 20: a plain append (no reservations) inserts right after the entry its process last
    stored, without reading first; when another process stored there meanwhile, the insert fails
    and the head is searched: every entry is stored once, numbers 1..n without holes."""
    recorder = CommandRecorder()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True, event_listeners=[recorder])
    try:
        db = durable_database(client, f"t_seqlog_{uuid.uuid4().hex[:8]}")
        processes = SimulatedProcesses(db)
        processes.become("A")
        assert (await log.append(db, {"by": "A"}))[0] == 1  # a process's first append searches
        recorder.commands.clear()
        assert (await log.append(db, {"by": "A"}))[0] == 2
        assert (len(recorder.named("insert")), len(recorder.named("find"))) == (1, 0), recorder.commands
        processes.become("B")  # a competitor between A's appends
        assert [(await log.append(db, {"by": "B"}))[0] for _ in range(3)] == [3, 4, 5]
        processes.become("A")
        assert (await log.append(db, {"by": "A"}))[0] == 6  # its guess (3) lost: searched past B's
        assert [e["by"] for e in await _read_all(db, log)] == ["A", "A", "B", "B", "B", "A"]
    finally:
        await client.close()


async def test_a_block_is_announced_where_the_log_changes_hands_and_not_where_its_writer_goes_on(
    db: Any,
) -> None:
    """`announce` (the webhook lanes' `opened` log): a writer's first block, and a block opened
    above another process's, are announced; the blocks a writer opens one after the other are not
    (a reader idle in the block before is that writer itself)."""
    opened = SeqLog("state", f"o{uuid.uuid4().hex[:6]}:", state_collection="state", cursor_id="cursor:o")
    log = SeqLog("log", f"l{uuid.uuid4().hex[:6]}:", state_collection="state", cursor_id="cursor", announce=opened)
    processes = SimulatedProcesses(db)

    async def announced() -> list[int]:
        blocks = []
        while (entry := await opened.get(db, len(blocks) + 1)) is not None:
            assert entry["log"] == log.prefix
            blocks.append(int(entry["block"]))
        return blocks

    processes.become("a")
    for n in range(20):  # blocks 0, 1, 2: the first one is announced
        await log.append(db, {"n": n}, reserve=True)
    assert await announced() == [0]
    processes.become("b")
    await log.append(db, {"n": 20}, reserve=True)  # above a's block: announced
    processes.become("a")
    await log.append(db, {"n": 21}, reserve=True)  # above b's: announced
    for n in range(22, 32):  # a goes on into its next block: not announced
        await log.append(db, {"n": n}, reserve=True)
    assert await announced() == [0, 3, 4]
    assert (await log.get(db, 4 * seqlog.MARK_EVERY + 1))["n"] == 21
    assert [e["n"] for e in await _read_all(db, log)] == list(range(32))


def _plain_logs() -> tuple[SeqLog, SeqLog]:
    tag = uuid.uuid4().hex[:6]
    return SeqLog("plain", f"a{tag}:"), SeqLog("plain", f"b{tag}:")


async def _entries(db: Any, log: SeqLog) -> list[dict[str, Any]]:
    found = await db[log.collection].find({"_id": {"$regex": f"^{log.prefix}"}}).to_list(None)
    return sorted(found, key=lambda e: int(e["seq"]))


async def test_a_processs_plain_appends_share_one_insert_and_a_number_taken_mid_batch_stops_it_right_there(
    recorded_and_rival: tuple[Any, Any, CommandRecorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five appends of one process to two logs of one collection go out as one ordered insert.
    Between their numbering and that insert, a rival process appends to log a and takes the
    number the batch gave its first entry of a: the batch stores what comes before it, stops
    there, and the rest number again after the rival's entry. Each log stays 1..n with no hole,
    each body is stored once, and this process's entries keep the order they were appended in."""
    ours, rival, recorder = recorded_and_rival
    a, b = _plain_logs()
    assert (await a.append(ours, {"n": "a0"}))[0] == 1
    real = seqlog._insert_in_order
    injected: list[str] = []

    async def rival_first(collection: Any, entries: list[dict[str, Any]]) -> tuple[int, bool]:
        if collection.database.client is ours.client and not injected:
            injected.append(entries[2]["_id"])
            await a.append(rival, {"n": "rival"})  # takes a:3, the number our batch gave "a1"
        return await real(collection, entries)

    monkeypatch.setattr(seqlog, "_insert_in_order", rival_first)
    recorder.commands.clear()
    stored = await asyncio.gather(
        *(log.append(ours, {"n": n}) for log, n in zip((b, b, a, b, a), ("b0", "b1", "a1", "b2", "a2"), strict=True))
    )

    assert injected == [a.entry_id(2)]
    assert [seq for seq, _ in stored] == [1, 2, 3, 3, 4]  # b0, b1 went in; from "a1" on, numbered again
    assert [(e["seq"], e["n"]) for e in await _entries(ours, a)] == [
        (1, "a0"),
        (2, "rival"),
        (3, "a1"),
        (4, "a2"),
    ]
    assert [(e["seq"], e["n"]) for e in await _entries(ours, b)] == [(1, "b0"), (2, "b1"), (3, "b2")]
    assert len(recorder.named("insert")) == 2  # the batch, and its rest after the lost number


async def test_a_batch_the_store_failed_midway_goes_again_from_where_it_stopped(
    recorded_and_rival: tuple[Any, Any, CommandRecorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store stores the first two entries of a batch and fails the third with an error that
    is not a taken number (a write conflict): the rest go again at once, after the two. Then a
    transient error before anything is stored: retried after a pause. Nothing is lost, nothing
    is stored twice, no hole."""
    ours, _, _ = recorded_and_rival
    a, b = _plain_logs()
    failures = ["midway", "before"]

    class Failing:
        def __init__(self, collection: Any) -> None:
            self.collection = collection

        async def insert_many(self, entries: list[dict[str, Any]], ordered: bool) -> None:
            assert ordered
            if failures and failures[0] == "midway":
                failures.pop(0)
                await self.collection.insert_many(entries[:2], ordered=True)
                details = {"writeErrors": [{"index": 2, "code": 112, "errmsg": "injected"}], "nInserted": 2}
                raise BulkWriteError(details)
            if failures:
                failures.pop(0)
                raise AutoReconnect("injected")
            await self.collection.insert_many(entries, ordered=True)

        async def insert_one(self, entry: dict[str, Any]) -> None:
            await self.collection.insert_one(entry)

    real = seqlog._insert_in_order
    monkeypatch.setattr(seqlog, "_insert_in_order", lambda collection, entries: real(Failing(collection), entries))
    await a.append(ours, {"n": "a0"})  # the head searches are behind us
    await b.append(ours, {"n": "b0"})
    stored = await asyncio.gather(
        *(log.append(ours, {"n": n}) for log, n in zip((a, b, a, b, a), ("a1", "b1", "a2", "b2", "a3"), strict=True))
    )

    assert failures == []
    assert [seq for seq, _ in stored] == [2, 2, 3, 3, 4]
    assert [e["n"] for e in await _entries(ours, a)] == ["a0", "a1", "a2", "a3"]
    assert [e["n"] for e in await _entries(ours, b)] == ["b0", "b1", "b2"]


@pytest.mark.parametrize("batch", [False, True], ids=["alone", "batch"])
async def test_an_append_whose_answer_was_lost_meets_its_own_entry_and_is_stored_once(
    recorded_and_rival: tuple[Any, Any, CommandRecorder], monkeypatch: pytest.MonkeyPatch, batch: bool
) -> None:
    """The store takes an insert and its answer never comes back (a timeout, a failover): the
    retry meets the entries it stored itself and knows them by what they hold (datetimes as the
    store keeps them, to the millisecond), so each append is stored once, under the number it was
    given. A rival's entry under a number this writer gave is another body: the append numbers
    again after it, as before."""
    ours, rival, _ = recorded_and_rival
    a, b = _plain_logs()
    lost: list[str] = []

    class AnswerLost:
        def __init__(self, collection: Any) -> None:
            self.collection = collection
            self.codec_options = collection.codec_options

        async def find_one(self, query: dict[str, Any]) -> Any:
            return await self.collection.find_one(query)

        async def insert_many(self, entries: list[dict[str, Any]], ordered: bool) -> None:
            await self.collection.insert_many(entries, ordered=ordered)
            if not lost:
                lost.append("batch")
                raise AutoReconnect("injected: stored, answer lost")

        async def insert_one(self, entry: dict[str, Any]) -> None:
            await self.collection.insert_one(entry)
            if not lost:
                lost.append("one")
                raise AutoReconnect("injected: stored, answer lost")

    await a.append(ours, {"n": "a0"})  # the head searches are behind us
    await b.append(ours, {"n": "b0"})
    real = seqlog._insert_in_order
    monkeypatch.setattr(seqlog, "_insert_in_order", lambda collection, entries: real(AnswerLost(collection), entries))
    at = datetime.now(UTC)  # microseconds: the store keeps milliseconds
    if batch:
        stored = await asyncio.gather(
            *(log.append(ours, {"n": n, "at": at}) for log, n in zip((a, b, a), ("a1", "b1", "a2"), strict=True))
        )
        assert lost == ["batch"] and [seq for seq, _ in stored] == [2, 2, 3]
    else:
        stored = [await a.append(ours, {"n": "a1", "at": at})]
        assert lost == ["one"] and [seq for seq, _ in stored] == [2]
    assert [e["n"] for e in await _entries(ours, a)] == (["a0", "a1", "a2"] if batch else ["a0", "a1"])
    assert [e["n"] for e in await _entries(ours, b)] == (["b0", "b1"] if batch else ["b0"])

    # A rival's entry under the number this writer gives next, then an answer lost again: the
    # retry meets the rival's entry, not its own, and numbers again after it.
    monkeypatch.setattr(seqlog, "_insert_in_order", real)
    head = len(await _entries(ours, a))
    await rival[a.collection].insert_one({"_id": a.entry_id(head + 1), "seq": head + 1, "n": "rival"})
    lost.clear()
    monkeypatch.setattr(seqlog, "_insert_in_order", lambda collection, entries: real(Flaky(collection), entries))

    class Flaky(AnswerLost):
        async def insert_one(self, entry: dict[str, Any]) -> None:
            if not lost:
                lost.append("refused")
                raise AutoReconnect("injected: not stored")
            await self.collection.insert_one(entry)

    seq, _ = await a.append(ours, {"n": "after", "at": at})
    assert lost == ["refused"] and seq == head + 2
    assert [e["n"] for e in await _entries(ours, a)][-2:] == ["rival", "after"]


async def test_a_writer_killed_with_its_batch_in_flight_leaves_no_hole_for_the_next_process(
    recorded_and_rival: tuple[Any, Any, CommandRecorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL while a batch is in the store: the store had taken its first two entries and
    nothing after them (an ordered insert stops where it stops). The next process (nothing known
    but what is stored) appends right after them."""
    ours, rival, _ = recorded_and_rival
    a, _b = _plain_logs()
    landed = asyncio.Event()

    async def dies_midway(collection: Any, entries: list[dict[str, Any]]) -> tuple[int, bool]:
        await collection.insert_many(entries[:2], ordered=True)
        landed.set()
        await asyncio.Event().wait()  # killed here: no answer ever comes back
        raise AssertionError("unreachable")

    monkeypatch.setattr(seqlog, "_insert_in_order", dies_midway)
    appends = [asyncio.create_task(a.append(ours, {"n": n})) for n in range(4)]
    await landed.wait()
    monkeypatch.undo()
    for task in [*runtime_of(ours).seqlog_writers, *appends]:
        task.cancel()
    await asyncio.gather(*appends, return_exceptions=True)

    assert [(await a.append(rival, {"n": "next"}))[0] for _ in range(2)] == [3, 4]
    assert [e["n"] for e in await _entries(rival, a)] == [0, 1, "next", "next"]
