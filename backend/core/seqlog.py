"""A durable sequenced log addressed by `_id`: entry n of a log is `_id` "<prefix><n>".

Why: FerretDB pushes down only `_id` equality, so a reader that walks n, n+1, ... reads one
document per step however large the collection grows, and a unique `_id` insert is the one race
arbiter every store makes atomic: taking n means inserting its `_id`, and exactly one writer gets
it. Used by the outbound queue ("q:<n>") and the inbound webhook lanes ("w:<lane>:<n>").

Two ways to take a number:
- `append`: tries head+1 after seeing head stored, so entries are exactly 1..head, no holes.
  Cheap when writers are few (the outbound queue).
- `append(reserve=True)`: this process hands out consecutive numbers from a local counter and
  inserts them concurrently — one insert per entry even at high concurrency. A writer that dies
  (or whose insert fails) between taking a number and storing it leaves a hole; `after` finds
  what was stored past a hole, a reader fills a hole that outlived a grace period with a
  tombstone (`fill`), and a late writer whose number was filled gets DuplicateKeyError and simply
  takes another. Nothing stored is ever skipped.

Reserving writers leave a trail that makes "is anything stored past this hole?" cheap to answer
with `_id` reads alone: before storing any number of block k (numbers k*MARK_EVERY+1 ..
(k+1)*MARK_EVERY) a writer makes sure marker "<prefix>m<k>" is stored, in block order. So markers
have no holes (galloping over them is exact), every stored entry has its block's marker, and past
a hole only the numbers up to the end of the highest marked block can hold entries: a run of
holes of any length costs at most one read per number to look past, and a quiet log's end costs
at most MARK_EVERY reads. One marker insert per MARK_EVERY entries per writing process, sent in
the same group-commit batches as the entries.

Order: a writer never takes a number below one stored when it last synced (`top`, at its first
append and after any collision), and a number's block marker is stored before it. Where that
ends: a writer in another process whose hint is older than a hole (a number a dead writer took,
with entries stored past it) can still store into that hole before a reader tombstones it, below
those entries. Only a run of holes makes this possible, and the processor tombstones it within
the grace.

Process-local hints (head, reservations, markers, cursors) only make reads short; every rule is
decided by the stored `_id`s. Entries are never removed (persistence rule 1).
"""

import contextlib
from typing import Any

from pymongo.errors import DuplicateKeyError, PyMongoError

from backend.core import group_commit
from backend.core.clock import utcnow
from backend.core.db import Database

MAX_CLAIM_TRIES = 10_000
MARK_EVERY = 8  # entries per marker block: a log end costs at most this many reads to look past
HOLE = "hole"  # field set on a tombstone entry

_head_hint: dict[tuple[str, str, str], int] = {}
_reserved: dict[tuple[str, str, str], int] = {}
_marked: dict[tuple[str, str, str], int] = {}  # highest block whose marker this process knows stored


def block_of(seq: int) -> int:
    return (seq - 1) // MARK_EVERY


