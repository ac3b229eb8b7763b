"""The reports' month and live logs leave each contribution's claim to the compactor
(reports/repository.py, `claim_on_write=False`): a writer appends without looking for an earlier
copy, and a compaction claims what it folds. Whatever comes between those writes — a retry
appended after a compaction claimed its contribution, the same contributions appended by two
processes at once, a writer that died after its append, a contribution recorded again after the
next event's — each counts once, in every view, before and after the next compaction. A writer's
compaction folds the entries its process appended without reading them, and reads those another
process appended between them."""

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from backend.core import natural_keys
from backend.core.clock import utcnow
from backend.core.db import Database
from backend.core.foldlog import Totals
from backend.core.ids import new_id
from backend.reports import aggregates, repository
from backend.reports.models import LiveChange
from tests.monitoring import CommandRecorder, recorded

MONTH = "2026-02"
DAY = datetime(2026, 2, 10, 9, tzinfo=UTC)
VIEWS = tuple(aggregates.PROJECTIONS)


def _part(k: int) -> dict[str, Any]:
    return aggregates.part(DAY, ("d1", f"a{k % 3}", "c1"), o=1, mi=1)


async def _record(db: Database, tenant: str, k: int) -> None:
    await repository.record_month(db, tenant, MONTH, f"ev:{k}", [_part(k)])


async def _figures(db: Database, tenant: str) -> dict[str, tuple[int, int]]:
    """(opened, messages in) as each month view reads them now."""
    out = {}
    for view in VIEWS:
        [state] = await repository.months(db, tenant, [MONTH], view)
        cells = [cell for _, _, cell in aggregates.month_cells(state)]
        out[view] = (sum(int(c.get("o", 0)) for c in cells), sum(int(c.get("mi", 0)) for c in cells))
    return out


async def _assert_counted(db: Database, tenant: str, n: int) -> None:
    """Every view reads n contributions, before and after one more compaction, and the stored
    totals are their own entries' fold."""
    bucket = aggregates.month_bucket(tenant, MONTH)
    assert await _figures(db, tenant) == dict.fromkeys(VIEWS, (n, n))
    await repository.MONTHS.compact(db, bucket)
    assert await _figures(db, tenant) == dict.fromkeys(VIEWS, (n, n))
    for view in VIEWS:
        stored, folded = await repository.month_totals(db, tenant, MONTH, view)
        assert aggregates.clean(stored.state) == aggregates.clean(folded.state), view
    claims = await repository.MONTHS.claims(db, bucket)
    assert sorted(claims) == sorted(f"ev:{k}" for k in range(n))


def _entry_reads(recorder: CommandRecorder) -> list[dict[str, Any]]:
    """Reads of entries (not the log's head search on a process's first append: `_id`s only)."""
    return [c for c in recorder.named("find") if c["find"] == repository.ENTRIES and "projection" not in c]


@pytest.fixture
async def second(db: Database, mongo_url: str) -> AsyncIterator[Database]:
    """Another process on the same database: a client (and so a runtime) of its own."""
    async with recorded(db, mongo_url) as (other, _):
        yield other


async def test_a_repeat_appended_after_its_contribution_was_compacted_counts_once(db: Database) -> None:
    """A writer appends without looking (repository: no look-up before the append), so a retry
    arriving after a compaction folded and claimed its contribution appends a copy past the
    watermark: readers skip it at its claim, and so does the next compaction."""
    tenant = new_id()
    bucket = aggregates.month_bucket(tenant, MONTH)
    for k in range(7):
        await _record(db, tenant, k)
    assert await repository.MONTHS.compact(db, bucket) == 7  # folds and claims entries 1..7
    await _record(db, tenant, 3)  # the retry: entry 8, a copy of a key counted in the totals
    assert await db[repository.ENTRIES].count_documents({"bucket": bucket, "key": "ev:3"}) == 2
    assert (await repository.MONTHS.claims(db, bucket))["ev:3"] == 4  # the first copy, never the retry's
    await _assert_counted(db, tenant, 7)


