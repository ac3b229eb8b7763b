"""`tenant_events`: the durable, per-tenant, gap-free realtime feed.

A record's `_id` is "<reseller_id>:<seq:012d>". Taking sequence n means inserting that `_id`: the
unique `_id` lets exactly one writer (of any process) have it. A writer only tries n after it saw
n-1 stored, so the stored seqs of a tenant are always exactly 1..latest — no holes — and every
read (catch-up, gap fill, finding the tail) is an `_id` equality lookup, the query FerretDB
pushes down. Records are never updated or removed. Each tenant's feed is a plain log of
backend/core/seqlog.py, numbers zero-padded to 12 digits.
"""

from typing import Any

from backend.core.db import Database
from backend.core.seqlog import SeqLog

COLLECTION = "tenant_events"


def _log(reseller_id: str) -> SeqLog:
    return SeqLog(COLLECTION, f"{reseller_id}:", width=12)


def key(reseller_id: str, seq: int) -> str:
    return _log(reseller_id).entry_id(seq)


async def get(db: Database, reseller_id: str, seq: int) -> dict[str, Any] | None:
    return await _log(reseller_id).get(db, seq)


async def exists(db: Database, reseller_id: str, seq: int) -> bool:
    """seq 0 is "before the first event": always reached."""
    return await _log(reseller_id).exists(db, seq)


async def latest(db: Database, reseller_id: str, *, start: int = 0) -> int:
    """The tenant's highest stored seq. Stored seqs are 1..latest, so "exists" is monotone and a
    galloping search from a known-stored `start` (or this process's hint) needs O(log gap) lookups."""
    return await _log(reseller_id).head(db, start=start)


async def append(db: Database, reseller_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Stores `body` under the tenant's next seq and returns the stored record. Appends made while
    this process is already writing the feed go out together, one ordered insert, in the order
    they were made (core/seqlog.py, plain appends)."""
    return await _log(reseller_id).append_entry(db, {**body, "reseller_id": reseller_id})
