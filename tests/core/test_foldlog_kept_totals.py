"""A log that `keeps_totals` (backend/core/foldlog.py) starts each compaction from the totals its
process last wrote or read: a process compacting one bucket again reads no totals, and whatever
other processes (or a write-back) did to the stored pairs in between, every view reads its
entries' fold, each key once. A log whose totals carry marks (the ticket counters) keeps none: a
mark written between two compactions stays."""

import uuid
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from backend.core import foldlog
from backend.core.db import Database, durable_database
from backend.core.foldlog import FoldLog, Totals, View
from backend.core.runtime import runtime_of
from backend.tickets import counters
from tests.monitoring import CommandRecorder, recorded

VIEWS = ("n", "keys", "sum")


def _n(state: dict[str, Any], entry: dict[str, Any]) -> None:
    state["n"] = state.get("n", 0) + 1


def _keys(state: dict[str, Any], entry: dict[str, Any]) -> None:
    state[entry["key"]] = state.get(entry["key"], 0) + 1


def _sum(state: dict[str, Any], entry: dict[str, Any]) -> None:
    state["v"] = state.get("v", 0) + int(entry["v"])


def _log(*, keeps_totals: bool = True) -> FoldLog:
    return FoldLog(
        entries="e",
        totals="t",
        claim_kind="k",
        views={"n": View(_n), "keys": View(_keys), "sum": View(_sum)},
        compact_every=4,
        claim_on_write=False,
        keeps_totals=keeps_totals,
    )


def _expected(keys: set[int]) -> dict[str, dict[str, Any]]:
    """Each view's fold of contributions `k<i>` (body v = i), each once."""
    return {"n": {"n": len(keys)}, "keys": {f"k{i}": 1 for i in keys}, "sum": {"v": sum(keys)}}


@pytest.fixture
def db(raw_mongo: AsyncMongoClient[dict[str, Any]]) -> Database:
    return durable_database(raw_mongo, f"t_foldkept_{uuid.uuid4().hex[:8]}")


async def _record(log: FoldLog, db: Database, bucket: str, keys: list[int]) -> None:
    for i in keys:
        await log.record(db, bucket, f"k{i}", {"v": i}, check=False)


def _totals_reads(recorder: CommandRecorder, collection: str = "t") -> list[dict[str, Any]]:
    return [c for c in recorder.named("find") if c["find"] == collection]


async def _assert_views(log: FoldLog, db: Database, bucket: str, keys: set[int]) -> None:
    """Every view, read, is the fold of the contributions, and its stored totals are their own
    entries' fold."""
    expected = _expected(keys)
    for view in VIEWS:
        assert (await log.read(db, bucket, view)).state == expected[view], view
        stored, folded = await log.refold(db, bucket, view)
        assert stored.state == folded.state, view


async def test_a_second_compaction_of_a_bucket_reads_no_totals(db: Database, mongo_url: str) -> None:
    log, bucket = _log(), "b"
    async with recorded(db, mongo_url) as (own, recorder):
        await _record(log, own, bucket, [0, 1, 2, 3])  # the 4th compacts: nothing remembered yet
        first = _totals_reads(recorder)
        assert len(first) == len(VIEWS)
        recorder.commands.clear()
        await _record(log, own, bucket, [4, 5, 6, 7])  # the 8th compacts from the pairs at 4
        assert _totals_reads(recorder) == []
        assert [c for c in recorder.named("find") if c["find"] == "e" and "projection" not in c] == []
        [write] = [c for c in recorder.named("update") if c["update"] == "t"]
        assert len(write["updates"]) == len(VIEWS)
        kept = runtime_of(own).foldlog_totals
        assert {kept[(own.name, "t", f"{bucket}|{v}")][0] for v in VIEWS} == {8}
    for view in VIEWS:
        assert (await log._totals(db, bucket, view)).watermark == 8
    await _assert_views(log, db, bucket, set(range(8)))