async def test_contributions_appended_by_two_processes_at_once_count_once_each(db: Database, second: Database) -> None:
    tenant = new_id()
    # Each process records every contribution (a redelivery handled by both), interleaved with
    # the compactions every 8th entry triggers in either.
    await asyncio.gather(*(_record(p, tenant, k) for k in range(20) for p in (db, second)))
    assert await _figures(second, tenant) == dict.fromkeys(VIEWS, (20, 20))
    await _assert_counted(db, tenant, 20)


async def test_a_writer_that_died_after_its_append_leaves_its_contribution_counted_once(db: Database) -> None:
    tenant = new_id()
    bucket = aggregates.month_bucket(tenant, MONTH)
    for k in range(3):
        await _record(db, tenant, k)
    # What `record` had done when its process died: the entry appended, nothing else.
    entry = {"parts": [_part(3)], "key": "ev:3", "bucket": bucket, "at": utcnow()}
    await repository.MONTHS._log(bucket).append(db, entry)
    assert await _figures(db, tenant) == dict.fromkeys(VIEWS, (4, 4))  # counted from the tail
    await _record(db, tenant, 3)  # its retry
    await _record(db, tenant, 4)
    await _assert_counted(db, tenant, 5)


async def test_a_ticket_recorded_again_after_it_left_the_queue_stays_out_of_it(db: Database) -> None:
    """The live queue needs order: a settle that records event v1 again appends a copy after
    v2's exit (nothing looks for an earlier copy, none is claimed on write). Only the first counts."""
    tenant, ticket = new_id(), new_id()
    enter = LiveChange(wset={ticket: {"s": DAY, "d": "d1", "c": "c1"}})
    await repository.record_live(db, tenant, f"ev:{ticket}:1", enter)
    await repository.record_live(db, tenant, f"ev:{ticket}:2", LiveChange(wdel=[ticket]))
    await repository.record_live(db, tenant, f"ev:{ticket}:1", enter)  # the late copy of v1
    assert ticket not in (await repository.live(db, tenant)).get("waiting", {})
    await repository.LIVE.compact(db, aggregates.live_bucket(tenant))
    assert ticket not in (await repository.live(db, tenant)).get("waiting", {})
    stored, folded = await repository.live_totals(db, tenant)
    assert stored.watermark == 3 and stored.state == folded.state


async def test_a_contribution_costs_its_append_and_a_compaction_claims_its_tail_in_one_insert(
    db: Database, mongo_url: str
) -> None:
    tenant = new_id()
    async with recorded(db, mongo_url) as (counted, recorder):
        for k in range(7):
            await _record(counted, tenant, k)
        claims = [c for c in recorder.named("insert") if c["insert"] == natural_keys.COLLECTION]
        assert claims == []  # no claim on write
        assert len([c for c in recorder.named("insert") if c["insert"] == repository.ENTRIES]) == 7
        await _record(counted, tenant, 7)  # the 8th: a compaction
        claims = [c for c in recorder.named("insert") if c["insert"] == natural_keys.COLLECTION]
        assert [len(c["documents"]) for c in claims] == [8]
    await _assert_counted(db, tenant, 8)


