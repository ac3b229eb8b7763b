"""Item 3 against a real FerretDB: the guard refuses shrunk, emptied and swapped databases (503 on
/health/ready and /api), records every start, honours an explicit override and records it."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from backend.app import create_app
from backend.core.config import Settings
from backend.ledger import guard, model
from backend.migrations import runner, versions
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, make_settings
from tests.factories import login, make_tenant, make_ticket
from tests.persistence.procs import Ferret


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as http:
            yield app, http


async def seed(http: httpx.AsyncClient) -> None:
    admin = await login(http, ADMIN_EMAIL, ADMIN_PASSWORD)
    tenant = await make_tenant(http, admin, departments=1, agents=1)
    for _ in range(3):
        await make_ticket(http, tenant)


async def assert_refused(app: FastAPI, http: httpx.AsyncClient, *needles: str) -> str:
    assert not app.state.startup.ready
    r = await http.get("/health/ready")
    assert r.status_code == 503
    errors = " ".join(r.json()["errors"])
    for needle in needles:
        assert needle in errors, errors
    assert (await http.get("/api/v1/auth/me")).status_code == 503
    return errors


@pytest.fixture
def ledger_file(tmp_path: Path) -> str:
    return str(tmp_path / "ledger" / "deploy-ledger.jsonl")


def file_entries(path: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


async def test_each_start_is_recorded_in_database_and_file(
    mongo_url: str, raw_mongo: AsyncMongoClient[dict[str, Any]], ledger_file: str
) -> None:
    settings = make_settings(mongo_url, "ledger_rec", LEDGER_FILE=ledger_file, APP_VERSION="v1")
    await raw_mongo.drop_database("ledger_rec")
    async with running(settings) as (app, http):
        assert app.state.startup.ready
        await seed(http)
    async with running(settings.model_copy(update={"APP_VERSION": "v2"})) as (app, _):
        assert app.state.startup.ready
    in_db = await raw_mongo["ledger_rec"].deploy_ledger.find({}).sort("_id", 1).to_list(length=None)
    in_file = file_entries(ledger_file)
    assert [e["_id"] for e in in_db] == [e["_id"] for e in in_file]
    assert [e["version"] for e in in_db] == ["v1", "v2"]
    assert in_db[1]["counts"]["tickets"] == 3 and in_db[1]["counts"]["messages"] == 3
    newest = max(m.version for m in versions.MIGRATIONS)
    assert in_db[1]["schema_version"] == newest and {e["outcome"] for e in in_db} == {"ok"}


async def test_shrunk_collections_refuse_with_both_counts_then_override_is_recorded(
    mongo_url: str,
    raw_mongo: AsyncMongoClient[dict[str, Any]],
    ledger_file: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = "ledger_shrink"
    await raw_mongo.drop_database(name)
    settings = make_settings(mongo_url, name, LEDGER_FILE=ledger_file)
    async with running(settings) as (_, http):
        await seed(http)
    async with running(settings) as (app, _):  # records 3 tickets / 3 messages
        assert app.state.startup.ready
    # Loss outside the application (what the guard exists for): a ticket and two messages vanish.
    db = raw_mongo[name]
    victim = await db.tickets.find_one({})
    assert victim is not None
    await db.tickets.delete_one({"_id": victim["_id"]})
    await db.messages.delete_many({"_id": {"$in": [m["_id"] for m in await db.messages.find({}).limit(2).to_list(2)]}})
    capsys.readouterr()
    async with running(settings) as (app, http):
        errors = await assert_refused(app, http, "tickets 3 -> 2", "messages 3 -> 1")
    logged = capsys.readouterr().out
    assert "tickets 3 -> 2" in logged and "messages 3 -> 1" in logged and "Refusing to serve" in logged
    baseline = errors.split("LEDGER_OVERRIDE_BASELINE=")[1].split()[0]

    # A reason without the right baseline (e.g. a flag left over from another incident): still refused.
    stale = settings.model_copy(update={"LEDGER_OVERRIDE_BASELINE": "2000-01-01", "LEDGER_OVERRIDE_REASON": "old"})
    async with running(stale) as (app, http):
        await assert_refused(app, http, "tickets 3 -> 2")
    # The explicit override: serves, and the ledger says who accepted what and why.
    reason = "ticket removed by hand in incident 42, accepted by ops"
    override = settings.model_copy(update={"LEDGER_OVERRIDE_BASELINE": baseline, "LEDGER_OVERRIDE_REASON": reason})
    async with running(override) as (app, http):
        assert app.state.startup.ready
        assert (await http.get("/health/ready")).status_code == 200
    entries = await db.deploy_ledger.find({}).sort("_id", 1).to_list(length=None)
    assert [e["outcome"] for e in entries] == ["ok", "ok", "refused", "refused", "override"]
    assert entries[-1]["override"] == {"baseline": baseline, "reason": reason}
    assert {s["collection"] for s in entries[-1]["shrinks"]} == {"tickets", "messages"}
    assert file_entries(ledger_file)[-1]["override"]["reason"] == reason
    # Re-based: the next plain start serves; a NEW loss with the old flag still set is refused.
    async with running(settings) as (app, _):
        assert app.state.startup.ready
    await db.users.delete_one({"role": "agent"})
    async with running(override) as (app, http):
        await assert_refused(app, http, "users")


async def test_emptied_database_is_detected_from_the_file_copy(
    mongo_url: str, raw_mongo: AsyncMongoClient[dict[str, Any]], ledger_file: str
) -> None:
    name = "ledger_empty"
    await raw_mongo.drop_database(name)
    settings = make_settings(mongo_url, name, LEDGER_FILE=ledger_file)
    async with running(settings) as (_, http):
        await seed(http)
    async with running(settings) as (app, _):
        assert app.state.startup.ready
    await raw_mongo.drop_database(name)  # the database (and its own copy of the ledger) is gone
    async with running(settings) as (app, http):
        await assert_refused(app, http, "is EMPTY although the deploy ledger recorded data", "tickets 3 -> 0")
    # Refused before any write: no indexes, no admin, nothing that would make it look alive.
    assert await raw_mongo[name].users.count_documents({}) == 0


async def test_a_different_server_behind_the_same_name_is_refused(
    mongo_url: str, raw_mongo: AsyncMongoClient[dict[str, Any]], ledger_file: str, tmp_path: Path
) -> None:
    name = "ledger_swap"
    await raw_mongo.drop_database(name)
    settings = make_settings(mongo_url, name, LEDGER_FILE=ledger_file)
    async with running(settings) as (_, http):
        await seed(http)
    async with running(settings) as (app, _):  # a start that saw the data
        assert app.state.startup.ready
    other = Ferret(tmp_path / "other-server")
    other.start()
    try:
        swapped = settings.model_copy(update={"MONGO_URL": other.url})
        async with running(swapped) as (app, http):
            await assert_refused(app, http, "EMPTY", "users")
    finally:
        other.stop()


async def test_instances_starting_at_once_while_data_grows_never_refuse(
    mongo_url: str, raw_mongo: AsyncMongoClient[dict[str, Any]], ledger_file: str
) -> None:
    name = "ledger_race"
    await raw_mongo.drop_database(name)
    settings = make_settings(mongo_url, name, LEDGER_FILE=ledger_file)
    async with running(settings) as (_, http):
        await seed(http)
    stop = asyncio.Event()

    async def grow() -> None:  # writes land between other instances' ledger reads and counts
        n = 0
        while not stop.is_set():
            await raw_mongo[name].messages.insert_one({"_id": f"grow-{n}", "ticket_id": "x", "reseller_id": "x"})
            n += 1

    async def instance() -> bool:
        async with running(settings) as (app, _):
            ready: bool = app.state.startup.ready
            return ready

    grower = asyncio.create_task(grow())
    results = await asyncio.gather(*(instance() for _ in range(4)))
    stop.set()
    await grower
    assert results == [True] * 4
    entries = await raw_mongo[name].deploy_ledger.find({}).to_list(length=None)
    assert len(entries) == 5 and {e["outcome"] for e in entries} == {model.OK}
    assert len({e["_id"] for e in file_entries(ledger_file)}) == 5


async def test_many_refused_restarts_do_not_push_the_baseline_out(
    mongo_url: str, raw_mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    name = "ledger_crashloop"
    await raw_mongo.drop_database(name)
    settings = make_settings(mongo_url, name)  # database copy only
    async with running(settings) as (_, http):
        await seed(http)
    async with running(settings) as (app, _):
        assert app.state.startup.ready
    await raw_mongo[name].tickets.delete_one({})
    refused = [{"_id": f"9999-{i:04d}", "db": name, "outcome": model.REFUSED, "counts": {}} for i in range(300)]
    await raw_mongo[name].deploy_ledger.insert_many(refused)  # a long crash loop of refused starts
    async with running(settings) as (app, http):
        await assert_refused(app, http, "tickets 3 -> 2")


def development(mongo_url: str, name: str, **overrides: Any) -> Settings:
    """Development mode with the default ledger file (./var/deploy-ledger.jsonl under the test's
    working directory): what `python -m backend` does on a developer's machine."""
    return make_settings(mongo_url, name, ENV="development", **overrides).model_copy(update={"LEDGER_FILE": None})


