"""Media survive what data must survive: a backend restart (a new process), backup → restore into
a scratch database, and the deploy check, each compared byte for byte."""

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.media import service as media
from backend.messages.schemas import media_url
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.factories import Tenant, login, make_tenant
from tests.fakes.harness import FakeEvolution, make_connection
from tests.media.helpers import fixture, send_media, until_media
from tests.persistence.procs import Backend
from tests.scripts.cli import env_for, run_cli

FILES = ("photo.png", "voice.ogg", "boleto.pdf", "evil.html")


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"MEDIA_FETCH_POLL_SECONDS": 0.1}


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=0)


@pytest.fixture(scope="module")
async def stored(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, evolution: FakeEvolution
) -> dict[str, dict[str, Any]]:
    """Each fixture file received once (half inline, half fetched), its bytes stored."""
    conn = await make_connection(client, tenant, evolution)
    messages = {}
    for i, name in enumerate(FILES):
        message = await send_media(evolution, db, conn, name, inline=bool(i % 2))
        messages[name] = await until_media(db, message["_id"], "ready")
    return messages


async def test_downloads_are_identical_from_a_restarted_backend(
    stored: dict[str, dict[str, Any]], mongo_url: str, db_name: str, tmp_path: Path
) -> None:
    backend = Backend(mongo_url, db_name, tmp_path / "backend.log", extra_env={"MEDIA_FETCH_ENABLED": "false"})
    backend.start()
    try:
        async with httpx.AsyncClient(base_url=backend.base_url, timeout=60) as fresh:
            headers = await login(fresh, ADMIN_EMAIL, ADMIN_PASSWORD)
            for name, message in stored.items():
                r = await fresh.get(media_url(message["_id"]), headers=headers)
                assert r.status_code == 200, (name, r.text)
                assert r.content == fixture(name), name
    finally:
        backend.stop()


async def test_backup_then_restore_into_a_scratch_database_keeps_every_byte(
    stored: dict[str, dict[str, Any]], mongo_url: str, db_name: str, raw_mongo: Any, tmp_path: Path
) -> None:
    backups = tmp_path / "backups"
    env = env_for(mongo_url, db_name, BACKUP_DIR=str(backups), BACKUP_TOOL="python")
    res = await run_cli("scripts.backup", "run", env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    [manifest_path] = backups.glob("*.manifest.json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["counts"]["media"] >= len(FILES) and manifest["counts"]["media.files"] >= len(FILES)
    assert manifest["counts"]["media.chunks"] >= len(FILES)
    scratch = f"{db_name}_media_restore"
    archive = backups / manifest["archive"]
    res = await run_cli("scripts.restore", str(archive), "--into", scratch, env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    restored = raw_mongo[scratch]
    for name, message in stored.items():
        got = await media.read_bytes(restored, reseller_id=message["reseller_id"], sha256=message["media"]["sha256"])
        assert got == fixture(name), name
    res = await run_cli("scripts.backup", "verify", env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    assert "every sha256 matches" in res.stdout
    [verified] = [json.loads(p.read_text()) for p in backups.glob("*.verified.json")]
    assert verified["ok"] is True and verified["media"]["files"] >= len(FILES) and not verified["media"]["problems"]


async def test_deploy_check_reads_media_back(
    stored: dict[str, dict[str, Any]], mongo_url: str, db_name: str, tmp_path: Path
) -> None:
    env = env_for(mongo_url, db_name)
    snap = tmp_path / "snap.json"
    res = await run_cli("scripts.deploy_check", "snapshot", "--out", str(snap), env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    taken = json.loads(snap.read_text())
    assert len(taken["media"]) >= len(FILES) and taken["collections"]["media.files"] >= len(FILES)
    res = await run_cli("scripts.deploy_check", "verify", "--against", str(snap), env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    assert "Anexo baixa idêntico" in res.stdout and "idênticos" in res.stdout


async def test_backup_verify_and_deploy_check_catch_corrupted_bytes(
    stored: dict[str, dict[str, Any]], mongo_url: str, db_name: str, db: Any, tmp_path: Path
) -> None:
    env = env_for(mongo_url, db_name)
    snap = tmp_path / "snap.json"
    assert (await run_cli("scripts.deploy_check", "snapshot", "--out", str(snap), env=env, cwd=tmp_path)).code == 0
    # Test-only sabotage of the store (the application never rewrites a chunk): one byte flipped.
    message = stored["boleto.pdf"]
    record = await db["media"].find_one({"_id": f"{message['reseller_id']}:{message['media']['sha256']}"})
    chunk = await db["media.chunks"].find_one({"files_id": record["file_id"], "n": 0})
    data = bytearray(chunk["data"])
    data[10] ^= 0xFF
    await db["media.chunks"].update_one({"_id": chunk["_id"]}, {"$set": {"data": bytes(data)}})
    res = await run_cli("scripts.deploy_check", "verify", "--against", str(snap), env=env, cwd=tmp_path)
    assert res.code == 1, res.output
    assert hashlib.sha256(fixture("boleto.pdf")).hexdigest() in res.output
    backups = tmp_path / "backups"
    env = env_for(mongo_url, db_name, BACKUP_DIR=str(backups), BACKUP_TOOL="python")
    assert (await run_cli("scripts.backup", "run", env=env, cwd=tmp_path)).code == 0
    res = await run_cli("scripts.backup", "verify", env=env, cwd=tmp_path)
    assert res.code != 0 and "bytes differ" in res.output
