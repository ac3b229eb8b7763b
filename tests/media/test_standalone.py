"""`python -m backend.media`: the fetcher as its own process. The API here runs no fetcher
(MEDIA_FETCH_ENABLED false), so a media message stays pending until the standalone process, a real
subprocess talking to the fake provider (its own process), fetches and stores its bytes."""

import asyncio
import os
import sys
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from backend.core.config import Settings
from backend.gates import EXIT_REFUSED
from tests.factories import Tenant
from tests.fakes.harness import ROOT, FakeEvolution, make_connection
from tests.media.helpers import fixture, media_of, send_media, until_media


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"MEDIA_FETCH_ENABLED": False}


def fetcher_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "ENV": "test",
        "MONGO_URL": settings.MONGO_URL,
        "MONGO_DB": settings.MONGO_DB,
        "JWT_SECRET": settings.JWT_SECRET,
        "EVOLUTION_BASE_URL": settings.EVOLUTION_BASE_URL,
        "EVOLUTION_API_KEY": settings.EVOLUTION_API_KEY,
        "MEDIA_FETCH_POLL_SECONDS": "0.1",
        "MEDIA_FETCH_LEASE_SECONDS": "10",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def log_file(log: Path) -> IO[bytes]:
    return open(log, "ab")


async def start_fetcher(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    out = log_file(log)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backend.media", cwd=ROOT, env=env, stdout=out, stderr=out
    )


async def test_the_standalone_fetcher_fetches_from_the_provider_and_stops_on_sigterm(
    client: httpx.AsyncClient,
    db: Any,
    tenant: Tenant,
    evolution: FakeEvolution,
    settings: Settings,
    tmp_path: Path,
) -> None:
    conn = await make_connection(client, tenant, evolution)
    message = await send_media(evolution, db, conn, "boleto.pdf")
    # Nothing in this test's API fetches: no attempt was claimed, the message waits.
    assert message["media"]["status"] == "pending"
    assert await db.media_fetch_attempts.count_documents({"message_id": message["_id"]}) == 0

    log = tmp_path / "fetcher.log"
    fetcher = await start_fetcher(fetcher_env(settings), log)
    try:
        await until_media(db, message["_id"], "ready")
    finally:
        fetcher.terminate()
        returncode = await asyncio.wait_for(fetcher.wait(), 30)
    assert returncode == 0, log.read_text()

    attempts = await db.media_fetch_attempts.find({"message_id": message["_id"]}).to_list(None)
    assert [a["result"] for a in attempts] == ["stored"]
    assert attempts[0]["worker"].split(":")[1] == str(fetcher.pid)
    fetches = await evolution.control("GET", "media_fetches")
    assert [f for f in fetches if f["body"]["message"]["key"]["id"] == message["key_id"]]
    shown = await media_of(client, tenant.headers, message)
    assert shown["media"]["status"] == "ready" and shown["media"]["name"] == "boleto.pdf"
    r = await client.get(shown["media"]["url"], headers=tenant.headers)
    assert r.status_code == 200 and r.content == fixture("boleto.pdf")


async def test_the_standalone_fetcher_passes_the_start_up_gate(
    db: Any, settings: Settings, tmp_path: Path, mongo_url: str
) -> None:
    """Pointed at a database its ledger file does not know, it exits refused, having fetched nothing."""
    from backend.app import create_app
    from tests.conftest import make_settings

    ledger = str(tmp_path / "foreign-ledger.jsonl")
    other = create_app(make_settings(mongo_url, f"media_gate_{os.getpid()}", LEDGER_FILE=ledger))
    async with other.router.lifespan_context(other):
        assert other.state.startup.ready, other.state.startup.errors
    before = await db.media_fetch_attempts.count_documents({})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "backend.media",
        cwd=ROOT,
        env=fetcher_env(settings, LEDGER_FILE=ledger, MONGO_TIMEOUT_MS="3000"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == EXIT_REFUSED, stderr.decode()
    assert "refusing to start: ledger-guard:" in stderr.decode()
    assert await db.media_fetch_attempts.count_documents({}) == before