class Overlaps(monitoring.CommandListener):
    """The order in which finds on the totals are sent and answered."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command["find"] == "t":
            self.events.append(("sent", event.request_id, str(event.command["filter"]["_id"])))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.command_name == "find" and any(r == event.request_id for _, r, _ in self.events):
            self.events.append(("answered", event.request_id, ""))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_the_views_not_remembered_are_read_together(db: Database, mongo_url: str) -> None:
    """A remembered view is not read; the others are, at once (each sent before any answer)."""
    log, bucket, listener = _log(), "b", Overlaps()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True, event_listeners=[listener])
    try:
        own = durable_database(client, db.name)
        await _record(log, own, bucket, [0, 1, 2, 3])  # (opens the pool's connections)
        del runtime_of(own).foldlog_totals[(own.name, "t", f"{bucket}|keys")]
        del runtime_of(own).foldlog_totals[(own.name, "t", f"{bucket}|sum")]
        listener.events.clear()
        await _record(log, own, bucket, [4, 5, 6, 7])
        assert [what for what, _, _ in listener.events] == ["sent", "sent", "answered", "answered"]
        assert sorted(_id for what, _, _id in listener.events if what == "sent") == [f"{bucket}|keys", f"{bucket}|sum"]
    finally:
        await client.close()
    await _assert_views(log, db, bucket, set(range(8)))


async def test_compactions_from_remembered_pairs_amid_another_processs_and_a_write_back_stay_exact(
    db: Database, mongo_url: str
) -> None:
    """A compacts at 4; B (another process) appends copies of keys counted and not, and compacts
    at 8; one view's pair is put back to 4 (FerretDB's write-back); A compacts at 12 from its
    pairs at 4 (reading no totals), B at 16 from its own at 8, and A then writes an older pair
    (14) over B's 16. Every view reads each key once, from every process."""
    log, bucket = _log(), "b"
    async with recorded(db, mongo_url) as (a, recorder), recorded(db, mongo_url) as (b, _):
        await _record(log, a, bucket, [0, 1, 2, 3])  # 1..4, compacted by A at 4
        await _record(log, b, bucket, [4, 5, 2, 5])  # 5..8: a copy of k2 (counted), k5 twice; B at 8
        assert [(await log._totals(db, bucket, v)).watermark for v in VIEWS] == [8, 8, 8]
        # The write-back of an older pair: A's own at 4, as stored then.
        back = {"watermark": 4, "state": _expected({0, 1, 2, 3})["keys"]}
        await db["t"].replace_one({"_id": f"{bucket}|keys"}, back)
        recorder.commands.clear()
        await _record(log, a, bucket, [6, 5, 7, 7])  # 9..12: a copy of k5 (claimed by B), k7 twice
        assert _totals_reads(recorder) == []  # from its pairs at 4: entries 5..8 read, no totals
        assert [(await log._totals(db, bucket, v)).watermark for v in VIEWS] == [12, 12, 12]
        await _assert_views(log, a, bucket, set(range(8)))

        await _record(log, b, bucket, [8, 9, 10, 11])  # 13..16: B at 16, from its pairs at 8
        await _record(log, a, bucket, [7])  # 17: a copy of k7, in no compaction below
        assert await log.compact(a, bucket, upto=14) == 14  # from A's pairs at 12: the pair goes back
        assert [(await log._totals(db, bucket, v)).watermark for v in VIEWS] == [14, 14, 14]
        for process in (a, b, db):
            await _assert_views(log, process, bucket, set(range(12)))
        assert await log.compact(b, bucket) == 17  # a reader's compaction, from B's pairs at 16
        await _assert_views(log, a, bucket, set(range(12)))


async def test_a_view_whose_write_failed_stays_remembered_as_before(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a pair stored is remembered: a view whose statement failed keeps its earlier pair,
    and the next compaction folds on from there."""
    log, bucket = _log(), "b"
    await _record(log, db, bucket, [0, 1, 2, 3])
    real = log._replace

    async def refusing_keys(db_: Database, pairs: list[tuple[dict[str, Any], dict[str, Any]]], *, upsert: bool) -> Any:
        refused = [i for i, (q, _) in enumerate(pairs) if q["_id"].endswith("|keys")]
        errors = await real(db_, [p for i, p in enumerate(pairs) if i not in refused], upsert=upsert)
        assert errors == []
        return [{"index": i, "code": 2, "errmsg": "refused"} for i in refused]

    monkeypatch.setattr(log, "_replace", refusing_keys)
    await _record(log, db, bucket, [4, 5, 6, 7])  # the compaction at 8 fails for "keys" (logged)
    monkeypatch.undo()
    kept = runtime_of(db).foldlog_totals
    assert [kept[(db.name, "t", f"{bucket}|{v}")][0] for v in VIEWS] == [8, 4, 8]
    assert [(await log._totals(db, bucket, v)).watermark for v in VIEWS] == [8, 4, 8]
    await _record(log, db, bucket, [8, 9, 10, 11])
    assert [kept[(db.name, "t", f"{bucket}|{v}")][0] for v in VIEWS] == [12, 12, 12]
    await _assert_views(log, db, bucket, set(range(12)))


async def test_the_kept_totals_are_bounded(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(foldlog, "TOTALS_KEPT", 4)
    log = _log()
    for bucket in ("b1", "b2"):
        await _record(log, db, bucket, [0, 1, 2, 3])
    kept = runtime_of(db).foldlog_totals
    assert list(kept) == [(db.name, "t", "b1|sum"), *((db.name, "t", f"b2|{v}") for v in VIEWS)]
    await _assert_views(log, db, "b1", {0, 1, 2, 3})


async def test_a_log_without_kept_totals_remembers_none(db: Database) -> None:
    log = _log(keeps_totals=False)
    await _record(log, db, "b", [0, 1, 2, 3])
    assert not [key for key in runtime_of(db).foldlog_totals if key[0] == db.name]


async def test_a_mark_written_between_two_counter_compactions_stays(db: Database, mongo_url: str) -> None:
    """The ticket counters keep no totals: their `complete` mark (start, scripts/ticket_counts.py
    --fix) written by another process between two of this one's compactions is read, and kept."""
    assert not counters.COUNTS.keeps_totals
    tenant, every = uuid.uuid4().hex, counters.COUNTS.compact_every
    async with recorded(db, mongo_url) as (own, recorder):
        for i in range(every):
            await counters.COUNTS.record(own, tenant, f"ev{i}", {"inc": {"x": 1}}, check=False)
        stored = await counters.COUNTS._totals(db, tenant, "")
        assert stored.watermark == every and not stored.marks
        fixed = Totals(stored.watermark, stored.state, {"complete": True})
        await counters.COUNTS.write_totals(db, tenant, "", fixed)  # the fix, another process's
        recorder.commands.clear()
        for i in range(every, 2 * every):
            await counters.COUNTS.record(own, tenant, f"ev{i}", {"inc": {"x": 1}}, check=False)
        reads = _totals_reads(recorder, counters.TOTALS)
    after = await counters.COUNTS._totals(db, tenant, "")
    assert after.watermark == 2 * every and after.marks == {"complete": True}
    assert after.state == {"x": 2 * every}
    assert len(reads) == 1  # the second compaction read its totals: the mark with them
