"""Reserved-number logs (backend/core/seqlog.py) on the real store, with writers that die between
taking a number and storing it: what is stored past any pattern of holes is found, and a writer
that starts afresh never takes a number below one already stored."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from backend.core import group_commit, seqlog
from backend.core.db import durable_database
from backend.core.seqlog import SeqLog


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
    key = (db.name, log.collection, log.prefix)
    for hints in (seqlog._head_hint, seqlog._reserved, seqlog._marked):
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


async def test_a_restarted_writer_over_stored_1_to_9_and_12_takes_13(db: Any, log: SeqLog, dying: set[str]) -> None:
    await _store(db, log, 12, {10, 11}, dying)
    _restart(db, log)
    assert await log.top(db) == 12
    assert (await log.append(db, {"n": 13}, reserve=True))[0] == 13


async def test_what_is_stored_past_any_pattern_of_holes_is_found(db: Any, log: SeqLog, dying: set[str]) -> None:
    holes = {3, 8, 9, 17, 30} | set(range(40, 55)) | {63, 64, 65, 100}  # a run of 15 among them
    await _store(db, log, 101, holes, dying)
    _restart(db, log)
    for hole in sorted(holes):
        after = await log.after(db, hole)
        assert after is not None and after["seq"] == min(n for n in range(hole + 1, 102) if n not in holes)
    assert await log.after(db, 102) is None  # the log's end
    assert await log.top(db) == 101
    assert (await log.append(db, {"n": 102}, reserve=True))[0] == 102


async def test_a_writer_that_died_last_leaves_no_trace_a_new_writer_trips_over(
    db: Any, log: SeqLog, dying: set[str]
) -> None:
    await _store(db, log, 20, set(range(12, 21)), dying)  # the last nine died
    _restart(db, log)
    assert await log.top(db) == 11
    assert await log.after(db, 12) is None
    assert (await log.append(db, {"n": 12}, reserve=True))[0] == 12
