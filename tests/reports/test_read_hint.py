"""A month view read with its process-local hint (backend/core/foldlog.py, Round trips): the
totals and the entries past the remembered watermark are read in one round, and whatever moved
in between — a competitor appending and compacting between the reader's two reads, an older pair
written back over newer totals — the figures are those of the log."""

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from backend.core.db import Database
from backend.core.ids import new_id
from backend.core.runtime import runtime_of
from backend.core.seqlog import SeqLog
from backend.reports import aggregates, repository

MONTH = "2026-01"
COMPETITOR: contextvars.ContextVar[bool] = contextvars.ContextVar("competitor", default=False)
DAY = datetime(2026, 1, 15, 12, tzinfo=UTC)


async def _record(db: Database, tenant: str, keys: range) -> None:
    for k in keys:
        part = aggregates.part(DAY, ("d1", f"a{k % 3}", "c1"), o=1)
        await repository.record_month(db, tenant, MONTH, f"k{k}", [part])


async def _opened(db: Database, tenant: str, view: str = "all") -> int:
    [state] = await repository.months(db, tenant, [MONTH], view)
    return sum(int(cell.get("o", 0)) for _, _, cell in aggregates.month_cells(state))


def _bucket(tenant: str) -> str:
    return aggregates.month_bucket(tenant, MONTH)


async def test_a_competitor_between_the_totals_read_and_the_tail_read_changes_no_figure(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, months = new_id(), repository.MONTHS
    await _record(db, tenant, range(1, 4))
    assert await _opened(db, tenant) == 3  # no totals yet: the hint remembers watermark 0, tail end 3
    await _record(db, tenant, range(4, 10))  # the 8th compacts: watermark 8, entry 9 past it
    assert await _opened(db, tenant) == 9
    assert runtime_of(db).foldlog_hints[(db.name, repository.TOTALS, f"{_bucket(tenant)}|all")] == (8, 9)

    real_log = months._log
    injected: list[int] = []
    done = asyncio.Event()

    def log_with_competitor(bucket: str) -> SeqLog:
        log_ = real_log(bucket)
        real_get: Callable[[Database, int], Awaitable[dict[str, Any] | None]] = log_.get

        async def get(db_: Database, seq: int) -> dict[str, Any] | None:
            # Before the reader's first tail read (issued with its totals read), a writer appends
            # 7 entries and compacts (watermark 16); the reader's tail reads wait for it to end.
            if not injected:
                injected.append(seq)
                COMPETITOR.set(True)  # its own reads (its compaction's) go straight through
                await _record(db, tenant, range(10, 17))
                done.set()
            elif not COMPETITOR.get():
                await done.wait()
            return await real_get(db_, seq)

        log_.get = get  # type: ignore[method-assign]
        return log_

    monkeypatch.setattr(months, "_log", log_with_competitor)
    assert await _opened(db, tenant) == 16
    assert injected == [9]  # read with the totals, from the hint's watermark
    monkeypatch.setattr(months, "_log", real_log)
    runtime_of(db).foldlog_hints.clear()  # and read afresh, without any hint
    assert await _opened(db, tenant) == 16


async def test_older_totals_written_back_over_the_hinted_ones_change_no_figure(db: Database) -> None:
    tenant = new_id()
    await _record(db, tenant, range(1, 9))  # compacted at 8
    _id = f"{_bucket(tenant)}|agent"
    older = await db[repository.TOTALS].find_one({"_id": _id})
    assert older is not None and older["watermark"] == 8
    await _record(db, tenant, range(9, 19))  # compacted at 16, entries 17 and 18 past it
    assert await _opened(db, tenant, "agent") == 18
    assert runtime_of(db).foldlog_hints[(db.name, repository.TOTALS, _id)] == (16, 18)
    # A write-back of the older pair (FerretDB, or a slow compactor): the watermark moves back.
    await db[repository.TOTALS].replace_one({"_id": _id}, older)
    assert await _opened(db, tenant, "agent") == 18
    assert runtime_of(db).foldlog_hints[(db.name, repository.TOTALS, _id)] == (8, 18)
    await _record(db, tenant, range(19, 21))  # a tail longer than a window past the hint's end
    assert await _opened(db, tenant, "agent") == 20