async def test_a_writers_compaction_reads_no_entry_it_appended_and_reads_another_processs(
    db: Database, second: Database, mongo_url: str
) -> None:
    tenant = new_id()
    async with recorded(db, mongo_url) as (counted, recorder):
        for k in range(8):  # the 8th compacts
            await _record(counted, tenant, k)
        assert _entry_reads(recorder) == []
        # One update command writes every view's totals, a statement each.
        [totals_write] = [c for c in recorder.named("update") if c["update"] == repository.TOTALS]
        assert len(totals_write["updates"]) == len(VIEWS)
        await _assert_counted(db, tenant, 8)  # what it folded from memory is what the log says

        # Another process appends entries 11 and 12 between this one's: its compaction at 16
        # reads the stretch (the entries it lacks), and every contribution counts once.
        recorder.commands.clear()
        for k in range(8, 10):
            await _record(counted, tenant, k)
        for k in range(10, 12):
            await _record(second, tenant, k)
        for k in range(12, 16):
            await _record(counted, tenant, k)
        assert _entry_reads(recorder) != []
    bucket = aggregates.month_bucket(tenant, MONTH)
    assert [(await repository.MONTHS._totals(db, bucket, v)).watermark for v in VIEWS] == [16] * len(VIEWS)
    await _assert_counted(db, tenant, 16)


async def test_a_burst_of_one_processs_writers_compacts_one_stretch_after_the_other(
    db: Database, mongo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entry 16 appended while the compaction entry 8 triggered is still writing (held until
    then): the second compaction waits for the first and starts from the watermark it wrote, so
    neither reads an entry nor loses a claim (a lost claim costs a read of the winner)."""
    sixteenth = asyncio.Event()
    real_appended, real_write = repository.MONTHS._appended, repository.MONTHS.write_all

    def appended(db_: Database, bucket: str, stored: dict[str, Any]) -> None:
        real_appended(db_, bucket, stored)
        if stored["seq"] == 16:
            sixteenth.set()

    async def held_write(db_: Database, bucket: str, written: Mapping[str, Totals]) -> None:
        if any(totals.watermark == 8 for totals in written.values()):
            await asyncio.wait_for(sixteenth.wait(), 30)
        await real_write(db_, bucket, written)

    monkeypatch.setattr(repository.MONTHS, "_appended", appended)
    monkeypatch.setattr(repository.MONTHS, "write_all", held_write)
    tenant = new_id()
    async with recorded(db, mongo_url) as (counted, recorder):
        await asyncio.gather(*(_record(counted, tenant, k) for k in range(16)))
        assert sixteenth.is_set()
        assert _entry_reads(recorder) == []
        assert [c for c in recorder.named("find") if c["find"] == natural_keys.COLLECTION] == []
        claims = [c for c in recorder.named("insert") if c["insert"] == natural_keys.COLLECTION]
        assert sorted(len(c["documents"]) for c in claims) == [8, 8]
    monkeypatch.undo()
    await _assert_counted(db, tenant, 16)


async def test_a_processs_next_compactions_of_a_month_and_its_queue_read_no_totals(
    db: Database, mongo_url: str
) -> None:
    """The month and live logs keep their totals (foldlog `keeps_totals`): a process's compaction
    after its first starts from the pairs it wrote, so it reads neither totals nor entries."""
    tenant = new_id()

    def totals_reads(recorder: CommandRecorder) -> list[dict[str, Any]]:
        return [c for c in recorder.named("find") if c["find"] == repository.TOTALS]

    async def live(db_: Database, k: int) -> None:
        await repository.record_live(db_, tenant, f"ev:{k}", LiveChange(wset={f"t{k}": {"s": DAY, "d": "d1"}}))

    async with recorded(db, mongo_url) as (counted, recorder):
        for k in range(8):
            await _record(counted, tenant, k)
            await live(counted, k)
        assert len(totals_reads(recorder)) == len(VIEWS) + 1  # each compaction's first: every view
        recorder.commands.clear()
        for k in range(8, 24):
            await _record(counted, tenant, k)
            await live(counted, k)
        assert totals_reads(recorder) == [] and _entry_reads(recorder) == []
        assert len([c for c in recorder.named("update") if c["update"] == repository.TOTALS]) == 4
    await _assert_counted(db, tenant, 24)
    stored, folded = await repository.live_totals(db, tenant)
    assert stored.watermark == 24 and stored.state == folded.state
    assert sorted((await repository.live(db, tenant))["waiting"]) == sorted(f"t{k}" for k in range(24))
