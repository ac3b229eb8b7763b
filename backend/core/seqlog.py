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
  (or whose insert fails) between taking a number and storing it leaves a hole; the reader fills
  a hole that outlived a grace period with a tombstone (`fill`), and a late writer whose number
  was filled gets DuplicateKeyError and simply takes another. Nothing stored is ever skipped.

Process-local hints (head, reservations, cursors) only make reads short; every rule is decided
by the stored `_id`s. Entries are never removed (persistence rule 1).
"""

import contextlib
from typing import Any

from pymongo.errors import DuplicateKeyError, PyMongoError

from backend.core import group_commit
from backend.core.clock import utcnow
from backend.core.db import Database

MAX_CLAIM_TRIES = 10_000
PROBE_FAR = 1024  # widest run of holes looked past (bounded by writers in flight at a crash)
HOLE = "hole"  # field set on a tombstone entry

_head_hint: dict[tuple[str, str, str], int] = {}
_reserved: dict[tuple[str, str, str], int] = {}


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

    async def top(self, db: Database) -> int:
        """Highest stored entry even past holes (reserved numbers whose writers are still in
        flight or died), probing up to PROBE_FAR beyond each: a writer that re-syncs here never
        takes a number below one already stored, so a later delivery is not filed earlier."""
        key = self._key(db)
        top = await self.head(db)
        while True:
            step, beyond = 2, 0
            while step <= PROBE_FAR:
                if await self.exists(db, top + step):
                    beyond = top + step
                    break
                step *= 2
            if not beyond:
                return top
            _head_hint[key] = max(_head_hint.get(key, 0), beyond)
            top = await self.head(db)

    async def append(self, db: Database, body: dict[str, Any], *, reserve: bool = False) -> tuple[int, str]:
        """Stores `body` as the next entry. Returns (seq, `_id`)."""
        key = self._key(db)
        if reserve:
            seq = self.hint(db) + 1
            _reserved[key] = seq
        else:
            seq = await self.head(db) + 1
        for _ in range(MAX_CLAIM_TRIES):
            _id = self.entry_id(seq)
            try:
                doc = {**body, "_id": _id, "seq": seq}
                if reserve:  # distinct numbers: concurrent appends can share one command
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
