"""`tenant_events`: the durable, per-tenant, gap-free realtime feed.

A record's `_id` is "<reseller_id>:<seq:012d>". Taking sequence n means inserting that `_id`: the
unique `_id` lets exactly one writer (of any process) have it. A writer only tries n after it saw
n-1 stored, so the stored seqs of a tenant are always exactly 1..latest — no holes — and every
read (catch-up, gap fill, finding the tail) is an `_id` equality lookup, the query FerretDB
pushes down. Records are never updated or removed.
"""

import asyncio
from typing import Any

from pymongo.errors import DuplicateKeyError, PyMongoError

from backend.core.db import Database

COLLECTION = "tenant_events"
MAX_CLAIM_ATTEMPTS = 10_000
LOSSES_BEFORE_SEARCH = 4
TRANSIENT_RETRIES = 4

# Process-local "this seq is stored" facts per (database, tenant): a speed hint only. It is only
# ever set to a seq seen stored, so hint+1 is always a valid next claim; a stale hint costs a few
# duplicate-key retries, never correctness.
_tail_hint: dict[tuple[str, str], int] = {}


def key(reseller_id: str, seq: int) -> str:
    return f"{reseller_id}:{seq:012d}"


async def get(db: Database, reseller_id: str, seq: int) -> dict[str, Any] | None:
    if seq < 1:
        return None
    return await db[COLLECTION].find_one({"_id": key(reseller_id, seq)})


async def exists(db: Database, reseller_id: str, seq: int) -> bool:
    if seq < 1:
        return True  # seq 0 is "before the first event": always reached
    return await db[COLLECTION].find_one({"_id": key(reseller_id, seq)}, projection={"_id": 1}) is not None


async def latest(db: Database, reseller_id: str, *, start: int = 0) -> int:
    """The tenant's highest stored seq. Stored seqs are 1..latest, so "exists" is monotone and a
    galloping search from a known-stored `start` needs O(log gap) lookups."""
    lo = max(start, _tail_hint.get((db.name, reseller_id), 0))
    if not await exists(db, reseller_id, lo):
        lo = 0
    step = 1
    hi = lo + step
    while await exists(db, reseller_id, hi):
        lo = hi
        step *= 2
        hi = lo + step
    # lo exists, hi does not: bisect between them.
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if await exists(db, reseller_id, mid):
            lo = mid
        else:
            hi = mid
    _remember(db, reseller_id, lo)
    return lo


def _remember(db: Database, reseller_id: str, seq: int) -> None:
    hint = (db.name, reseller_id)
    if seq > _tail_hint.get(hint, 0):
        _tail_hint[hint] = seq


async def append(db: Database, reseller_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Stores `body` under the tenant's next seq and returns the stored record.

    The claim goes straight for hint+1: an insert is arbitrated by the unique `_id` index, while
    a lookup that misses is the expensive query on FerretDB (it scans). Only a process with no
    hint, or one that keeps losing (others wrote a lot), searches for the tail."""
    known = _tail_hint.get((db.name, reseller_id))
    seq = (known if known is not None else await latest(db, reseller_id)) + 1
    for attempt in range(1, MAX_CLAIM_ATTEMPTS + 1):
        record = {**body, "_id": key(reseller_id, seq), "reseller_id": reseller_id, "seq": seq}
        try:
            await _insert(db, record)
        except DuplicateKeyError:
            # Another writer took it, so seq is stored and seq+1 is a valid next claim.
            seq = await latest(db, reseller_id, start=seq) + 1 if attempt % LOSSES_BEFORE_SEARCH == 0 else seq + 1
            continue
        _remember(db, reseller_id, seq)
        return record
    raise RuntimeError(f"could not claim a feed seq for tenant {reseller_id}")


async def _insert(db: Database, record: dict[str, Any]) -> None:
    """Retries transient store errors (FerretDB answers SQLITE_BUSY under write bursts). If an
    attempt did land after all, the retry meets its `_id` and append moves on to the next seq:
    the change is then announced twice (at-least-once), never not at all."""
    for attempt in range(TRANSIENT_RETRIES):
        try:
            await db[COLLECTION].insert_one(record)
            return
        except DuplicateKeyError:
            raise
        except PyMongoError:
            if attempt == TRANSIENT_RETRIES - 1:
                raise
            await asyncio.sleep(0.05 * 4**attempt)
