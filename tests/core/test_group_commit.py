"""Group commit (backend/core/group_commit.py) on the real store: concurrent inserts of one
collection go out together, and each caller still gets exactly its own outcome — in particular a
unique `_id` (or unique index) still picks exactly one winner per key."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from backend.core import group_commit
from backend.core.db import durable_database
from backend.core.runtime import runtime_of
from tests.monitoring import CommandRecorder


@pytest.fixture
async def store(mongo_url: str) -> AsyncIterator[tuple[Any, CommandRecorder]]:
    listener = CommandRecorder()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True, event_listeners=[listener])
    yield durable_database(client, f"t_group_commit_{uuid.uuid4().hex[:8]}"), listener
    await client.close()


def _batch_sizes(listener: CommandRecorder) -> list[int]:
    return [len(command.get("documents", [])) for command in listener.named("insert")]


async def _outcome(coll: Any, doc: dict[str, Any]) -> str:
    try:
        await group_commit.insert_one(coll, doc)
    except DuplicateKeyError:
        return "duplicate"
    return "stored"


async def test_concurrent_inserts_are_batched_and_each_key_has_exactly_one_winner(store: Any) -> None:
    db, listener = store
    coll = db["claims"]
    await coll.insert_one({"_id": "taken-before", "by": "earlier"})
    # 60 keys claimed by 3 callers each, plus 1 key already taken: 181 concurrent inserts.
    docs = [{"_id": f"k{k}", "by": f"caller-{k}-{c}"} for c in range(3) for k in range(60)]
    docs.append({"_id": "taken-before", "by": "late"})
    outcomes = await asyncio.gather(*(_outcome(coll, d) for d in docs))

    stored = [d for d, o in zip(docs, outcomes, strict=True) if o == "stored"]
    assert sorted(d["_id"] for d in stored) == sorted(f"k{k}" for k in range(60))  # one winner per key
    assert outcomes[-1] == "duplicate"
    # What each winner was told is what the store holds.
    in_store = {d["_id"]: d["by"] for d in await coll.find({}).to_list(None)}
    assert in_store == {**{d["_id"]: d["by"] for d in stored}, "taken-before": "earlier"}
    # ...and they did not cost one command each.
    grouped = _batch_sizes(listener)[1:]  # after the set-up insert
    assert sum(grouped) == len(docs)
    assert len(grouped) < len(docs) / 10, grouped


async def test_a_unique_secondary_index_fails_only_the_document_that_breaks_it(store: Any) -> None:
    db, _ = store
    coll = db["phones"]
    await coll.create_index("phone", unique=True)
    docs = [{"_id": f"u{i}", "phone": f"55{i % 5}"} for i in range(20)]  # 5 phones, 4 claims each
    outcomes = await asyncio.gather(*(_outcome(coll, d) for d in docs))
    assert outcomes.count("stored") == 5
    assert outcomes.count("duplicate") == 15
    assert sorted(d["phone"] for d in await coll.find({}).to_list(None)) == [f"55{i}" for i in range(5)]


async def test_a_lone_insert_is_sent_at_once_as_a_plain_insert(store: Any) -> None:
    db, listener = store
    await group_commit.insert_one(db["lone"], {"_id": "only"})
    assert _batch_sizes(listener) == [1]
    assert await db["lone"].find_one({"_id": "only"}) == {"_id": "only"}
    with pytest.raises(DuplicateKeyError):
        await group_commit.insert_one(db["lone"], {"_id": "only"})
    assert not runtime_of(db).insert_queues  # nothing left behind once idle
