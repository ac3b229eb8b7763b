"""Item 7 on a real FerretDB: one instance at a time (DB lease lock), outcomes recorded, a failing
migration stops start-up with the data untouched, a re-run applies only what is pending."""

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import AutoReconnect

from backend.app import create_app
from backend.core.clock import utcnow
from backend.core.db import Database, durable_database
from backend.migrations import lock, ops, runner, versions
from backend.migrations.model import Migration, MigrationError
from tests.conftest import make_settings


@pytest.fixture
async def fresh(mongo_url: str, raw_mongo: AsyncMongoClient[dict[str, Any]], request: pytest.FixtureRequest) -> Any:
    name = f"mig_{request.node.name[:40]}"
    await raw_mongo.drop_database(name)
    return durable_database(raw_mongo, name)


async def test_two_instances_at_once_run_each_migration_once(mongo_url: str, fresh: Database) -> None:
    started: list[str] = []

    async def slow_apply(db: Database) -> None:
        started.append("run")
        await db.probe.insert_one({"n": len(started)})
        await asyncio.sleep(0.5)  # long enough for the other instance to try the lock meanwhile

    migrations = [Migration(1, "baseline", apply=ops_nothing), Migration(2, "probe", apply=slow_apply)]
    # Two separate clients: two instances as far as the database can tell.
    clients = [AsyncMongoClient[dict[str, Any]](mongo_url, tz_aware=True) for _ in range(2)]
    try:
        dbs = [durable_database(c, fresh.name) for c in clients]
        done = await asyncio.gather(*(runner.run(db, migrations, lease_seconds=30, wait_seconds=30) for db in dbs))
    finally:
        for c in clients:
            await c.close()
    assert sorted(done, key=len) == [[], [1, 2]]
    assert started == ["run"] and await fresh.probe.count_documents({}) == 1
    # The second instance waited for the first to release, then found nothing pending.
    locks = await fresh[lock.COLLECTION].find({}).sort("_id", 1).to_list(length=None)
    assert [lk["released"] for lk in locks] == [True, True]
    assert locks[1]["acquired_at"] >= locks[0]["released_at"]
    runs = await fresh[runner.COLLECTION].find({"kind": "run"}).to_list(length=None)
    assert sorted((r["version"], r["outcome"]) for r in runs) == [(1, "applied"), (2, "applied")]


async def ops_nothing(db: Database) -> None:
    return None


