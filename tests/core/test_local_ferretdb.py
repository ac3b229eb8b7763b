"""The local FerretDB as the launcher builds it (backend/devtools/ferretdb.py): `_id` look-ups use
FerretDB's own unique `_id` index, and a dropped database leaves nothing of itself open for a new
database of the same name to pick up. Only meaningful when the tests' store is that FerretDB (no
MONGO_URL); against MongoDB both are the server's own business."""

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from backend.core.db import is_ferretdb

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def ferretdb_pid(raw_mongo: AsyncMongoClient[dict[str, Any]]) -> int:
    if os.environ.get("MONGO_URL") or not is_ferretdb(await raw_mongo.admin.command("buildInfo")):
        pytest.skip("the store is not the launcher's FerretDB (MONGO_URL is set)")
    return int((await raw_mongo.admin.command("serverStatus"))["pid"])


async def test_id_lookups_use_the_unique_id_index(ferretdb_pid: int, raw_mongo: AsyncMongoClient[Any]) -> None:
    db = raw_mongo["id_lookup_plan"]
    oid = ObjectId()
    await db.strings.insert_many([{"_id": f"k{i}", "n": i} for i in range(200)])
    await db.oids.insert_many([{"_id": ObjectId()} for _ in range(50)] + [{"_id": oid}])
    for collection, key in (("strings", "k7"), ("strings", "no-such-id"), ("oids", oid)):
        out = await db.command("explain", {"find": collection, "filter": {"_id": key}})
        [plan] = out["queryPlanner"]["Plan"]
        assert out["filterPushdown"] is True, out
        # Unpatched, the look-up's expression matched no index: "SCAN <table>".
        assert "SEARCH" in plan and "USING INDEX" in plan and "__id_ " in plan, plan
    assert (await db.strings.find_one({"_id": "k7"}) or {}).get("n") == 7
    assert await db.oids.find_one({"_id": oid}) == {"_id": oid}
    assert await db.strings.find_one({"_id": "no-such-id"}) is None


def _open_files(pid: int, database: str) -> list[str]:
    fds = Path(f"/proc/{pid}/fd")
    targets = []
    for fd in fds.iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:
            continue  # closed while listing
    return [t for t in targets if Path(t.removesuffix(" (deleted)")).name.startswith(f"{database}.sqlite")]


async def test_a_dropped_database_is_closed_before_one_of_its_name_is_created(
    ferretdb_pid: int, raw_mongo: AsyncMongoClient[Any]
) -> None:
    """The interleaving behind CI's lost store (issues ci, stop 36): a database written, left long
    enough for anything that visits database files (the launcher's old once-a-second index keeper)
    to open it, dropped, and created again under its name. Nothing may still hold the old files:
    SQLite would hand the old write-ahead log to the new database."""
    name = "drop_and_recreate"
    db = raw_mongo[name]
    for rounds in range(2):
        await db.items.insert_many([{"_id": f"{rounds}-{i}", "pad": "x" * 400} for i in range(300)])
        await asyncio.sleep(1.3)
        await raw_mongo.drop_database(name)
        left = _open_files(ferretdb_pid, name)
        assert left == [], left
        await db.items.insert_many([{"_id": f"new-{rounds}-{i}"} for i in range(20)])
        assert await db.items.count_documents({}) == 20
        assert await db.items.find_one({"_id": f"new-{rounds}-3"}) == {"_id": f"new-{rounds}-3"}
        await raw_mongo.drop_database(name)