@pytest.fixture
def in_tmp_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


async def test_development_refuses_another_mongo_db_while_the_ledger_holds_history(
    mongo_url: str, raw_mongo: AsyncMongoClient[dict[str, Any]], in_tmp_checkout: Path
) -> None:
    first, other = "ledger_dev_a", "ledger_dev_b"
    for name in (first, other):
        await raw_mongo.drop_database(name)
    settings = development(mongo_url, first)
    assert settings.ledger_file == "./var/deploy-ledger.jsonl"
    async with running(settings) as (app, http):
        assert app.state.startup.ready, app.state.startup.errors
        await seed(http)
    async with running(settings) as (app, _):
        assert app.state.startup.ready
    recorded = file_entries(str(in_tmp_checkout / "var" / "deploy-ledger.jsonl"))
    identity = (await raw_mongo[first].database_identity.find_one({"_id": "identity"}) or {})["id"]
    assert {e["identity"] for e in recorded} == {identity} and {e["db"] for e in recorded} == {first}
    assert recorded[-1]["server"] == mongo_url.split("//")[1].split("/")[0]

    # MONGO_DB changed (a typo, another .env): refused before anything is written to it.
    switched = settings.model_copy(update={"MONGO_DB": other})
    async with running(switched) as (app, http):
        errors = await assert_refused(app, http, f"guards database '{first}'", f"this is database '{other}'")
    assert await raw_mongo[other].users.count_documents({}) == 0
    # The documented override names the start the file guards; the other database then takes over.
    baseline = errors.split("LEDGER_OVERRIDE_BASELINE=")[1].split()[0]
    assert baseline == recorded[-1]["_id"]
    moved = switched.model_copy(
        update={"LEDGER_OVERRIDE_BASELINE": baseline, "LEDGER_OVERRIDE_REASON": "new database for the demo"}
    )
    async with running(moved) as (app, _):
        assert app.state.startup.ready, app.state.startup.errors
    assert file_entries(settings.ledger_file)[-1]["outcome"] == model.OVERRIDE
    async with running(switched) as (app, _):
        assert app.state.startup.ready
    # ...and going back to the first one unannounced is a swap like any other.
    async with running(settings) as (app, http):
        await assert_refused(app, http, f"guards database '{other}'")


