"""Runs pending migrations under the lock and records every attempt.

`schema_migrations` holds `applied:<version>` (inserted once, on success: the unique `_id` makes a
concurrent double-apply record harmless) and one `run:<version>:<time>:<owner>` document per
attempt with its outcome (running -> applied | failed, and the error).
"""

import contextlib
import os
from collections.abc import Sequence

from pymongo.errors import DuplicateKeyError

from backend.core.clock import utcnow
from backend.core.db import Database
from backend.core.logging import get_logger
from backend.migrations import lock
from backend.migrations.model import Migration

COLLECTION = "schema_migrations"

log = get_logger("migrations")


class MigrationFailed(RuntimeError):
    pass


def applied_id(version: int) -> str:
    return f"applied:{version:05d}"


def _validate(migrations: Sequence[Migration]) -> list[Migration]:
    ordered = sorted(migrations, key=lambda m: m.version)
    versions = [m.version for m in ordered]
    if len(set(versions)) != len(versions) or any(v < 1 for v in versions):
        raise MigrationFailed(f"migration versions must be unique positive integers: {versions}")
    return ordered


async def applied_versions(db: Database) -> set[int]:
    docs = await db[COLLECTION].find({"outcome": "applied", "kind": "applied"}).to_list(length=None)
    return {int(d["version"]) for d in docs}


async def schema_version(db: Database) -> int | None:
    versions = await applied_versions(db)
    return max(versions) if versions else None


async def _pending(db: Database, migrations: list[Migration]) -> list[Migration]:
    return [m for m in migrations if await db[COLLECTION].find_one({"_id": applied_id(m.version)}) is None]


async def _run_one(db: Database, m: Migration, owner: str) -> None:
    started = utcnow()
    run_id = f"run:{m.version:05d}:{started.isoformat()}:{owner}"
    runs = db[COLLECTION]
    await runs.insert_one(
        {
            "_id": run_id,
            "kind": "run",
            "version": m.version,
            "name": m.name,
            "owner": owner,
            "host": os.uname().nodename,
            "started_at": started,
            "outcome": "running",
        }
    )
    try:
        await m.check(db)
        await m.apply(db)
    except Exception as exc:
        await runs.update_one(
            {"_id": run_id},
            {"$set": {"outcome": "failed", "error": f"{type(exc).__name__}: {exc}", "finished_at": utcnow()}},
        )
        raise MigrationFailed(f"migration {m.version} ({m.name}) failed: {exc}") from exc
    finished = utcnow()
    await runs.update_one({"_id": run_id}, {"$set": {"outcome": "applied", "finished_at": finished}})
    # A lock takeover may let another instance finish it too; the migration is idempotent.
    with contextlib.suppress(DuplicateKeyError):
        await runs.insert_one(
            {
                "_id": applied_id(m.version),
                "kind": "applied",
                "version": m.version,
                "name": m.name,
                "outcome": "applied",
                "run_id": run_id,
                "applied_at": finished,
            }
        )


async def run(
    db: Database, migrations: Sequence[Migration], *, lease_seconds: int = 60, wait_seconds: float = 300
) -> list[int]:
    """Applies what is pending, in version order; returns the versions this call applied.

    The first failure stops the run (later migrations may depend on it) and raises MigrationFailed.
    """
    ordered = _validate(migrations)
    unknown = sorted(await applied_versions(db) - {m.version for m in ordered})
    if unknown:
        # Additive migrations keep older code working on a newer schema (a rollback); say so.
        log.warning("database has migrations this build does not know (a newer build ran)", versions=unknown)
    if not await _pending(db, ordered):
        return []
    done: list[int] = []
    async with lock.held(db, lease_seconds=lease_seconds, wait_seconds=wait_seconds) as owner:
        # Re-read under the lock: the instance we waited for has probably applied everything.
        for m in await _pending(db, ordered):
            log.info("migration starting", version=m.version, name=m.name)
            await _run_one(db, m, owner)
            log.info("migration applied", version=m.version, name=m.name)
            done.append(m.version)
    return done
