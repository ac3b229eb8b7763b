"""Evolution's Redis (the WhatsApp sessions' Baileys signal keys) in every backup, against a real
redis-server and a real MongoDB-protocol server, run as the CLIs operators run."""

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from scripts import evolution_redis
from tests.factories import Tenant, make_tenant, make_ticket
from tests.scripts.cli import env_for, run_cli
from tests.scripts.redis_server import keys_in, redis_server, seed_keys

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def evolution_redis_url() -> Iterator[str]:
    yield from redis_server()


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    t = await make_tenant(client, admin_headers, agents=0)
    await make_ticket(client, t, message="oi")
    return t


def _newest(out: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(sorted(out.glob("iaze-*.manifest.json"))[-1].read_text())
    return manifest


async def test_backup_keeps_the_signal_keys_and_restore_puts_back_only_missing_ones(
    tenant: Tenant, evolution_redis_url: str, mongo_url: str, db_name: str, tmp_path: Path
) -> None:
    keys = seed_keys(evolution_redis_url)
    out = tmp_path / "backups"
    env = env_for(
        mongo_url, db_name, BACKUP_DIR=str(out), BACKUP_TOOL="python", BACKUP_EVOLUTION_REDIS_URL=evolution_redis_url
    )
    res = await run_cli("scripts.backup", "run", env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    manifest = _newest(out)
    rm = manifest["evolution_redis"]
    assert rm["archive"] == manifest["archive"].replace(".archive.gz", evolution_redis.SUFFIX)
    # Only the auth-state hashes under the pattern; the plain string and the other module are not sessions.
    assert set(rm["keys"]) == {k.decode() for k in keys} and rm["skipped_not_hash"] == 1
    assert rm["keys"]["evolution:instance:cm1abc"]["fields"] == 4

    res = await run_cli("scripts.backup", "verify", env=env, cwd=tmp_path)
    assert res.code == 0 and "OK" in res.stdout, res.output

    # Redis lost one instance's keys; the other instance kept running and changed a key since.
    client = redis.Redis.from_url(evolution_redis_url)
    client.delete(b"evolution:instance:cm1abc")
    client.hset(b"evolution:instance:cm2def", b"sender-key-x", b"newer")
    client.close()
    res = await run_cli("scripts.backup", "restore-evolution-redis", env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    assert "1 keys restored" in res.stdout and "kept as it is (already there): evolution:instance:cm2def" in res.stdout
    now = keys_in(evolution_redis_url)
    assert now[b"evolution:instance:cm1abc"] == keys[b"evolution:instance:cm1abc"]  # byte for byte
    assert now[b"evolution:instance:cm2def"][b"sender-key-x"] == b"newer"  # never overwritten


async def test_verify_detects_damaged_truncated_or_tampered_keys(
    tenant: Tenant, evolution_redis_url: str, mongo_url: str, db_name: str, tmp_path: Path
) -> None:
    seed_keys(evolution_redis_url)
    out = tmp_path / "backups"
    env = env_for(
        mongo_url, db_name, BACKUP_DIR=str(out), BACKUP_TOOL="python", BACKUP_EVOLUTION_REDIS_URL=evolution_redis_url
    )
    res = await run_cli("scripts.backup", "run", env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    rm = _newest(out)["evolution_redis"]
    path = out / rm["archive"]
    whole = path.read_bytes()

    path.write_bytes(whole[: len(whole) // 2])
    res = await run_cli("scripts.backup", "verify", env=env, cwd=tmp_path)
    assert res.code == 4 and f"{rm['archive']} is missing or does not match its sha256" in res.stderr, res.output
    checked, _ = evolution_redis.check(out, {**rm, "sha256": evolution_redis.sha256_of(path)})
    assert checked.corrupt and "does not read back" in checked.problems[0]

    # Well-formed, checksum to match, one key's content changed: only the per-key hash can tell.
    lines = gzip.decompress(whole).decode().splitlines()
    first = json.loads(lines[0])
    first["fields"]["pre-key-1"] = "someone else's key"
    path.write_bytes(gzip.compress(("\n".join([json.dumps(first), *lines[1:]]) + "\n").encode()))
    checked, _ = evolution_redis.check(out, {**rm, "sha256": evolution_redis.sha256_of(path)})
    assert not checked.corrupt and checked.problems == [f"evolution redis: {first['key']} differs from the manifest"]


async def test_retention_deletes_the_keys_of_a_pruned_backup_with_it(
    tenant: Tenant, evolution_redis_url: str, mongo_url: str, db_name: str, tmp_path: Path
) -> None:
    seed_keys(evolution_redis_url)
    out = tmp_path / "backups"
    env = env_for(
        mongo_url, db_name, BACKUP_DIR=str(out), BACKUP_TOOL="python", BACKUP_EVOLUTION_REDIS_URL=evolution_redis_url
    )
    for _ in range(2):
        res = await run_cli("scripts.backup", "run", "--no-prune", env=env, cwd=tmp_path)
        assert res.code == 0, res.output
    assert len(list(out.glob(f"*{evolution_redis.SUFFIX}"))) == 2
    res = await run_cli("scripts.backup", "prune", "--keep-daily", "0", "--keep-weekly", "0", env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    newest = _newest(out)["evolution_redis"]["archive"]
    assert [p.name for p in out.glob(f"*{evolution_redis.SUFFIX}*")] in (
        [newest, f"{newest}.sha256"],
        [f"{newest}.sha256", newest],
    )
