"""Item 1: seed through the API with one build, deploy a different build on the same database,
then restart the database process on the same data directory: nothing lost, nothing moved.

The old build is the previous commit (`git archive HEAD~1` into a temp dir: read-only for the
repository). Without git history (a shallow or exported tree) it is the current code under a
different APP_VERSION, and the test says so in its output."""

import asyncio
import io
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.factories import Tenant, login, make_client, make_tenant
from tests.persistence.procs import ROOT, Backend, Ferret

pytestmark = pytest.mark.slow

DB = "redeploy"
# Must be identical before and after; everything else may only grow (ledger, migrations, logins).
EXACT = (
    "tickets",
    "messages",
    "users",
    "departments",
    "reseller_configs",
    "whatsapp_connections",
    "resellers",
    "ticket_events",
)


def previous_build(dest: Path) -> str | None:
    """Extracts HEAD~1 into dest; returns its short hash, or None when there is no history."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD~1"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        archive = subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return rev


async def seed(http: httpx.AsyncClient) -> list[Tenant]:
    admin = await login(http, ADMIN_EMAIL, ADMIN_PASSWORD)
    tenants = []
    for _ in range(2):
        tenant = await make_tenant(http, admin, departments=2, agents=3)
        tenants.append(tenant)
        for i in range(9):
            customer = await make_client(http, tenant)
            dept = tenant.departments[i % 2]["id"]
            r = await http.post(
                "/api/v1/tickets",
                json={"client_id": customer["id"], "department_id": dept, "message": f"olá {i}"},
                headers=tenant.headers,
            )
            assert r.status_code == 201, r.text
            tid = r.json()["id"]
            if i % 3 == 0:
                continue  # stays in espera
            agent = tenant.agents[i % 3]
            assert (await http.post(f"/api/v1/tickets/{tid}/assume", headers=agent["headers"])).status_code == 200
            for j in range(i % 3 + 1):
                # Notes: these tickets have no WhatsApp connection, where replies are refused.
                r = await http.post(
                    f"/api/v1/tickets/{tid}/notes", json={"body": f"resposta {j}"}, headers=agent["headers"]
                )
                assert r.status_code == 201, r.text
            if i % 3 == 2:
                assert (await http.post(f"/api/v1/tickets/{tid}/finalize", headers=agent["headers"])).status_code == 200
            elif i == 4:  # back to the other department's queue: espera with history
                r = await http.post(
                    f"/api/v1/tickets/{tid}/transfer",
                    json={"department_id": tenant.departments[1]["id"]},
                    headers=agent["headers"],
                )
                assert r.status_code == 200, r.text
    return tenants


async def snapshot(mongo: AsyncMongoClient[dict[str, Any]]) -> dict[str, Any]:
    db = mongo[DB]
    names = await db.list_collection_names()
    tickets = {
        t["_id"]: {k: t.get(k) for k in ("status", "agent_id", "department_id", "version", "number", "finalized_at")}
        for t in await db.tickets.find({}).to_list(length=None)
    }
    messages = {
        m["_id"]: (m["ticket_id"], m["body"], m["created_at"]) for m in await db.messages.find({}).to_list(length=None)
    }
    events = sorted(e["_id"] for e in await db.ticket_events.find({}, {"_id": 1}).to_list(length=None))
    counts = {n: await db[n].count_documents({}) for n in sorted(set(names) | set(EXACT))}
    return {"counts": counts, "tickets": tickets, "messages": messages, "events": events}


async def api_view(base_url: str, tenants: list[Tenant]) -> dict[str, Any]:
    view: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        for t in tenants:
            r = await http.get("/api/v1/tickets/counts", headers=t.headers)
            assert r.status_code == 200, r.text
            view[t.id] = r.json()
    return view


def assert_same(before: dict[str, Any], after: dict[str, Any], stage: str) -> None:
    for name in EXACT:
        assert after["counts"][name] == before["counts"][name], f"{stage}: {name} count changed"
    for name, n in before["counts"].items():
        assert after["counts"].get(name, 0) >= n, f"{stage}: {name} shrank {n} -> {after['counts'].get(name)}"
    assert after["tickets"] == before["tickets"], f"{stage}: a ticket moved or vanished"
    assert after["messages"] == before["messages"], f"{stage}: a message changed or vanished"
    assert after["events"] == before["events"], f"{stage}: the audit log changed"


async def test_redeploy_and_database_restart_keep_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old_dir = tmp_path / "old-build"
    rev = previous_build(old_dir)
    mode = f"previous commit {rev}" if rev else "same code, different APP_VERSION (no git history here)"
    ferret = Ferret(tmp_path / "ferretdb")
    ferret.start()
    ledger = {"LEDGER_FILE": str(tmp_path / "ledger.jsonl")}
    old = Backend(
        ferret.url, DB, tmp_path / "old.log", version="old", code_dir=old_dir if rev else ROOT, extra_env=ledger
    )
    new = Backend(ferret.url, DB, tmp_path / "new.log", version="new", extra_env=ledger)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(ferret.url, tz_aware=True)
    try:
        await asyncio.to_thread(old.start)
        async with httpx.AsyncClient(base_url=old.base_url, timeout=30) as http:
            tenants = await seed(http)
        api_before = await api_view(old.base_url, tenants)
        await asyncio.to_thread(old.stop)
        before = await snapshot(mongo)
        assert {t["status"] for t in before["tickets"].values()} == {"espera", "atendendo", "finalizado"}

        await asyncio.to_thread(new.start)
        async with httpx.AsyncClient(base_url=new.base_url) as http:
            assert (await http.get("/health")).json()["version"] == "new"
        assert await api_view(new.base_url, tenants) == api_before
        assert_same(before, await snapshot(mongo), "after redeploy")

        ferret.stop()  # the database process itself restarts on the same data directory
        ferret.start()
        await asyncio.to_thread(new.wait_ready)
        assert await api_view(new.base_url, tenants) == api_before
        assert_same(before, await snapshot(mongo), "after database restart")

        await asyncio.to_thread(new.stop)  # and one more start: the ledger guard agrees
        await asyncio.to_thread(new.start)
        assert_same(before, await snapshot(mongo), "after second start")
        outcomes = [e["outcome"] for e in await mongo[DB].deploy_ledger.find({}).sort("_id", 1).to_list(None)]
        assert outcomes and set(outcomes) == {"ok"}
        with capsys.disabled():
            c = before["counts"]
            print(
                f"\n[redeploy] old build: {mode}; tickets={c['tickets']} messages={c['messages']} "
                f"users={c['users']} events={c['ticket_events']} unchanged after redeploy, database restart, restart"
            )
    finally:
        await mongo.close()
        old.stop()
        new.stop()
        ferret.stop()