class SeqLog:
    def __init__(self, collection: str, prefix: str, *, state_collection: str, cursor_id: str) -> None:
        self.collection = collection
        self.prefix = prefix
        self.state_collection = state_collection
        self.cursor_id = cursor_id

    def _key(self, db: Database) -> tuple[str, str, str]:
        return (db.name, self.collection, self.prefix)

    def entry_id(self, seq: int) -> str:
        return f"{self.prefix}{seq}"

    def marker_id(self, block: int) -> str:
        return f"{self.prefix}m{block}"

    def hint(self, db: Database) -> int:
        """Highest entry this process knows is stored (or reserved); a hint, never a rule."""
        key = self._key(db)
        return max(_head_hint.get(key, 0), _reserved.get(key, 0))

    async def get(self, db: Database, seq: int) -> dict[str, Any] | None:
        return await db[self.collection].find_one({"_id": self.entry_id(seq)})

    async def exists(self, db: Database, seq: int) -> bool:
        if seq < 1:
            return True
        found = await db[self.collection].find_one({"_id": self.entry_id(seq)}, projection={"_id": 1})
        return found is not None

    async def _marker_exists(self, db: Database, block: int) -> bool:
        if block < 0:
            return True
        found = await db[self.collection].find_one({"_id": self.marker_id(block)}, projection={"_id": 1})
        return found is not None

    async def ever_written(self, db: Database) -> bool:
        """Whether a writer ever took a number here (marker 0; entry 1 for logs older than markers)."""
        return await self._marker_exists(db, 0) or await self.exists(db, 1)

    async def head(self, db: Database) -> int:
        """Highest stored entry below the first hole at or after the hint: galloping search.
        Without holes (plain `append`) that is the highest stored entry."""
        key = self._key(db)
        hint = _head_hint.get(key, 0)
        lo = hint if await self.exists(db, hint) else 0
        step = 1
        hi = lo + step
        while await self.exists(db, hi):
            lo, step = hi, step * 2
            hi = lo + step
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if await self.exists(db, mid):
                lo = mid
            else:
                hi = mid
        _head_hint[key] = max(hint, lo)
        return lo

    async def _last_marked(self, db: Database, block: int) -> int:
        """Highest marked block at or after `block`, or block-1 when `block` has no marker.
        Markers have no holes, so this is a galloping search."""
        if not await self._marker_exists(db, block):
            return block - 1
        lo, step = block, 1
        while await self._marker_exists(db, lo + step):
            lo, step = lo + step, step * 2
        hi = lo + step
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if await self._marker_exists(db, mid):
                lo = mid
            else:
                hi = mid
        return lo

    async def after(self, db: Database, seq: int) -> dict[str, Any] | None:
        """The first entry stored after `seq` (a missing number), or None when nothing is stored
        past it. Looks up to the end of the highest marked block and to this process's own
        reservations: one read per number at most, however long the run of holes."""
        limit = max((await self._last_marked(db, block_of(seq)) + 1) * MARK_EVERY, self.hint(db))
        for n in range(seq + 1, limit + 1):
            doc = await self.get(db, n)
            if doc is not None:
                return doc
        return None

    async def top(self, db: Database) -> int:
        """Highest stored entry even past holes (reserved numbers whose writers are still in
        flight or died): a writer that syncs here never takes a number below one already stored,
        so a later delivery is not filed before an earlier one."""
        key = self._key(db)
        top = await self.head(db)
        last = await self._last_marked(db, block_of(top + 1))
        for n in range((last + 1) * MARK_EVERY, top + 1, -1):  # from the end of the last block down
            if await self.exists(db, n):
                top = n
                break
        _head_hint[key] = max(_head_hint.get(key, 0), top)
        _marked[key] = max(_marked.get(key, -1), last)
        return top

    async def _mark(self, db: Database, block: int) -> None:
        """Stores the markers up to `block`, in order, before any entry of `block` is stored."""
        key = self._key(db)
        while _marked.get(key, -1) < block:
            nxt = _marked.get(key, -1) + 1
            with contextlib.suppress(DuplicateKeyError):
                await group_commit.insert_one(db[self.collection], {"_id": self.marker_id(nxt), "at": utcnow()})
            _marked[key] = max(_marked.get(key, -1), nxt)

    async def append(self, db: Database, body: dict[str, Any], *, reserve: bool = False) -> tuple[int, str]:
        """Stores `body` as the next entry. Returns (seq, `_id`)."""
        key = self._key(db)
        if reserve:
            if key not in _marked:  # first write here since this process started: sync first
                await self.top(db)
            seq = self.hint(db) + 1
            _reserved[key] = seq
        else:
            seq = await self.head(db) + 1
        for _ in range(MAX_CLAIM_TRIES):
            _id = self.entry_id(seq)
            try:
                doc = {**body, "_id": _id, "seq": seq}
                if reserve:  # distinct numbers: concurrent appends can share one command
                    await self._mark(db, block_of(seq))
                    await group_commit.insert_one(db[self.collection], doc)
                else:  # all would try head+1 together, and a batch of them would have one winner
                    await db[self.collection].insert_one(doc)
            except PyMongoError as exc:
                if reserve and not isinstance(exc, DuplicateKeyError):
                    await self._abandon(db, seq)
                    raise
                # Another writer (or a tombstone) has it: move past what is stored.
                seq = max(seq, await (self.top(db) if reserve else self.head(db))) + 1
                if reserve:
                    seq = max(seq, self.hint(db) + 1)
                    _reserved[key] = seq
                continue
            _head_hint[key] = max(_head_hint.get(key, 0), seq)
            return seq, _id
        raise RuntimeError(f"could not claim an entry of {self.prefix!r}")

    async def _abandon(self, db: Database, seq: int) -> None:
        """Our insert failed (and may yet land): tombstone the number now rather than leave the
        reader a hole to wait out. Best effort: the database may be the thing that is down."""
        with contextlib.suppress(PyMongoError):
            await self.fill(db, seq)

    async def fill(self, db: Database, seq: int) -> bool:
        """Tombstones a hole. Returns False when a real entry got there first."""
        try:
            await db[self.collection].insert_one({"_id": self.entry_id(seq), "seq": seq, HOLE: True, "at": utcnow()})
        except DuplicateKeyError:
            return False
        return True

    async def get_cursor(self, db: Database) -> int:
        doc = await db[self.state_collection].find_one({"_id": self.cursor_id})
        return int(doc["seq"]) if doc else 0

    async def advance_cursor(self, db: Database, seq: int) -> None:
        """A hint: a concurrent reader may move it back a little, which only costs a re-read."""
        try:
            await db[self.state_collection].update_one({"_id": self.cursor_id}, {"$max": {"seq": seq}}, upsert=True)
        except DuplicateKeyError:  # two first upserts racing: the other one created it
            await db[self.state_collection].update_one({"_id": self.cursor_id}, {"$max": {"seq": seq}})
