"""`tenant_events`: the durable, per-tenant, gap-free realtime feed.

A record's `_id` is "<reseller_id>:<seq:012d>". Taking sequence n means inserting that `_id`: the
unique `_id` lets exactly one writer (of any process) have it. A writer only tries n after it saw
n-1 stored, so the stored seqs of a tenant are always exactly 1..latest — no holes — and every
read (catch-up, gap fill, finding the tail) is an `_id` equality lookup, the query FerretDB
pushes down. Records are never updated or removed.
"""

import asyncio
from dataclasses import dataclass, field
from typing import Any

from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from backend.core.db import Database
from backend.core.group_commit import DUPLICATE_CODES
from backend.core.runtime import runtime_of
from backend.core.seqlog import gallop
from backend.core.tuning import FEED_BATCH as MAX_BATCH  # at most 100: see there
from backend.core.tuning import FEED_LOSSES_BEFORE_SEARCH as LOSSES_BEFORE_SEARCH
from backend.core.tuning import FEED_TRANSIENT_RETRIES as TRANSIENT_RETRIES

COLLECTION = "tenant_events"
MAX_CLAIM_ATTEMPTS = 10_000


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
    lo = max(start, runtime_of(db).feed_tails.get((db.name, reseller_id), 0))
    lo = await gallop(lo if await exists(db, reseller_id, lo) else 0, lambda n: exists(db, reseller_id, n))
    _remember(db, reseller_id, lo)
    return lo


def _remember(db: Database, reseller_id: str, seq: int) -> None:
    """The tenant's tail hint (runtime.feed_tails): only ever set to a seq seen stored, so hint+1
    is always a valid next claim; a stale hint costs a few duplicate-key retries, never correctness."""
    tails, hint = runtime_of(db).feed_tails, (db.name, reseller_id)
    if seq > tails.get(hint, 0):
        tails[hint] = seq


@dataclass
class _Waiting:
    reseller_id: str
    body: dict[str, Any]
    done: "asyncio.Future[dict[str, Any]]"


@dataclass
class _Queue:
    waiting: list[_Waiting] = field(default_factory=list)
    writing: bool = False


async def append(db: Database, reseller_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Stores `body` under the tenant's next seq and returns the stored record.

    Appends made while this process is already writing the feed are written together: each
    takes its tenant's next seq in arrival order and the batch goes out as one *ordered*
    insert, so when one meets a seq another process took, the batch stops right there — what
    went in before it is, per tenant, exactly hint+1..k, no holes — and the rest claim again
    (that tenant after its new tail). One commit per batch instead of one per event, and no two
    of this process's writers ever fight over one seq."""
    runtime = runtime_of(db)
    queue = runtime.feed_queues.get(db.name)
    if queue is None:
        queue = runtime.feed_queues[db.name] = _Queue()
    loop = asyncio.get_running_loop()
    waiting = _Waiting(reseller_id, body, loop.create_future())
    waiting.done.add_done_callback(lambda f: f.cancelled() or f.exception())
    queue.waiting.append(waiting)
    if not queue.writing:
        queue.writing = True
        task = loop.create_task(_write_until_empty(db, queue))
        runtime.feed_writers.add(task)
        task.add_done_callback(runtime.feed_writers.discard)
    return await asyncio.shield(waiting.done)


async def _write_until_empty(db: Database, queue: _Queue) -> None:
    try:
        while queue.waiting:
            batch, queue.waiting = queue.waiting[:MAX_BATCH], queue.waiting[MAX_BATCH:]
            try:
                await _append_batch(db, batch)
            except BaseException as exc:
                for w in batch:
                    if not w.done.done():
                        w.done.set_exception(exc if isinstance(exc, Exception) else PyMongoError(repr(exc)))
                if not isinstance(exc, Exception):
                    raise
    finally:
        queue.writing = False
        queues = runtime_of(db).feed_queues
        if not queue.waiting and queues.get(db.name) is queue:
            del queues[db.name]


async def _append_batch(db: Database, batch: list[_Waiting]) -> None:
    pending = batch
    losses: dict[str, int] = {}
    for _ in range(MAX_CLAIM_ATTEMPTS):
        tails: dict[str, int] = {}
        records: list[dict[str, Any]] = []
        for w in pending:
            if w.reseller_id not in tails:
                known = runtime_of(db).feed_tails.get((db.name, w.reseller_id))
                tails[w.reseller_id] = known if known is not None else await latest(db, w.reseller_id)
            tails[w.reseller_id] += 1
            seq = tails[w.reseller_id]
            records.append({**w.body, "_id": key(w.reseller_id, seq), "reseller_id": w.reseller_id, "seq": seq})
        stored = await _insert_prefix(db, records)
        for w, record in zip(pending[:stored], records[:stored], strict=True):
            _remember(db, w.reseller_id, int(record["seq"]))
            w.done.set_result(record)
        pending = pending[stored:]
        if not pending:
            return
        # Another writer took this seq, so it is stored: the tenant claims after it (searching
        # for the real tail now and then, when that writer keeps going). Other tenants' records
        # after it were not tried and keep their seqs.
        taken = records[stored]
        tenant, seq = str(taken["reseller_id"]), int(taken["seq"])
        losses[tenant] = losses.get(tenant, 0) + 1
        if losses[tenant] % LOSSES_BEFORE_SEARCH == 0:
            await latest(db, tenant, start=seq)
        else:
            _remember(db, tenant, seq)
    raise RuntimeError("could not claim feed seqs")


async def _insert_prefix(db: Database, records: list[dict[str, Any]]) -> int:
    """Inserts `records` in order; returns how many went in before one met a taken seq.
    Retries transient store errors (FerretDB answers SQLITE_BUSY under write bursts). If an
    attempt did land after all, the retry meets its `_id`s and the events move on to later
    seqs: announced twice (at-least-once), never not at all."""
    for attempt in range(TRANSIENT_RETRIES):
        try:
            if len(records) == 1:
                await db[COLLECTION].insert_one(records[0])
            else:
                await db[COLLECTION].insert_many(records, ordered=True)
            return len(records)
        except DuplicateKeyError:
            return 0
        except BulkWriteError as exc:
            errors = (exc.details or {}).get("writeErrors") or []
            if errors and errors[0].get("code") in DUPLICATE_CODES:
                return int(errors[0]["index"])
            if attempt == TRANSIENT_RETRIES - 1:
                raise
        except PyMongoError:
            if attempt == TRANSIENT_RETRIES - 1:
                raise
        await asyncio.sleep(0.05 * 4**attempt)
    raise AssertionError("unreachable")
