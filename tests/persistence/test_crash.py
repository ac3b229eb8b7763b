"""Item 2: SIGKILL the backend, and in other rounds FerretDB, while a load generator writes; after
each restart every acknowledged (2xx) write is stored and no ticket contradicts its events."""

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.factories import login, make_tenant
from tests.persistence import load
from tests.persistence.procs import Backend, Ferret

pytestmark = pytest.mark.slow

# (what to kill, seconds of load before the kill). Varying moments: early in a cycle, mid-stream.
ROUNDS = [
    ("backend", 1.5),
    ("ferretdb", 2.0),
    ("backend", 3.5),
    ("ferretdb", 1.0),
    ("backend", 2.5),
    ("backend", 0.6),
    ("ferretdb", 3.0),
]
WORKERS = 6


async def _round(
    n: int, target: str, delay: float, backend: Backend, ferret: Ferret, tenant: Any, acks: load.Acks
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(load.run(backend.base_url, tenant, acks, stop, workers=WORKERS, seed=n))
    await asyncio.sleep(delay)
    if target == "backend":
        backend.kill()
        stop.set()
        await task
        await asyncio.to_thread(backend.start)
    else:
        ferret.kill()
        await asyncio.sleep(0.5)  # requests fail meanwhile: not acknowledged, no promise
        await asyncio.to_thread(ferret.start)
        await asyncio.sleep(0.5)  # the backend reconnects by itself and writes again
        stop.set()
        await task
        await asyncio.to_thread(backend.wait_ready)


async def test_acknowledged_writes_survive_sigkill_of_backend_and_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ferret = Ferret(tmp_path / "ferretdb")
    ferret.start()
    backend = Backend(ferret.url, "crash", tmp_path / "backend.log", extra_env={"LEDGER_FILE": str(tmp_path / "l")})
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(ferret.url, tz_aware=True)
    try:
        await asyncio.to_thread(backend.start)
        async with httpx.AsyncClient(base_url=backend.base_url, timeout=30) as http:
            admin = await login(http, ADMIN_EMAIL, ADMIN_PASSWORD)
            tenant = await make_tenant(http, admin, departments=1, agents=4)
        acks = load.Acks()
        per_round = []
        for n, (target, delay) in enumerate(ROUNDS, start=1):
            before = acks.requests
            await _round(n, target, delay, backend, ferret, tenant, acks)
            async with httpx.AsyncClient(base_url=backend.base_url, timeout=30) as http:
                report = await load.verify(mongo, "crash", acks, http, tenant.headers)
            assert report.missing == [], f"round {n} ({target}): acknowledged but missing: {report.missing}"
            assert report.contradictions == [], f"round {n} ({target}): {report.contradictions}"
            per_round.append(f"{n}:{target}@{delay}s +{acks.requests - before}")

        entries = await mongo["crash"].deploy_ledger.find({}).to_list(length=None)
        starts = 1 + sum(t == "backend" for t, _ in ROUNDS)
        assert len(entries) == starts and {e["outcome"] for e in entries} == {"ok"}
        assert acks.requests > 0 and acks.messages and acks.assumed and acks.finalized
        with capsys.disabled():
            print(
                f"\n[crash] rounds={len(ROUNDS)} (backend kills={sum(t == 'backend' for t, _ in ROUNDS)}, "
                f"ferretdb kills={sum(t == 'ferretdb' for t, _ in ROUNDS)}) acknowledged={acks.requests} "
                f"(clients={len(acks.clients)} tickets={len(acks.tickets)} messages={len(acks.messages)} "
                f"assumes={len(acks.assumed)} finalizes={len(acks.finalized)}) not-acknowledged={acks.failures} "
                f"acknowledged-but-missing=0 contradictions=0 per-round=[{', '.join(per_round)}]"
            )
    finally:
        await mongo.close()
        backend.stop()
        ferret.stop()
