"""Totals written together (foldlog `write_all`, one update command): writers racing to create a
bucket's totals documents all succeed, and each document ends as one writer's whole write."""

import asyncio
import uuid
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from backend.core.db import Database, durable_database
from backend.core.foldlog import FoldLog, Totals, View

VIEWS = ("a", "b", "c")


def _add(state: dict[str, Any], body: dict[str, Any]) -> None:
    state["n"] = state.get("n", 0) + 1


@pytest.fixture
def db(raw_mongo: AsyncMongoClient[dict[str, Any]]) -> Database:
    return durable_database(raw_mongo, f"t_foldlog_{uuid.uuid4().hex[:8]}")


async def test_racing_first_writes_of_a_buckets_totals_all_land(db: Database) -> None:
    # On FerretDB v1 these first upserts collide (measured: ~20 duplicate keys in 10 rounds); a
    # bulk_write then raised KeyError('nModified') from PyMongo instead of retrying them.
    log = FoldLog(entries="e", totals="t", claim_kind="k", views={v: View(_add) for v in VIEWS})
    for round_ in range(10):
        bucket = f"b{round_}"
        writes = [{v: Totals(w, {"w": w}) for v in VIEWS} for w in range(1, 7)]
        await asyncio.gather(*(log.write_all(db, bucket, written) for written in writes))
        for v in VIEWS:
            stored = await log._totals(db, bucket, v)
            assert stored.watermark > 0 and stored.state == {"w": stored.watermark}
