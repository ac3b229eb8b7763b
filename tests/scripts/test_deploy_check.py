"""deploy_check snapshot/verify against a real MongoDB-protocol server, run as the CLI operators run."""

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.app import create_app
from backend.core.config import Settings
from tests.conftest import make_settings
from tests.factories import API, Tenant, assume, make_tenant, make_ticket
from tests.scripts.cli import Result, env_for, run_cli

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def settings(mongo_url: str, db_name: str) -> Settings:
    """These tests damage the store behind the backend's back on purpose; the projection sweep
    (which would roll a ticket forward from its log) stays out of their way."""
    return make_settings(mongo_url, db_name, TICKET_SWEEP_ENABLED=False)


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    """Tickets in every state with messages, the shape the seed's ANTES/APÓS talks about."""
    t = await make_tenant(client, admin_headers, agents=2)
    agent = t.agents[0]["headers"]
    for i in range(9):
        ticket = await make_ticket(client, t, message=f"mensagem {i}")
        if i % 3 >= 1:
            await assume(client, agent, ticket["id"])
        if i % 3 == 2:
            r = await client.post(f"{API}/tickets/{ticket['id']}/finalize", headers=agent)
            assert r.status_code == 200, r.text
    return t


async def _snapshot(env: dict[str, str], tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    path = tmp_path / "before.json"
    res = await run_cli("scripts.deploy_check", "snapshot", "--out", str(path), env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    return path, json.loads(path.read_text())


async def _verify(env: dict[str, str], tmp_path: Path, path: Path) -> Result:
    return await run_cli("scripts.deploy_check", "verify", "--against", str(path), env=env, cwd=tmp_path)


async def _ticket_in(db: Any, status: str) -> dict[str, Any]:
    doc = await db.tickets.find_one({"status": status})
    assert doc is not None, f"fixture has no {status} ticket"
    return dict(doc)


async def test_help_and_usage_errors(tmp_path: Path, mongo_url: str, db_name: str) -> None:
    env = env_for(mongo_url, db_name)
    res = await run_cli("scripts.deploy_check", "--help", env=env, cwd=tmp_path)
    assert res.code == 0 and "snapshot" in res.stdout and "verify" in res.stdout
    res = await run_cli("scripts.deploy_check", "verify", "--against", "missing.json", env=env, cwd=tmp_path)
    assert res.code == 4 and "cannot read snapshot" in res.stderr
    res = await run_cli("scripts.deploy_check", "verify", env=env, cwd=tmp_path)
    assert res.code == 2 and "--against" in res.stderr


async def test_clean_deploy_passes_and_prints_before_after(
    tenant: Tenant, mongo_url: str, db_name: str, db: Any, tmp_path: Path
) -> None:
    env = env_for(mongo_url, db_name)
    path, snap = await _snapshot(env, tmp_path)
    assert snap["tickets_by_state"]["espera"] >= 3
    assert snap["tickets_by_state"]["atendendo"] >= 3
    assert snap["tickets_by_state"]["finalizado"] >= 3
    assert snap["collections"]["messages"] >= 9
    assert snap["fingerprint"]["tickets"] == snap["collections"]["tickets"]
    assert await db.deploy_checks.find_one({"_id": f"snapshot:{snap['id']}"}) is not None

    # The deploy: a new backend process starts against the same database and runs its start-up steps.
    fresh = create_app(make_settings(mongo_url, db_name))
    async with fresh.router.lifespan_context(fresh):
        assert fresh.state.startup.ready, fresh.state.startup.errors

    res = await _verify(env, tmp_path, path)
    assert res.code == 0, res.output
    assert "ANTES" in res.stdout and "APÓS" in res.stdout
    assert "Tickets em espera" in res.stdout and "MANTIDO" in res.stdout
    assert "OK" in res.stdout


async def test_live_traffic_between_snapshot_and_verify_passes(
    tenant: Tenant, client: httpx.AsyncClient, mongo_url: str, db_name: str, db: Any, tmp_path: Path
) -> None:
    env = env_for(mongo_url, db_name)
    path, _ = await _snapshot(env, tmp_path)
    agent, other = tenant.agents[0], tenant.agents[1]
    waiting = await _ticket_in(db, "espera")
    handled = await db.tickets.find_one({"status": "atendendo", "agent_id": agent["id"]})
    assert handled is not None

    async def traffic() -> None:
        await assume(client, agent["headers"], waiting["_id"])
        r = await client.post(
            f"{API}/tickets/{handled['_id']}/transfer", json={"agent_id": other["id"]}, headers=agent["headers"]
        )
        assert r.status_code == 200, r.text
        r = await client.post(f"{API}/tickets/{waiting['_id']}/finalize", headers=agent["headers"])
        assert r.status_code == 200, r.text
        fresh = await make_ticket(client, tenant, message="chegou durante o deploy")
        await assume(client, agent["headers"], fresh["id"])
        # A note: this ticket has no WhatsApp connection, where replies are refused.
        r = await client.post(f"{API}/tickets/{fresh['id']}/notes", json={"body": "oi"}, headers=agent["headers"])
        assert r.status_code in (200, 201), r.text

    # Traffic and the check run at the same time, as they do when a rolling deploy is verified.
    res, _ = await asyncio.gather(_verify(env, tmp_path, path), traffic())
    assert res.code == 0, res.output
    res = await _verify(env, tmp_path, path)
    assert res.code == 0, res.output
    assert "moved by events after the snapshot" in res.stdout
    assert "1 new tickets" in res.stdout


async def test_reopened_finalizado_ticket_fails(mongo_url: str, db_name: str, db: Any, tmp_path: Path) -> None:
    env = env_for(mongo_url, db_name)
    path, _ = await _snapshot(env, tmp_path)
    closed = await _ticket_in(db, "finalizado")
    # What a buggy migration would do: reopen a closed conversation behind the event log's back.
    await db.tickets.update_one({"_id": closed["_id"]}, {"$set": {"status": "espera", "finalized_at": None}})
    try:
        res = await _verify(env, tmp_path, path)
        assert res.code == 1, res.output
        assert f"ticket {closed['_id']}: finalizado ticket reopened as espera" in res.stdout
        assert "FAILED" in res.stdout
    finally:
        await db.tickets.update_one({"_id": closed["_id"]}, {"$set": closed})


async def test_ticket_moved_without_an_event_fails(mongo_url: str, db_name: str, db: Any, tmp_path: Path) -> None:
    env = env_for(mongo_url, db_name)
    path, _ = await _snapshot(env, tmp_path)
    waiting = await _ticket_in(db, "espera")
    await db.tickets.update_one({"_id": waiting["_id"]}, {"$set": {"status": "finalizado"}})
    bumped = await _ticket_in(db, "atendendo")
    # A version bump with no event behind it is not an explanation either.
    await db.tickets.update_one({"_id": bumped["_id"]}, {"$set": {"status": "espera", "agent_id": None, "version": 99}})
    try:
        res = await _verify(env, tmp_path, path)
        assert res.code == 1, res.output
        assert f"ticket {waiting['_id']}: state changed from espera to finalizado without a new version" in res.stdout
        assert f"ticket {bumped['_id']}: version {bumped['version'] + 1} has no ticket_events entry" in res.stdout
    finally:
        await db.tickets.update_one({"_id": waiting["_id"]}, {"$set": waiting})
        await db.tickets.update_one({"_id": bumped["_id"]}, {"$set": bumped})


async def test_a_ticket_stored_behind_its_log_is_not_a_version_going_back(
    tenant: Tenant, mongo_url: str, db_name: str, db: Any, tmp_path: Path
) -> None:
    """On FerretDB a concurrent whole-document write-back can leave a ticket a moment behind its
    ticket_events (an older version and status); the check reads it as its log says."""
    env = env_for(mongo_url, db_name)
    path, _ = await _snapshot(env, tmp_path)
    held = await _ticket_in(db, "atendendo")
    before = await db.ticket_events.find_one({"ticket_id": held["_id"], "version": held["version"] - 1})
    assert before is not None
    await db.tickets.update_one({"_id": held["_id"]}, {"$set": {**before["state"], "version": before["version"]}})
    try:
        res = await _verify(env, tmp_path, path)
        assert res.code == 0, res.output
        assert "went back" not in res.stdout
        assert "1 ticket(s) stored a moment behind their ticket_events" in res.stdout
    finally:
        await db.tickets.update_one({"_id": held["_id"]}, {"$set": held})


async def test_deleted_documents_fail(mongo_url: str, db_name: str, db: Any, tmp_path: Path) -> None:
    env = env_for(mongo_url, db_name)
    path, snap = await _snapshot(env, tmp_path)
    lost_ticket = await _ticket_in(db, "atendendo")
    lost_message = await db.messages.find_one({})
    assert lost_message is not None
    await db.tickets.delete_one({"_id": lost_ticket["_id"]})
    await db.messages.delete_one({"_id": lost_message["_id"]})
    try:
        res = await _verify(env, tmp_path, path)
        assert res.code == 1, res.output
        assert f"ticket {lost_ticket['_id']}: missing (was atendendo)" in res.stdout
        n = snap["collections"]["messages"]
        assert f"collection messages: {n} before, {n - 1} now (1 missing)" in res.stdout
        assert "❌ MENOR" in res.stdout
    finally:
        await db.tickets.insert_one(lost_ticket)
        await db.messages.insert_one(lost_message)
    res = await _verify(env, tmp_path, path)
    assert res.code == 0, res.output


async def test_swapped_empty_database_fails(mongo_url: str, db_name: str, tmp_path: Path) -> None:
    path, snap = await _snapshot(env_for(mongo_url, db_name), tmp_path)
    swapped = env_for(mongo_url, db_name + "_swap")
    res = await _verify(swapped, tmp_path, path)
    assert res.code == 1, res.output
    assert f"no deploy_checks entry for snapshot {snap['id']}" in res.stdout
    assert f"collection tickets: {snap['collections']['tickets']} before, 0 now" in res.stdout
    assert "missing (was finalizado)" in res.stdout


async def test_edited_fingerprint_is_refused(mongo_url: str, db_name: str, tmp_path: Path) -> None:
    env = env_for(mongo_url, db_name)
    path, snap = await _snapshot(env, tmp_path)
    fp = tmp_path / snap["fingerprint"]["file"]
    import gzip

    lines = gzip.decompress(fp.read_bytes()).decode().splitlines(keepends=True)
    fp.write_bytes(gzip.compress("".join(lines[:-1]).encode()))  # drop the last ticket: hides a loss
    res = await _verify(env, tmp_path, path)
    assert res.code == 4 and "does not match the snapshot's checksum" in res.stderr