async def test_development_refuses_an_emptied_store_at_the_same_url(
    mongo_url: str, raw_mongo: AsyncMongoClient[dict[str, Any]], in_tmp_checkout: Path
) -> None:
    name = "ledger_dev_emptied"
    await raw_mongo.drop_database(name)
    settings = development(mongo_url, name)
    async with running(settings) as (_, http):
        await seed(http)
    async with running(settings) as (app, _):
        assert app.state.startup.ready
    await raw_mongo.drop_database(name)
    async with running(settings) as (app, http):
        await assert_refused(
            app, http, "no identity: a new or emptied database", "is EMPTY although the deploy ledger recorded data"
        )
    assert await raw_mongo[name].users.count_documents({}) == 0


async def test_lost_natural_keys_counters_and_events_are_refused(
    mongo_url: str, raw_mongo: AsyncMongoClient[dict[str, Any]], ledger_file: str
) -> None:
    name = "ledger_sources"
    await raw_mongo.drop_database(name)
    settings = make_settings(mongo_url, name, LEDGER_FILE=ledger_file)
    async with running(settings) as (_, http):
        await seed(http)
    async with running(settings) as (app, _):
        assert app.state.startup.ready
    db = raw_mongo[name]
    before = {c: await db[c].count_documents({}) for c in ("natural_keys", "counters", "ticket_events")}
    assert all(n > 0 for n in before.values()), before
    # What a partial restore or a hand-made "cleanup" leaves: the tickets are all there, but the
    # keys, the ticket counter and the audit log are not.
    for collection in before:
        await db[collection].delete_many({})
    async with running(settings) as (app, http):
        await assert_refused(
            app,
            http,
            f"natural_keys {before['natural_keys']} -> 0",
            f"counters {before['counters']} -> 0",
            f"ticket_events {before['ticket_events']} -> 0",
        )


async def test_a_start_counts_once_unless_another_start_recorded_in_between(
    mongo_url: str, raw_mongo: AsyncMongoClient[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "ledger_count_once"
    await raw_mongo.drop_database(name)
    settings = make_settings(mongo_url, name)
    calls: list[str] = []
    original_count = guard.count

    async def counting(db: Any, baseline: Any = None) -> dict[str, int]:
        calls.append(db.name)
        return await original_count(db, baseline)

    async with running(settings) as (app, _):  # the first start also gives the database its identity
        assert app.state.startup.ready
    monkeypatch.setattr(guard, "count", counting)
    async with running(settings) as (app, _):
        assert app.state.startup.ready
    assert calls == [name]  # the record step reused the guard step's counts

    # Another instance records its start while this one migrates: the ledger changed under us,
    # so the record step counts again (its counts must postdate every entry it compares with).
    original_run = runner.run

    nested: list[bool] = []

    async def migrate_while_another_records(db: Any, *args: Any, **kwargs: Any) -> Any:
        if not nested:  # the other instance migrates normally
            nested.append(True)
            other = create_app(settings)
            async with other.router.lifespan_context(other):
                assert other.state.startup.ready
        return await original_run(db, *args, **kwargs)

    monkeypatch.setattr(runner, "run", migrate_while_another_records)
    calls.clear()
    async with running(settings) as (app, _):
        assert app.state.startup.ready
    assert calls == [name, name, name]  # ours, the other instance's one, ours again
    entries = await raw_mongo[name].deploy_ledger.find({}).to_list(length=None)
    assert len(entries) == 4 and {e["outcome"] for e in entries} == {model.OK}
