"""backup run/verify/prune and restore, as CLIs, against a real MongoDB-protocol server."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.core.indexes import declared
from scripts.common import OpsSettings
from scripts.restore import drop_scratch_database
from tests.factories import Tenant, assume, make_tenant, make_ticket
from tests.scripts.cli import env_for, run_cli

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    t = await make_tenant(client, admin_headers, agents=1)
    for i in range(4):
        ticket = await make_ticket(client, t, message=f"preciso de ajuda {i}")
        if i % 2:
            await assume(client, t.agents[0]["headers"], ticket["id"])
    return t


@pytest.fixture(scope="module")
def backup_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("backups")


def _env(mongo_url: str, db_name: str, backup_dir: Path, **extra: str) -> dict[str, str]:
    return env_for(mongo_url, db_name, BACKUP_DIR=str(backup_dir), BACKUP_TOOL="python", **extra)


async def _counts(db: Any) -> dict[str, int]:
    names = [n for n in await db.list_collection_names() if not n.startswith("system.")]
    return {n: await db[n].count_documents({}) for n in sorted(names)}


def _glob(folder: Path, pattern: str) -> list[Path]:
    return sorted(folder.glob(pattern))


def _manifests(backup_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(backup_dir.glob("*.manifest.json"))]


async def test_backup_writes_archive_checksum_and_manifest(
    tenant: Tenant, mongo_url: str, db_name: str, db: Any, backup_dir: Path, tmp_path: Path
) -> None:
    env = _env(mongo_url, db_name, backup_dir)
    res = await run_cli("scripts.backup", "run", env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    [manifest] = _manifests(backup_dir)
    archive_path = backup_dir / manifest["archive"]
    assert archive_path.name.startswith(f"iaze-{db_name}-") and archive_path.name.endswith(".archive.gz")
    assert archive_path.read_bytes()[:2] == b"\x1f\x8b"  # gzip
    import hashlib

    digest = hashlib.sha256(archive_path.read_bytes()).hexdigest()
    assert manifest["sha256"] == digest
    assert (backup_dir / f"{archive_path.name}.sha256").read_text() == f"{digest}  {archive_path.name}\n"
    assert manifest["counts"] == await _counts(db)
    assert manifest["counts"]["tickets"] >= 4 and manifest["counts"]["messages"] >= 4
    assert not _glob(backup_dir, "*.partial")


async def test_verify_restores_into_scratch_and_drops_it(
    tenant: Tenant, mongo_url: str, db_name: str, raw_mongo: Any, backup_dir: Path, tmp_path: Path
) -> None:
    env = _env(mongo_url, db_name, backup_dir)
    # Interrupted verifies' leftovers, under the old fixed name and under a per-run name.
    for leftover in (f"{db_name}_verify", f"{db_name}_verify_0123abcd"):
        await raw_mongo[leftover].left.insert_one({"_id": 1})
    res = await run_cli("scripts.backup", "verify", env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    assert "OK" in res.stdout and "DIFFERENT" not in res.stdout
    assert not [n for n in await raw_mongo.list_database_names() if n.startswith(f"{db_name}_verify")]
    [verified] = [json.loads(p.read_text()) for p in _glob(backup_dir, "*.verified.json")]
    assert verified["ok"] is True and verified["restored_counts"]["tickets"] >= 4


async def test_verifies_in_a_row_rotate_through_the_granted_scratch_names(
    tenant: Tenant, mongo_url: str, db_name: str, raw_mongo: Any, backup_dir: Path, tmp_path: Path
) -> None:
    """Each verify restores into the next of the fixed set the backup user is granted, never into
    the name the previous one dropped moments before (5d6b8b5), and leaves none behind."""
    env = _env(mongo_url, db_name, backup_dir)
    settings = OpsSettings(_env_file=None, ENV="test", MONGO_URL=mongo_url, MONGO_DB=db_name)  # type: ignore[call-arg]
    used = []
    for _ in range(2):
        res = await run_cli("scripts.backup", "verify", env=env, cwd=tmp_path)
        assert res.code == 0, res.output
        [verified] = [json.loads(p.read_text()) for p in _glob(backup_dir, "*.verified.json")]
        used.append(verified["scratch"])
    assert used[0] in settings.scratch_names() and used[1] == settings.next_scratch(used[0]) != used[0]
    assert not [n for n in await raw_mongo.list_database_names() if settings.is_scratch(n)]


async def test_restore_into_named_database_is_faithful(
    mongo_url: str, db_name: str, db: Any, raw_mongo: Any, backup_dir: Path, tmp_path: Path
) -> None:
    env = _env(mongo_url, db_name, backup_dir)
    manifest = _manifests(backup_dir)[-1]
    target = f"{db_name}_restored"
    res = await run_cli(
        "scripts.restore", str(backup_dir / manifest["archive"]), "--into", target, env=env, cwd=tmp_path
    )
    assert res.code == 0, res.output
    restored = raw_mongo[target]
    assert await _counts(restored) == manifest["counts"]
    for name in ("tickets", "messages", "ticket_events", "users"):
        original = await db[name].find({}).sort("_id", 1).to_list(None)
        assert await restored[name].find({}).sort("_id", 1).to_list(None) == original
    for spec in declared():
        info = await restored[spec.collection].index_information()
        assert spec.name in info, f"{spec.collection}.{spec.name} not restored"
        assert bool(info[spec.name].get("unique")) == spec.unique
    # A second restore into the now non-empty database is refused without --merge.
    res = await run_cli(
        "scripts.restore", str(backup_dir / manifest["archive"]), "--into", target, env=env, cwd=tmp_path
    )
    assert res.code == 2 and "is not empty" in res.stderr


async def test_restore_over_live_needs_flag_backs_up_first_and_never_overwrites(
    client: httpx.AsyncClient, tenant: Tenant, mongo_url: str, db_name: str, db: Any, backup_dir: Path, tmp_path: Path
) -> None:
    env = _env(mongo_url, db_name, backup_dir)
    archive_path = backup_dir / _manifests(backup_dir)[-1]["archive"]
    before = await _counts(db)
    res = await run_cli("scripts.restore", str(archive_path), "--into", db_name, env=env, cwd=tmp_path)
    assert res.code == 2 and "--over-live" in res.stderr
    assert await _counts(db) == before

    lost = await db.messages.find_one({})
    await db.messages.delete_one({"_id": lost["_id"]})  # the loss a restore is for
    newer = await make_ticket(client, tenant, message="depois do backup")  # newer than the archive: kept
    kept = await db.tickets.find_one({"_id": newer["id"]})
    n_backups = len(_manifests(backup_dir))
    res = await run_cli("scripts.restore", str(archive_path), "--into", db_name, "--over-live", env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    assert "fresh backup of the live database first" in res.stdout
    assert len(_manifests(backup_dir)) == n_backups + 1
    assert await db.messages.find_one({"_id": lost["_id"]}) == lost
    assert await db.tickets.find_one({"_id": newer["id"]}) == kept
    after = await _counts(db)
    assert all(after[n] >= before[n] for n in before)


async def test_damaged_or_unchecked_archives_are_refused(
    mongo_url: str, db_name: str, backup_dir: Path, tmp_path: Path
) -> None:
    env = _env(mongo_url, db_name, backup_dir)
    src = backup_dir / _manifests(backup_dir)[-1]["archive"]
    copy = tmp_path / src.name
    copy.write_bytes(src.read_bytes())
    res = await run_cli("scripts.restore", str(copy), "--into", f"{db_name}_x", env=env, cwd=tmp_path)
    assert res.code == 4 and "checksum file" in res.stderr
    (tmp_path / f"{src.name}.sha256").write_text((backup_dir / f"{src.name}.sha256").read_text())
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    res = await run_cli("scripts.restore", str(copy), "--into", f"{db_name}_x", env=env, cwd=tmp_path)
    assert res.code == 4 and "does not match" in res.stderr
    res = await run_cli("scripts.backup", "run", "--tool", "mongo-tools", env=env, cwd=tmp_path)
    assert res.code == 2 and "not found" in res.stderr


async def test_prune_deletes_only_its_own_old_backups(
    mongo_url: str, db_name: str, backup_dir: Path, tmp_path: Path
) -> None:
    env = _env(mongo_url, db_name, backup_dir)
    foreign = backup_dir / "iaze-notes.manifest.json"
    foreign.write_text(json.dumps({"made_by": "someone-else", "database": db_name, "archive": "x.archive.gz"}))
    other = backup_dir / "manual-dump.archive.gz"
    other.write_bytes(b"operator's own file")
    names = [m["archive"] for m in _manifests(backup_dir)]
    assert len(names) >= 2
    res = await run_cli("scripts.backup", "prune", "--keep-daily", "0", "--keep-weekly", "0", env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    left = sorted(p.name for p in _glob(backup_dir, "*.archive.gz"))
    assert left == sorted([names[-1], other.name])  # the newest backup and the foreign file
    assert foreign.exists()


async def test_schedule_once_backs_up_verifies_and_prunes(
    mongo_url: str, db_name: str, backup_dir: Path, tmp_path: Path
) -> None:
    env = _env(mongo_url, db_name, backup_dir, BACKUP_KEEP_DAILY="1", BACKUP_KEEP_WEEKLY="0")
    res = await run_cli("scripts.backup", "schedule", "--once", env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    assert "cycle done: verify ok" in res.stdout
    assert len(_glob(backup_dir, "iaze-t_*.archive.gz")) == 1
    res = await run_cli("scripts.backup", "list", env=env, cwd=tmp_path)
    assert res.code == 0 and " ok " in res.stdout


async def test_health_is_the_age_of_the_newest_backup_that_verified_ok(
    mongo_url: str, db_name: str, backup_dir: Path, tmp_path: Path
) -> None:
    """The compose backup service's healthcheck: a schedule whose cycles keep failing goes on
    (and logs it), so without this nothing would ever show that backups stopped."""
    backup_dir = tmp_path / "own"  # the module's directory holds earlier tests' backups
    backup_dir.mkdir()
    env = _env(mongo_url, db_name, backup_dir)
    res = await run_cli("scripts.backup", "health", env=env, cwd=tmp_path)
    assert res.code == 1 and "no backup" in res.stdout, res.output  # none yet
    res = await run_cli("scripts.backup", "schedule", "--once", env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    res = await run_cli("scripts.backup", "health", env=env, cwd=tmp_path)
    assert res.code == 0 and "ok" in res.stdout, res.output
    # Time passes with no new verified backup: unhealthy, saying how old the last one is.
    (verified,) = _glob(backup_dir, "iaze-t_*.verified.json")
    record = json.loads(verified.read_text())
    record["at"] = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
    verified.write_text(json.dumps(record))
    res = await run_cli("scripts.backup", "health", "--max-age", "7200", env=env, cwd=tmp_path)
    assert res.code == 1 and "UNHEALTHY" in res.stdout and "old" in res.stdout, res.output
    # A backup whose verify failed does not count.
    record.update(at=datetime.now(UTC).isoformat(), ok=False)
    verified.write_text(json.dumps(record))
    res = await run_cli("scripts.backup", "health", env=env, cwd=tmp_path)
    assert res.code == 1, res.output


async def test_only_the_scratch_database_can_be_dropped(mongo_url: str, db_name: str, raw_mongo: Any) -> None:
    settings = OpsSettings(_env_file=None, ENV="test", MONGO_URL=mongo_url, MONGO_DB=db_name)  # type: ignore[call-arg]
    lookalikes = (
        f"{db_name}_verify_x",
        f"{db_name}_verify_0123abcd_x",
        f"{db_name}_verify_0123abcde",
        f"{db_name}_verify2",
        f"{db_name}_verify_{len(settings.scratch_names())}",  # past the fixed set
    )
    for name in (db_name, "admin", f"{db_name}_restored", *lookalikes):
        with pytest.raises(SystemExit) as exc:
            await drop_scratch_database(raw_mongo, settings, name)
        assert exc.value.code == 2
    assert db_name in await raw_mongo.list_database_names()
    await drop_scratch_database(raw_mongo, settings, settings.scratch_names()[0])  # one verify's own: allowed
