"""Conditional updates by `_id` (backend/core/conditional.py): the condition decides on both
stores, and on FerretDB no command carries anything but `{_id}` (so none scans the collection)."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from backend.core import conditional
from backend.core.db import durable_database
from backend.core.runtime import runtime_of
from tests.monitoring import CommandRecorder

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(mongo_url: str) -> AsyncIterator[tuple[Any, CommandRecorder]]:
    listener = CommandRecorder()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True, event_listeners=[listener])
    yield durable_database(client, f"t_conditional_{uuid.uuid4().hex[:8]}"), listener
    await client.close()


async def test_updates_only_when_the_condition_holds(store: Any) -> None:
    db, listener = store
    early = T0 - timedelta(seconds=1)
    await db["t"].insert_one({"_id": "a", "version": 3, "at": T0, "status": "sent"})

    assert not await conditional.update_if(db, "t", "a", {"version": 2}, {"$set": {"version": 9}})
    assert await conditional.update_if(db, "t", "a", {"version": 3}, {"$set": {"version": 4}})
    assert not await conditional.update_if(db, "t", "a", {"at": {"$lte": early}}, {"$set": {"x": 1}})
    assert await conditional.update_if(db, "t", "a", {"at": {"$lte": T0}}, {"$set": {"at": T0 + timedelta(hours=1)}})
    assert not await conditional.update_if(db, "t", "a", {"status": {"$in": ["pending"]}}, {"$set": {"status": "x"}})
    read = {"$set": {"status": "read"}}
    assert await conditional.update_if(db, "t", "a", {"status": {"$in": ["pending", "sent"]}}, read)
    assert not await conditional.update_if(db, "t", "missing", {"version": 1}, {"$set": {"version": 2}})

    doc = await db["t"].find_one({"_id": "a"})
    assert (doc["version"], doc["at"], doc["status"], "x" in doc) == (4, T0 + timedelta(hours=1), "read", False)
    if not await conditional.filters_push_down(db):  # FerretDB: only `{_id}` filters were sent
        filters = [dict(u["q"]) for c in listener.named("update") for u in c["updates"]]
        filters += [dict(c.get("filter", {})) for c in listener.named("find")]
        assert filters and all(set(f) == {"_id"} for f in filters), filters


@pytest.mark.parametrize(
    ("doc", "condition", "expected"),
    [
        ({"v": 1}, {"v": 1}, True),
        ({"v": 1}, {"v": 2}, False),
        ({}, {"v": None}, True),
        ({"v": 1}, {"v": {"$ne": 2}}, True),
        ({"v": 1}, {"v": {"$in": [1, 2]}}, True),
        ({"v": 3}, {"v": {"$nin": [1, 2]}}, True),
        ({"v": 2}, {"v": {"$gt": 1, "$lt": 3}}, True),
        ({"v": 3}, {"v": {"$gt": 1, "$lt": 3}}, False),
        ({}, {"v": {"$lte": 3}}, False),
        ({"v": "a"}, {"v": {"$lte": 3}}, False),
        ({"v": 1, "w": 2}, {"v": 1, "w": 3}, False),
        ({"m": {"s": "pending"}}, {"m.s": "pending"}, True),  # a dotted path, as MongoDB reads it
        ({"m": {"s": "ready"}}, {"m.s": "pending"}, False),
        ({"m": "text"}, {"m.s": None}, True),
    ],
)
def test_matcher(doc: dict[str, Any], condition: dict[str, Any], expected: bool) -> None:
    assert conditional.matches(doc, condition) is expected


def test_matcher_refuses_operators_it_does_not_know() -> None:
    with pytest.raises(ValueError, match=r"\$regex"):
        conditional.matches({"v": "a"}, {"v": {"$regex": "a"}})


async def test_one_writer_lets_one_write_of_a_document_through_at_a_time_and_forgets_it_after(store: Any) -> None:
    db, _ = store
    order: list[str] = []
    first_in, release = asyncio.Event(), asyncio.Event()

    async def write(name: str, *, hold: bool = False, fail: bool = False) -> None:
        async with conditional.one_writer(db, "t", "a"):
            order.append(f"{name} in")
            if hold:
                first_in.set()
                await release.wait()
            if fail:
                raise RuntimeError("the write failed")
            order.append(f"{name} out")

    first = asyncio.create_task(write("first", hold=True, fail=True))
    await first_in.wait()
    others = [asyncio.create_task(write("second")), asyncio.create_task(write("third"))]
    async with conditional.one_writer(db, "t", "b"):  # another document does not wait
        order.append("b")
    await asyncio.sleep(0)
    assert order == ["first in", "b"]
    release.set()
    with pytest.raises(RuntimeError):  # a failed write lets the next one through
        await first
    await asyncio.gather(*others)
    assert order == ["first in", "b", "second in", "second out", "third in", "third out"]
    assert runtime_of(db).document_writers == {}  # nothing kept for documents not being written
