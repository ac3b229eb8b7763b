"""A lease lock in the database, arbitrated by unique `_id` inserts only.

Lock generations are documents `_id: "lock:<n>"`. To take the lock an instance reads the newest
generation; if it is released or its lease expired, it inserts generation n+1 — exactly one
contender's insert succeeds on every store (a filtered update would not be atomic on FerretDB).
The holder renews its lease while it works and marks its generation released at the end. A
holder that dies simply lets its lease run out.
"""

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError, PyMongoError

from backend.core.clock import as_utc, utcnow
from backend.core.db import Database
from backend.core.logging import get_logger

COLLECTION = "schema_migration_locks"
POLL_SECONDS = 0.2

log = get_logger("migrations.lock")


class LockTimeout(RuntimeError):
    pass


def _lock_id(generation: int) -> str:
    return f"lock:{generation:010d}"


async def _newest(db: Database) -> dict[str, Any] | None:
    docs = await db[COLLECTION].find({}).sort("_id", -1).limit(1).to_list(length=1)
    return docs[0] if docs else None


def _free(doc: dict[str, Any] | None) -> bool:
    return doc is None or bool(doc.get("released")) or as_utc(doc["expires_at"]) <= utcnow()


async def acquire(db: Database, owner: str, *, lease_seconds: int, wait_seconds: float) -> int:
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while True:
        newest = await _newest(db)
        if _free(newest):
            generation = int(newest["generation"]) + 1 if newest else 1
            now = utcnow()
            try:
                await db[COLLECTION].insert_one(
                    {
                        "_id": _lock_id(generation),
                        "generation": generation,
                        "owner": owner,
                        "acquired_at": now,
                        "expires_at": now + timedelta(seconds=lease_seconds),
                        "released": False,
                        "took_over": newest["owner"] if newest and not newest.get("released") else None,
                    }
                )
                return generation
            except DuplicateKeyError:
                pass  # another instance took this generation first; look again
        if asyncio.get_running_loop().time() >= deadline:
            holder = newest["owner"] if newest else "?"
            raise LockTimeout(f"migration lock held by {holder} for more than {wait_seconds}s")
        await asyncio.sleep(POLL_SECONDS)


async def _renew(db: Database, generation: int, owner: str, lease_seconds: int) -> None:
    """Runs until cancelled. A failed renewal is logged and retried at the next tick: it must
    neither stop the renewals nor surface as the migration's failure (the lease is only a guard
    against a dead holder, and every migration is idempotent, so a lapsed lease costs at most a
    second run of an idempotent step)."""
    while True:
        await asyncio.sleep(max(lease_seconds / 3, 1))
        try:
            await db[COLLECTION].update_one(
                {"_id": _lock_id(generation), "owner": owner},
                {"$set": {"expires_at": utcnow() + timedelta(seconds=lease_seconds)}},
            )
        except PyMongoError as exc:
            log.warning("migration lock renewal failed; retrying", generation=generation, error=str(exc))


async def release(db: Database, generation: int, owner: str) -> None:
    await db[COLLECTION].update_one(
        {"_id": _lock_id(generation), "owner": owner}, {"$set": {"released": True, "released_at": utcnow()}}
    )


@contextlib.asynccontextmanager
async def held(db: Database, *, lease_seconds: int, wait_seconds: float) -> AsyncIterator[str]:
    owner = f"{secrets.token_hex(6)}"
    generation = await acquire(db, owner, lease_seconds=lease_seconds, wait_seconds=wait_seconds)
    log.info("migration lock taken", generation=generation, owner=owner)
    renewer = asyncio.create_task(_renew(db, generation, owner, lease_seconds))
    try:
        yield owner
    finally:
        renewer.cancel()
        # Whatever the renewer ended with, the release below must run and the migrations' own
        # outcome (success, or their error) is the one that propagates.
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await renewer
        try:
            await release(db, generation, owner)
        except PyMongoError as exc:  # the lease then simply expires; the work itself is done
            log.error("migration lock release failed; it expires with its lease", generation=generation, error=str(exc))
