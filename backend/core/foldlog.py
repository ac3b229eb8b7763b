"""Exactly-once contributions folded into a compacted state, on a store whose every update is
read → modify → write the whole document (FerretDB v1): the design of the ticket counters
(backend/tickets/counters.py, docs/ARCHITECTURE.md), as a primitive any aggregate can use.

A *bucket* (any string: a tenant, a tenant's month) has
- a contribution log: entry n is `_id` "<bucket>:<n>" of `entries` (backend/core/seqlog.py, plain
  append: entries exactly 1..head, no holes). Entries are appended, never updated or removed;
- a claim per contribution key (backend/core/natural_keys.py, kind `claim_kind`): key -> the
  entry that counts it, first insert wins and never changes. A retried or concurrent writer may
  append one contribution twice; only its canonical entry counts, so it counts exactly once;
- a totals document `totals/<bucket>`: `{watermark: w, state}` = the fold of the canonical
  entries 1..w, written as one pair by a compactor. Every stored pair is some compactor's
  consistent snapshot, so two compactors at once (or a FerretDB write-back of an older pair)
  can only move the watermark back: a longer tail for the next reader, never a wrong figure.

Reading a bucket: its totals, then the tail past the watermark, where an entry counts when its
key is not yet counted in this tail and its claim points to it or does not exist yet (its writer
is between append and claim). Cost: 2 + 2 x tail `_id` reads, whatever the history.
A writer compacts at every `compact_every`-th entry, a reader past a tail of `reader_compacts_at`.

`fold(state, body)` must be deterministic; it may be applied in any order to contributions that
commute (counts, multisets), and callers that need order (a set of open items) rely on each key's
canonical entries being appended in the order their events happened (see reports/aggregates.py).
"""

import asyncio
import contextlib
import copy
from collections.abc import Callable, Mapping
from typing import Any

from pymongo.errors import DuplicateKeyError, PyMongoError

from backend.core import natural_keys
from backend.core.clock import utcnow
from backend.core.db import Database
from backend.core.logging import get_logger
from backend.core.runtime import runtime_of
from backend.core.seqlog import SeqLog

log = get_logger("core.foldlog")

Fold = Callable[[dict[str, Any], Mapping[str, Any]], None]


class FoldLog:
    def __init__(
        self,
        *,
        entries: str,
        totals: str,
        claim_kind: str,
        fold: Fold,
        compact_every: int = 16,
        reader_compacts_at: int = 64,
        max_fold: int = 5_000,
        stored: Callable[[dict[str, Any]], dict[str, Any]] = dict,
    ) -> None:
        self.entries = entries
        self.totals = totals
        self.claim_kind = claim_kind
        self.fold = fold
        self.compact_every = compact_every
        self.reader_compacts_at = reader_compacts_at
        self.max_fold = max_fold
        self.stored = stored  # the state as written (a fold may keep in-memory helpers in it)

    def _log(self, bucket: str) -> SeqLog:
        # The seqlog's cursor is unused: the watermark lives in the totals document.
        return SeqLog(self.entries, f"{bucket}:", state_collection=self.totals, cursor_id=f"unused:{bucket}")

    def _lock(self, db: Database, bucket: str) -> asyncio.Lock:
        # One append at a time per bucket in this process: concurrent plain appends all try
        # head+1 and retry (tickets/counters_repository.py says why).
        locks = runtime_of(db).counter_append_locks
        return locks.setdefault((db.name, f"{self.entries}/{bucket}"), asyncio.Lock())

    async def canonical(self, db: Database, bucket: str, key: str) -> int | None:
        bound = await natural_keys.lookup(db, self.claim_kind, bucket, key)
        return int(bound) if bound is not None else None

    async def _claim(self, db: Database, bucket: str, key: str, seq: int) -> int:
        bound, _ = await natural_keys.claim(db, self.claim_kind, bucket, key, target=str(seq))
        return int(bound)

    async def record(self, db: Database, bucket: str, key: str, body: Mapping[str, Any]) -> bool:
        """Appends `body` as contribution `key` of `bucket` unless it is counted already.
        Returns False when it was. Safe to repeat and to race with itself."""
        if await self.canonical(db, bucket, key) is not None:
            return False
        async with self._lock(db, bucket):
            seq, _ = await self._log(bucket).append(db, {**body, "key": key, "bucket": bucket, "at": utcnow()})
        await self._claim(db, bucket, key, seq)
        if seq % self.compact_every == 0:
            try:
                await self.compact(db, bucket)
            except PyMongoError as exc:  # the entry is stored; the next compaction folds it
                log.warning("compaction failed", bucket=bucket, error=str(exc))
        return True

    async def _totals(self, db: Database, bucket: str) -> tuple[int, dict[str, Any]]:
        doc = await db[self.totals].find_one({"_id": bucket})
        return (int(doc["watermark"]), dict(doc["state"] or {})) if doc else (0, {})

    async def compact(self, db: Database, bucket: str) -> int:
        """Folds the entries past the watermark into the totals; returns the new watermark."""
        watermark, state = await self._totals(db, bucket)
        n = watermark
        log_ = self._log(bucket)
        while n - watermark < self.max_fold and (entry := await log_.get(db, n + 1)) is not None:
            n += 1
            key = str(entry["key"])
            canonical = await self.canonical(db, bucket, key)
            if canonical is None:  # fix it before folding, so no reader counts another copy
                canonical = await self._claim(db, bucket, key, n)
            if canonical == n:
                self.fold(state, entry)
        if n > watermark:
            await self.write_totals(db, bucket, watermark=n, state=state)
        return n

    async def write_totals(self, db: Database, bucket: str, *, watermark: int, state: dict[str, Any]) -> None:
        """One write of the whole pair (module docstring)."""
        fields = {"watermark": watermark, "state": self.stored(state), "updated_at": utcnow()}
        try:
            await db[self.totals].update_one({"_id": bucket}, {"$set": fields}, upsert=True)
        except DuplicateKeyError:  # two first upserts: the document exists now
            await db[self.totals].update_one({"_id": bucket}, {"$set": fields})

    async def read(self, db: Database, bucket: str) -> dict[str, Any]:
        """The bucket's state as of now: totals plus the tail past their watermark."""
        watermark, state = await self._totals(db, bucket)
        counted: set[str] = set()
        n = watermark
        log_ = self._log(bucket)
        while (entry := await log_.get(db, n + 1)) is not None:
            n += 1
            key = str(entry["key"])
            if key in counted:
                continue
            canonical = await self.canonical(db, bucket, key)
            if canonical is None or canonical == n:
                counted.add(key)
                self.fold(state, entry)
        if n - watermark >= self.reader_compacts_at:
            with contextlib.suppress(PyMongoError):  # a faster read next time, nothing more
                await self.compact(db, bucket)
        return state

    async def refold(self, db: Database, bucket: str) -> tuple[int, dict[str, Any], dict[str, Any]]:
        """(watermark, stored state, the canonical entries 1..watermark folded afresh): whether
        the stored totals are their own entries' fold (an operator's check; reads the log)."""
        watermark, stored = await self._totals(db, bucket)
        state: dict[str, Any] = {}
        log_ = self._log(bucket)
        for n in range(1, watermark + 1):
            entry = await log_.get(db, n)
            if entry is not None and await self.canonical(db, bucket, str(entry["key"])) == n:
                self.fold(state, entry)
        return watermark, copy.deepcopy(stored), state
