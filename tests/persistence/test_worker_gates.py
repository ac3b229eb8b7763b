"""The standalone workers pass the API's start-up gate: pointed at a database the deploy ledger
does not recognise, `python -m backend.outbound` and `python -m backend.webhooks` exit
non-zero with the API's message and send or process nothing."""

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.app import create_app
from backend.core.config import Settings
from backend.gates import EXIT_REFUSED
from tests.conftest import make_settings
from tests.factories import make_tenant
from tests.fakes.harness import (
    ROOT,
    FakeEvolution,
    app,
    backend_port,
    evolution,
    make_connection,
    settings,
    wait_for,
)
from tests.outbound.helpers import held_ticket, unsigned

__all__ = ["app", "backend_port", "evolution", "settings"]


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"OUTBOUND_WORKER_ENABLED": False}  # replies stay queued until a standalone worker runs


def worker_env(settings: Settings, ledger_file: str) -> dict[str, str]:
    return {
        **os.environ,
        "ENV": "test",
        "MONGO_URL": settings.MONGO_URL,
        "MONGO_DB": settings.MONGO_DB,
        "MONGO_TIMEOUT_MS": "3000",
        "JWT_SECRET": settings.JWT_SECRET,
        "EVOLUTION_BASE_URL": settings.EVOLUTION_BASE_URL,
        "EVOLUTION_API_KEY": settings.EVOLUTION_API_KEY,
        "OUTBOUND_POLL_SECONDS": "0.1",
        "OUTBOUND_WORKER_ENABLED": "true",
        "WEBHOOK_POLL_SECONDS": "0.1",
        "LEDGER_FILE": ledger_file,
        "LOG_LEVEL": "WARNING",
    }


async def run_worker(module: str, env: dict[str, str]) -> tuple[int, str]:
    """Runs a worker to its end (a refused one exits at once); the event loop keeps serving the
    in-process API meanwhile."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, stderr.decode()


@pytest.fixture(scope="module")
async def foreign_ledger(mongo_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A ledger file that has seen another database (the one a deployment's volume guards)."""
    path = str(tmp_path_factory.mktemp("ledger") / "deploy-ledger.jsonl")
    other = create_app(make_settings(mongo_url, f"gate_known_{os.getpid()}", LEDGER_FILE=path))
    async with other.router.lifespan_context(other):
        assert other.state.startup.ready, other.state.startup.errors
    return path


async def test_outbound_worker_refuses_an_unrecognised_database_and_sends_nothing(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    foreign_ledger: str,
    tmp_path: Path,
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    r = await client.post(f"/api/v1/tickets/{ticket_id}/messages", json={"body": "já recebida?"}, headers=agent)
    assert r.status_code == 201 and r.json()["status"] == "pending"
    reply = r.json()["id"]

    returncode, stderr = await run_worker("backend.outbound", worker_env(settings, foreign_ledger))
    assert returncode == EXIT_REFUSED, stderr
    assert "refusing to start: ledger-guard:" in stderr
    assert "the deploy ledger file guards database 'gate_known_" in stderr
    assert f"this is database '{settings.MONGO_DB}'" in stderr
    assert [s for s in await evolution.sent() if s["number"] == phone] == []
    assert await db.outbox_attempts.count_documents({"message_id": reply}) == 0
    assert (await db.messages.find_one({"_id": reply}))["status"] == "pending"

    # The same worker on a ledger that knows this database sends it: the refusal was the gate.
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "backend.outbound",
        cwd=ROOT,
        env=worker_env(settings, str(tmp_path / "own-ledger.jsonl")),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_for(lambda: db.messages.find_one({"_id": reply, "status": "sent"}), timeout=60)
    finally:
        worker.terminate()
        assert await asyncio.wait_for(worker.wait(), 30) == 0
    assert [unsigned(s["text"]) for s in await evolution.sent() if s["number"] == phone] == ["já recebida?"]


async def test_webhook_processor_refuses_an_unrecognised_database(settings: Settings, foreign_ledger: str) -> None:
    returncode, stderr = await run_worker("backend.webhooks", worker_env(settings, foreign_ledger))
    assert returncode == EXIT_REFUSED, stderr
    assert "refusing to start: ledger-guard:" in stderr and "guards database 'gate_known_" in stderr


async def test_the_reprocess_script_refuses_an_unrecognised_database(
    settings: Settings, foreign_ledger: str, db: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from scripts.reprocess_webhooks import GATE_REFUSED, _run

    before = await db.webhook_events_raw.count_documents({"status": "processed"})
    refused = settings.model_copy(update={"LEDGER_FILE": foreign_ledger})
    assert await _run(refused, None, 100, False, None) == GATE_REFUSED
    assert "refusing to start: ledger-guard:" in capsys.readouterr().err
    assert await db.webhook_events_raw.count_documents({"status": "processed"}) == before
