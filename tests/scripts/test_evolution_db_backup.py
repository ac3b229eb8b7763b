"""Evolution's PostgreSQL (the WhatsApp sessions' Baileys credentials) in every backup, against a
real PostgreSQL cluster and a real MongoDB-protocol server, run as the CLIs operators run."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scripts import evolution_db
from tests.factories import Tenant, make_tenant, make_ticket
from tests.scripts import pg
from tests.scripts.cli import env_for, run_cli

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def cluster() -> Iterator[pg.Cluster]:
    yield from pg.cluster()


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    t = await make_tenant(client, admin_headers, agents=0)
    await make_ticket(client, t, message="oi")
    return t


def _env(mongo_url: str, db_name: str, out: Path, evolution_url: str, **extra: str) -> dict[str, str]:
    return env_for(
        mongo_url,
        db_name,
        BACKUP_DIR=str(out),
        BACKUP_TOOL="python",
        BACKUP_EVOLUTION_DATABASE_URL=evolution_url,
        **extra,
    )


def _newest(out: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(sorted(out.glob("iaze-*.manifest.json"))[-1].read_text())
    return manifest


async def test_backup_dumps_verifies_and_restores_the_sessions_credentials(
    tenant: Tenant, cluster: pg.Cluster, mongo_url: str, db_name: str, tmp_path: Path
) -> None:
    creds = pg.seed_sessions(cluster, "evo_a")
    out = tmp_path / "backups"
    env = _env(mongo_url, db_name, out, cluster.url("evo_a"))
    res = await run_cli("scripts.backup", "run", env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    manifest = _newest(out)
    em = manifest["evolution_db"]
    # Beside the mongodump archive, rows counted back from the dump itself.
    assert em["archive"] == manifest["archive"].replace(".archive.gz", evolution_db.SUFFIX)
    assert em["counts"] == {"Instance": 2, "Session": 2} and em["schema"] == pg.SCHEMA
    assert (out / f"{em['archive']}.sha256").is_file()

    res = await run_cli("scripts.backup", "verify", env=env, cwd=tmp_path)
    assert res.code == 0 and "OK" in res.stdout, res.output
    assert "read back with pg_restore" in res.stdout

    # The volume lost: a fresh, empty database. The restore brings every credential back.
    cluster.sql("postgres", "create database evo_new")
    res = await run_cli(
        "scripts.backup", "restore-evolution-db", "--into-url", cluster.url("evo_new"), env=env, cwd=tmp_path
    )
    assert res.code == 0 and "Instance 2, Session 2" in res.stdout, res.output
    assert pg.sessions_in(cluster, "evo_new") == creds

    # Evolution started first and created its tables, still empty: only the rows go in.
    cluster.sql("postgres", "create database evo_started")
    cluster.sql("evo_started", pg.EVOLUTION_TABLES)
    res = await run_cli(
        "scripts.backup", "restore-evolution-db", "--into-url", cluster.url("evo_started"), env=env, cwd=tmp_path
    )
    assert res.code == 0, res.output
    assert pg.sessions_in(cluster, "evo_started") == creds

    # A database that already holds sessions is never written over.
    cluster.sql("evo_a", f"update {pg.SCHEMA}.\"Session\" set creds = 'newer' where id = 's0'")
    res = await run_cli(
        "scripts.backup", "restore-evolution-db", "--into-url", cluster.url("evo_a"), env=env, cwd=tmp_path
    )
    assert res.code == 2 and "restore only into an empty database" in res.stderr, res.output
    assert pg.sessions_in(cluster, "evo_a")["cm1abc"] == "newer"


async def test_verify_detects_a_damaged_or_truncated_dump(
    tenant: Tenant, cluster: pg.Cluster, mongo_url: str, db_name: str, tmp_path: Path
) -> None:
    pg.seed_sessions(cluster, "evo_b")
    out = tmp_path / "backups"
    env = _env(mongo_url, db_name, out, cluster.url("evo_b"))
    res = await run_cli("scripts.backup", "run", env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    em = _newest(out)["evolution_db"]
    path = out / em["archive"]
    whole = path.read_bytes()

    path.write_bytes(whole[: len(whole) // 2])
    res = await run_cli("scripts.backup", "verify", env=env, cwd=tmp_path)
    assert res.code == 4 and f"{em['archive']} is missing or does not match its sha256" in res.stderr, res.output

    # Same truncation with the recorded checksum rewritten to match: the full read-back still fails.
    checked = evolution_db.check(out, {**em, "sha256": evolution_db.sha256_of(path)})
    assert checked.corrupt and checked.problems[0].startswith("evolution db: pg_restore cannot read")

    path.write_bytes(whole)
    res = await run_cli("scripts.backup", "verify", env=env, cwd=tmp_path)
    assert res.code == 0, res.output


async def test_a_backup_without_the_postgres_tools_or_database_fails_before_writing(
    tenant: Tenant, cluster: pg.Cluster, mongo_url: str, db_name: str, tmp_path: Path
) -> None:
    out = tmp_path / "backups"
    env = _env(mongo_url, db_name, out, cluster.url("evo_b"), PATH="/nonexistent")
    res = await run_cli("scripts.backup", "run", env=env, cwd=tmp_path)
    assert res.code == 2 and "is not installed" in res.stderr, res.output
    env = _env(mongo_url, db_name, out, cluster.url("no_such_database"))
    res = await run_cli("scripts.backup", "run", env=env, cwd=tmp_path)
    assert res.code == 3 and "Evolution's database" in res.stderr, res.output
    assert not list(out.glob("*.manifest.json"))
