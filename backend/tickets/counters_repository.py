"""Queries behind the ticket counters (backend/tickets/counters.py): every one by `_id`, the only
filter FerretDB pushes down, except the operator script's full reads.

- `ticket_count_deltas`: entry n of tenant T is `_id` "<T>:<n>" (a backend/core/seqlog.py log,
  plain append: entries are exactly 1..head, no holes), each the delta of one ticket event.
- `natural_keys` kind "count-delta": event `_id` -> the entry that counts it (the canonical one).
- `ticket_counts`: one document per tenant, `_id` the tenant id: `{watermark, counts}`.
"""

import asyncio
import contextlib
from typing import Any

from pymongo.errors import DuplicateKeyError

from backend.core import natural_keys
from backend.core.clock import utcnow
from backend.core.db import Database
from backend.core.runtime import runtime_of
from backend.core.seqlog import SeqLog

DELTAS = "ticket_count_deltas"
TOTALS = "ticket_counts"
CLAIM_KIND = "count-delta"


def log_of(reseller_id: str) -> SeqLog:
    # The seqlog's cursor is unused here: the watermark lives in the totals document.
    return SeqLog(DELTAS, f"{reseller_id}:", state_collection=TOTALS, cursor_id=f"unused:{reseller_id}")


def _append_lock(db: Database, reseller_id: str) -> asyncio.Lock:
    locks = runtime_of(db).counter_append_locks
    return locks.setdefault((db.name, reseller_id), asyncio.Lock())


async def append(db: Database, reseller_id: str, body: dict[str, Any]) -> int:
    """Why one at a time: a plain seqlog append tries head+1, so N concurrent appenders of one
    tenant all try the same number, one wins and the others read and retry — N^2 inserts for a
    burst of N new tickets. Queued in the process, each append is two reads and one insert;
    only appenders in different processes still race (and the unique `_id` settles it)."""
    async with _append_lock(db, reseller_id):
        seq, _ = await log_of(reseller_id).append(db, {**body, "reseller_id": reseller_id, "at": utcnow()})
    return seq


async def entry(db: Database, reseller_id: str, seq: int) -> dict[str, Any] | None:
    return await log_of(reseller_id).get(db, seq)


async def canonical(db: Database, event_id: str) -> int | None:
    """The entry that counts `event_id`, or None while no entry has claimed it."""
    bound = await natural_keys.lookup(db, CLAIM_KIND, event_id)
    return int(bound) if bound is not None else None


async def claim(db: Database, event_id: str, seq: int) -> int:
    """Makes entry `seq` the one that counts `event_id` unless another already is; returns it."""
    bound, _ = await natural_keys.claim(db, CLAIM_KIND, event_id, target=str(seq))
    return int(bound)


async def totals(db: Database, reseller_id: str) -> dict[str, Any] | None:
    return await db[TOTALS].find_one({"_id": reseller_id})


async def start_totals(db: Database, reseller_id: str) -> None:
    """A new tenant's totals: nothing to count yet, so every event it will ever have is covered."""
    doc = {"_id": reseller_id, "watermark": 0, "counts": {}, "complete": True, "updated_at": utcnow()}
    with contextlib.suppress(DuplicateKeyError):  # a retried creation
        await db[TOTALS].insert_one(doc)


async def write_totals(
    db: Database, reseller_id: str, *, watermark: int, counts: dict[str, int], complete: bool | None = None
) -> None:
    """One write of the whole pair: whatever interleaves, the stored (watermark, counts) is one
    writer's consistent snapshot (see counters.py). `complete`: set only by the backfill."""
    fields: dict[str, Any] = {"watermark": watermark, "counts": counts, "updated_at": utcnow()}
    if complete is not None:
        fields["complete"] = complete
    try:
        await db[TOTALS].update_one({"_id": reseller_id}, {"$set": fields}, upsert=True)
    except DuplicateKeyError:  # two first upserts of a tenant: the document exists now
        await db[TOTALS].update_one({"_id": reseller_id}, {"$set": fields})


async def tenant_ids(db: Database) -> list[str]:
    """Every tenant, for the admin's platform-wide counts (a small collection)."""
    return [str(d["_id"]) async for d in db["resellers"].find({}, {"_id": 1})]


async def all_entries(db: Database, reseller_id: str) -> list[dict[str, Any]]:
    """The operator script's full read of a tenant's entries (a scan; never on a request path)."""
    return await db[DELTAS].find({"reseller_id": reseller_id, "event_id": {"$exists": True}}).to_list(None)


async def all_claims(db: Database) -> dict[str, int]:
    """event `_id` -> counting entry, for the operator script (a scan of one key kind)."""
    prefix = f"{CLAIM_KIND}:"
    out: dict[str, int] = {}
    async for doc in db[natural_keys.COLLECTION].find({"_id": {"$regex": f"^{prefix}"}}):
        out[str(doc["_id"])[len(prefix) :]] = int(doc["target"])
    return out