async def test_failing_check_stops_start_up_with_data_untouched_and_rerun_applies(
    mongo_url: str, fresh: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fresh.users.insert_many([{"_id": "u1", "phone": "5511"}, {"_id": "u2", "phone": None}])
    before = await fresh.users.find({}).sort("_id", 1).to_list(length=None)

    async def check(db: Database) -> None:
        if await db.users.count_documents({"phone": None}):
            raise MigrationError("users without phone: fix them first")

    async def apply(db: Database) -> None:
        await ops.reshape_field(db, "users", "phone", "phone_e164", lambda p: f"+{p}")

    shipped = [m.version for m in versions.MIGRATIONS]
    n = max(shipped) + 1
    monkeypatch.setattr(versions, "MIGRATIONS", [*versions.MIGRATIONS, Migration(n, "e164", apply, check)])
    settings = make_settings(mongo_url, fresh.name)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert not app.state.startup.ready
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            r = await http.get("/health/ready")
            assert r.status_code == 503 and "users without phone" in " ".join(r.json()["errors"])
            assert (await http.get("/api/v1/auth/me")).status_code == 503
    assert await fresh.users.find({}).sort("_id", 1).to_list(length=None) == before  # untouched
    failed = await fresh[runner.COLLECTION].find({"version": n, "kind": "run"}).to_list(length=None)
    assert [f["outcome"] for f in failed] == ["failed"] and "users without phone" in failed[0]["error"]
    assert await fresh[runner.COLLECTION].find_one({"_id": runner.applied_id(n)}) is None
    assert (await fresh[lock.COLLECTION].find({}).sort("_id", -1).to_list(1))[0]["released"] is True

    # The operator fixes the data; the re-run applies version n only, and keeps the source field.
    await fresh.users.update_one({"_id": "u2"}, {"$set": {"phone": "5522"}})
    async with app.router.lifespan_context(app):
        assert app.state.startup.ready, app.state.startup.errors
    users = {u["_id"]: u for u in await fresh.users.find({}).to_list(length=None)}
    assert users["u1"]["phone"] == "5511" and users["u1"]["phone_e164"] == "+5511"
    runs = await fresh[runner.COLLECTION].find({"kind": "run"}).sort("_id", 1).to_list(length=None)
    shipped_runs = [(v, "applied") for v in shipped]
    assert [(r["version"], r["outcome"]) for r in runs] == [*shipped_runs, (n, "failed"), (n, "applied")]
    # A third start has nothing pending and takes no lock.
    locks = await fresh[lock.COLLECTION].count_documents({})
    assert await runner.run(fresh, versions.MIGRATIONS) == []
    assert await fresh[lock.COLLECTION].count_documents({}) == locks


async def test_a_failure_midway_keeps_every_original_field(fresh: Database) -> None:
    await fresh.items.insert_many([{"_id": i, "price": str(i)} for i in range(5)] + [{"_id": 9, "price": "x"}])

    async def apply(db: Database) -> None:
        await ops.reshape_field(db, "items", "price", "price_cents", lambda p: int(p) * 100)

    with pytest.raises(runner.MigrationFailed):
        await runner.run(fresh, [Migration(1, "cents", apply)])
    docs = await fresh.items.find({}).to_list(length=None)
    assert {d["_id"]: d["price"] for d in docs} == {**{i: str(i) for i in range(5)}, 9: "x"}
    assert all(d.get("price_cents") in (None, d["_id"] * 100) for d in docs if d["_id"] != 9)


async def test_add_field_never_overwrites_and_reshape_keeps_the_source(fresh: Database) -> None:
    await fresh.c.insert_many([{"_id": 1, "a": 1}, {"_id": 2, "a": 2, "b": "kept"}])
    assert await ops.add_field(fresh, "c", "b", lambda d: "new") == 1
    assert await ops.add_field(fresh, "c", "b", lambda d: "again") == 0  # idempotent
    assert {d["_id"]: d["b"] for d in await fresh.c.find({}).to_list(None)} == {1: "new", 2: "kept"}
    with pytest.raises(ValueError):
        await ops.reshape_field(fresh, "c", "a", "a", lambda v: v)


async def test_an_expired_lock_of_a_dead_instance_is_taken_over(fresh: Database) -> None:
    now = utcnow()
    await fresh[lock.COLLECTION].insert_one(
        {
            "_id": "lock:0000000001",
            "generation": 1,
            "owner": "dead",
            "acquired_at": now - timedelta(minutes=5),
            "expires_at": now - timedelta(minutes=4),
            "released": False,
        }
    )
    assert await runner.run(fresh, [Migration(1, "baseline", apply=ops_nothing)], wait_seconds=5) == [1]
    newest = (await fresh[lock.COLLECTION].find({}).sort("_id", -1).to_list(1))[0]
    assert newest["generation"] == 2 and newest["took_over"] == "dead" and newest["released"] is True


async def test_a_live_lock_makes_the_other_instance_wait_then_give_up(fresh: Database) -> None:
    generation = await lock.acquire(fresh, "holder", lease_seconds=60, wait_seconds=1)
    with pytest.raises(lock.LockTimeout, match="held by holder"):
        await runner.run(fresh, [Migration(1, "baseline", apply=ops_nothing)], wait_seconds=0.5)
    await lock.release(fresh, generation, "holder")
    assert await runner.run(fresh, [Migration(1, "baseline", apply=ops_nothing)], wait_seconds=1) == [1]


async def test_a_failed_lock_renewal_neither_fails_the_migration_nor_skips_the_release(
    fresh: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    renewals_failed = asyncio.Event()
    original = AsyncCollection.update_one

    async def flaky_update_one(self: AsyncCollection[Any], filter: Any, update: Any, *a: Any, **kw: Any) -> Any:
        if self.name == lock.COLLECTION and "expires_at" in update.get("$set", {}):
            renewals_failed.set()
            raise AutoReconnect("primary stepped down (injected)")
        return await original(self, filter, update, *a, **kw)

    monkeypatch.setattr(AsyncCollection, "update_one", flaky_update_one)

    async def apply(db: Database) -> None:
        # Still migrating when the renewal fails: the failure lands inside the held lock.
        await asyncio.wait_for(renewals_failed.wait(), timeout=60)
        await db.probe.insert_one({"_id": "migrated"})

    assert await runner.run(fresh, [Migration(1, "slow", apply)], lease_seconds=3, wait_seconds=5) == [1]
    assert await fresh.probe.find_one({"_id": "migrated"}) is not None
    assert await fresh[runner.COLLECTION].find_one({"_id": runner.applied_id(1)}) is not None
    newest = (await fresh[lock.COLLECTION].find({}).sort("_id", -1).to_list(1))[0]
    assert newest["released"] is True
