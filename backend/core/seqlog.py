"""A durable sequenced log addressed by `_id`: entry n of a log is `_id` "<prefix><n>".

Why: FerretDB pushes down only `_id` equality, so a reader that walks n, n+1, ... reads one
document per step however large the collection grows, and a unique `_id` insert is the one race
arbiter every store makes atomic: taking n means inserting its `_id`, and exactly one writer gets
it. Used by the outbound queue ("q:<n>") and the inbound webhook lanes ("w:<lane>:<n>").

Two ways to take a number:
- `append`: tries head+1 after seeing head stored, so entries are exactly 1..head, no holes.
  Cheap when writers are few (the outbound queue). A log uses one way or the other, never both.
  A process's plain appends to one collection, of any of its logs, go out together: each takes
  its log's next number in arrival order and the batch is one *ordered* insert, so when one meets
  a number another process took, the batch stops right there (what went in before it is, per
  log, exactly head+1..k: no holes) and the rest number again, that log after the taken entry.
  One command per batch, and no two appends of one process ever fight over a number.
- `append(reserve=True)`: numbers are taken in blocks of MARK_EVERY (block k: k*MARK_EVERY+1 ..
  (k+1)*MARK_EVERY), each owned by one writing process, which hands its numbers out from a local
  counter and inserts them concurrently — one insert per entry even at high concurrency, batched
  by group commit. A writer that dies (or whose insert fails) between taking a number and storing
  it leaves a hole; a reader fills a hole with a tombstone (`fill`), and a late writer whose
  number was filled gets DuplicateKeyError and simply takes another. Nothing stored is skipped.

Blocks (reserving writers). A process opens block k by inserting its marker "<prefix>m<k>"
(unique `_id`: exactly one process wins it; the marker names it, `by`), and only the winner
stores entries in block k; readers store tombstones there. Rules:
  (1) markers have no holes: a writer inserts m<j> only once it knows m<j-1> stored (it read it,
      won it, or lost an insert of it);
  (2) before handing a number of its block k to an append that arrived at time t, the writer has
      seen m<k+1> absent in a read started after t, or won m<k> itself after t (one read serves
      every append that arrived before it started, so concurrent appends share it). When m<k+1>
      is stored, the writer leaves block k and opens the block above the highest marker;
  (3) within a block the owner hands numbers out in increasing order.
Order. If delivery A was acknowledged before delivery B arrived (in any process), then
seq(A) < seq(B). Let A be in block a and B in block b. m<a> was stored before A (its owner won
it before taking A's number), so before B arrived. If b < a, then m<b+1> (b+1 <= a) was stored
before B arrived (1), yet by (2) B's writer saw m<b+1> absent in a read started after B arrived,
or won m<b> after B arrived although (1) it was stored before: impossible either way. If b = a, one
process owns the block (the marker's one winner) and took A's number before B's (3). So b > a
and every number of block b lies above every number of block a. An append whose number a reader
tombstoned keeps its arrival and takes another number under the same rules, so this holds for
the number it finally stores; a restarted process holds no block and opens a new one above every
marker, so it never stores below an entry stored before it started. Deliveries in flight at the
same time may be stored in either order. This relies on a read seeing every write acknowledged
before the read started: so on FerretDB (one SQLite database), and on MongoDB for majority reads
on the primary that acknowledged the w=majority writes (a failover in between is the one gap).

Passing holes (what a reader does at a missing number n of block k):
- The owner left block k for a new one: in the same command as its new marker it stored a
  tombstone at its first number never handed out, with `rest` = the block's last number; the
  reader reads it and jumps to the next block. No wait.
- m<k+1> is stored, and n is still missing (the owner is idle, dead, or its insert in flight):
  `pass_superseded` tombstones what is left of block k at once, one command. An owner still
  inserting one of those numbers gets DuplicateKeyError, leaves the block and stores its entry
  in a new one, in order by the proof above. No wait.
- n is in the newest block: a writer may still be inserting it. `after` finds what is stored past
  n (only block k and this process's own reservations can hold it: at most MARK_EVERY reads),
  and a reader fills the run before it once that entry outlived a grace (the processor:
  backend/webhooks/processor.py). A quiet log's end costs at most MARK_EVERY reads to look past.
So writers alternating between processes (behind a balancer) cost the reader one tombstone read
per block switch (a marker read and one fill command when the left block's owner went idle),
and only the newest block ever waits for a grace.

Cost of a plain append: one insert, shared with the appends that arrived while the previous batch
was in flight, once this process has stored or seen an entry of the log (it tries the number after
that entry first), else a galloping search for the head before it. A number lost to another
process costs a retry of the rest of the batch (and, every LOSSES_BEFORE_SEARCH losses, a search).

Cost of a reserved append (database commands): the entry insert (group-committed), plus at most
one `_id` read of the next block's marker, shared by the appends that arrived while the previous
one was in flight; plus, once per block (every MARK_EVERY entries, or at each switch between
processes), one insert command carrying the new marker and the left block's `rest` tombstone; a
process's first append to a log also finds the highest marker (a few `_id` reads).

Process-local state (head, reservations, known markers, the block this process owns: the
process's runtime, backend/core/runtime.py) only makes
reads short and remembers which marker this process won: every rule is decided by the stored
`_id`s, and losing that state is a restart (the next append opens a new block). Entries are never
removed (persistence rule 1).
"""

import asyncio
import contextlib
import os
import socket
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import bson
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from backend.core import group_commit
from backend.core.clock import utcnow
from backend.core.db import Database
from backend.core.runtime import LogKey as Key
from backend.core.runtime import Runtime, runtime_of
from backend.core.tuning import APPEND_BATCH, APPEND_LOSSES_BEFORE_SEARCH, APPEND_TRANSIENT_RETRIES, QUEUE_KEPT

MAX_CLAIM_TRIES = 10_000
MARK_EVERY = 8  # numbers per block: a log end costs at most this many reads to look past
HOLE = "hole"  # field set on a tombstone entry
REST = "rest"  # on a tombstone: the numbers up to this one will never be stored either
WRITER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"  # named on the markers it wins


@dataclass
class _Block:
    """The block this process writes into, and what it knows of it."""

    block: int
    next: int  # the next number to hand out
    checked: int  # tick at which m<block+1> was last seen absent (or m<block> won)
    open: bool = True

    @property
    def end(self) -> int:
        return (self.block + 1) * MARK_EVERY


@dataclass
class _Append:
    log: "SeqLog"
    body: dict[str, Any]
    done: "asyncio.Future[dict[str, Any]]"


@dataclass
class _Appends:
    """One collection's plain appends waiting for this process's writer of it."""

    waiting: list[_Append] = field(default_factory=list)
    writing: bool = False


def block_of(seq: int) -> int:
    return (seq - 1) // MARK_EVERY


async def gallop(lo: int, present: Callable[[int], Awaitable[bool]]) -> int:
    """The highest n with `present(n)`, given `present(lo)` and no holes above it (a log whose
    numbers are taken in order): a galloping search, O(log gap) look-ups."""
    step = 1
    while await present(lo + step):
        lo, step = lo + step, step * 2
    hi = lo + step
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if await present(mid):
            lo = mid
        else:
            hi = mid
    return lo


class SeqLog:
    """`keeps_appends`: a plain log whose walker usually runs in the process that appended (a work
    queue: backend/core/attempts.py). Its entries are never updated, so the copy of an entry this
    process stored is the entry: `get` answers from it without a read until `forget_upto` (the
    walk's cursor passed it), or until a bound forgets the oldest."""

    def __init__(
        self,
        collection: str,
        prefix: str,
        *,
        state_collection: str | None = None,
        cursor_id: str | None = None,
        width: int = 0,
        keeps_appends: bool = False,
        announce: "SeqLog | None" = None,
    ) -> None:
        self.collection = collection
        self.prefix = prefix
        # Where a walker keeps its cursor (logs read by a walk: the queues, the webhook lanes).
        self.state_collection = state_collection
        self.cursor_id = cursor_id
        self.width = width  # digits of the number in `_id`, zero-padded (the realtime feed's 12)
        self.keeps_appends = keeps_appends
        # A reserving log's block openings where the log changes hands (`_open`), each appended
        # there once its marker is won (before any entry of the block is stored): one plain log
        # shared by many logs (the webhook lanes), so that a reader learns of other processes' new
        # blocks in any of them with one read.
        self.announce = announce

    def _key(self, db: Database) -> Key:
        return (db.name, self.collection, self.prefix)

    def entry_id(self, seq: int) -> str:
        return f"{self.prefix}{seq:0{self.width}d}"

    def marker_id(self, block: int) -> str:
        return f"{self.prefix}m{block}"

    def hint(self, db: Database) -> int:
        """Highest entry this process knows is stored (or reserved); a hint, never a rule."""
        key, rt = self._key(db), runtime_of(db)
        return max(rt.seqlog_heads.get(key, 0), rt.seqlog_reserved.get(key, 0))

    async def get(self, db: Database, seq: int) -> dict[str, Any] | None:
        if seq < 1:
            return None
        kept = runtime_of(db).seqlog_kept.get((*self._key(db), seq)) if self.keeps_appends else None
        if kept is not None:
            entry: dict[str, Any] = bson.decode(kept, db.codec_options)
            return entry
        return await db[self.collection].find_one({"_id": self.entry_id(seq)})

    def _keep(self, db: Database, entry: dict[str, Any]) -> None:
        """As stored: BSON keeps what a read would give back (datetimes to the millisecond)."""
        kept = runtime_of(db).seqlog_kept
        kept[(*self._key(db), int(entry["seq"]))] = bson.encode(entry)
        while len(kept) > QUEUE_KEPT:
            kept.popitem(last=False)

    def forget_upto(self, db: Database, after: int, upto: int) -> None:
        """Drops the kept entries after+1..upto (a walk's cursor moved past them)."""
        kept, key = runtime_of(db).seqlog_kept, self._key(db)
        if kept:
            for seq in range(after + 1, upto + 1):
                kept.pop((*key, seq), None)

    async def _stored(self, db: Database, _id: str) -> bool:
        return await db[self.collection].find_one({"_id": _id}, projection={"_id": 1}) is not None

    async def exists(self, db: Database, seq: int) -> bool:
        return seq < 1 or await self._stored(db, self.entry_id(seq))

    async def _marker_exists(self, db: Database, block: int) -> bool:
        return block < 0 or await self._stored(db, self.marker_id(block))

    async def ever_written(self, db: Database) -> bool:
        """Whether a writer ever took a number here (marker 0; entry 1 for logs older than markers)."""
        return await self._marker_exists(db, 0) or await self.exists(db, 1)

    async def head(self, db: Database, *, start: int = 0) -> int:
        """Highest stored entry below the first hole at or after the hint (or `start`, an entry
        the caller knows stored): galloping search. Without holes (plain `append`) that is the
        highest stored entry."""
        key, rt = self._key(db), runtime_of(db)
        hint = max(start, rt.seqlog_heads.get(key, 0))
        lo = await gallop(hint if await self.exists(db, hint) else 0, lambda n: self.exists(db, n))
        rt.seqlog_heads[key] = max(hint, lo)
        return lo

    async def _last_marked(self, db: Database, block: int) -> int:
        """Highest marked block at or after `block`, or block-1 when `block` has no marker."""
        if not await self._marker_exists(db, block):
            return block - 1
        return await self._highest_marked(db, block)

    async def _highest_marked(self, db: Database, known: int) -> int:
        """Highest marked block, given that `known`'s marker is stored (or -1). Markers have no holes."""
        return await gallop(known, lambda n: self._marker_exists(db, n))

    def _owned(self, db: Database, seq: int) -> _Block | None:
        """The block this process owns and still writes into, when `seq` lies in it. Only this
        process stores entries there (readers store tombstones, and only below a stored entry or
        in a block a newer one superseded, which `pass_superseded` then closes here), so nothing
        is stored there past the numbers it handed out. A block opened above it meanwhile is not
        seen here; a reader's `pass_superseded` passes the hole on its next look, so relying on
        this can only delay, never skip."""
        own = runtime_of(db).seqlog_blocks.get(self._key(db))
        return own if own is not None and own.open and own.block == block_of(seq) else None

    def unwritten(self, db: Database, seq: int) -> bool:
        """Whether `seq` is certainly not stored, without a read: it lies in this process's own
        block past every number it handed out (its own appends wake its walks). A polled walk at
        a quiet log's end then reads only the next block's marker."""
        own = self._owned(db, seq)
        return own is not None and seq >= own.next

    async def after(self, db: Database, seq: int, *, projection: dict[str, int] | None = None) -> dict[str, Any] | None:
        """The first entry stored after `seq` (a missing number), or None when nothing is stored
        past it. Looks up to the end of the highest marked block and to this process's own
        reservations: one read per number at most, however long the run of holes.
        `projection`: the fields wanted of it (a caller that only needs its position).

        In the block this process owns, only the numbers it handed out are read (`_owned`): none
        at a quiet log's end, which a polled reader looks past every few seconds per log."""
        own = self._owned(db, seq)
        if own is not None:
            limit = own.next - 1
        else:
            limit = max((await self._last_marked(db, block_of(seq)) + 1) * MARK_EVERY, self.hint(db))
        for n in range(seq + 1, limit + 1):
            doc = await db[self.collection].find_one({"_id": self.entry_id(n)}, projection=projection)
            if doc is not None:
                return doc
        return None

    async def top(self, db: Database) -> int:
        """Highest stored entry (tombstones included) even past holes."""
        key, rt = self._key(db), runtime_of(db)
        top = await self.head(db)
        last = await self._last_marked(db, block_of(top + 1))
        for n in range((last + 1) * MARK_EVERY, top + 1, -1):  # from the end of the last block down
            if await self.exists(db, n):
                top = n
                break
        rt.seqlog_heads[key] = max(rt.seqlog_heads.get(key, 0), top)
        rt.seqlog_marked[key] = max(rt.seqlog_marked.get(key, -1), last)
        return top

    async def append(self, db: Database, body: dict[str, Any], *, reserve: bool = False) -> tuple[int, str]:
        """Stores `body` as the next entry. Returns (seq, `_id`)."""
        if reserve:
            return await self._append_reserved(db, body)
        entry = await self.append_entry(db, body)
        return int(entry["seq"]), str(entry["_id"])

    async def append_entry(self, db: Database, body: dict[str, Any]) -> dict[str, Any]:
        """A plain append (module docstring): the entry as stored, once it is."""
        rt, loop = runtime_of(db), asyncio.get_running_loop()
        qkey = (db.name, self.collection)
        queue = rt.seqlog_appends.setdefault(qkey, _Appends())
        waiting = _Append(self, body, loop.create_future())
        waiting.done.add_done_callback(lambda f: f.cancelled() or f.exception())
        queue.waiting.append(waiting)
        if not queue.writing:
            queue.writing = True
            task = loop.create_task(_write_appends(db, qkey, queue))
            rt.seqlog_writers.add(task)
            task.add_done_callback(rt.seqlog_writers.discard)
        return await asyncio.shield(waiting.done)

    def _appended(self, db: Database, entry: dict[str, Any]) -> None:
        key, rt = self._key(db), runtime_of(db)
        rt.seqlog_heads[key] = max(rt.seqlog_heads.get(key, 0), int(entry["seq"]))
        if self.keeps_appends:
            self._keep(db, entry)

    async def _append_reserved(self, db: Database, body: dict[str, Any]) -> tuple[int, str]:
        key, rt = self._key(db), runtime_of(db)
        arrived = next(rt.seqlog_ticks)
        for _ in range(MAX_CLAIM_TRIES):
            seq = await self._take(db, arrived)
            _id = self.entry_id(seq)
            try:
                await group_commit.insert_one(db[self.collection], {**body, "_id": _id, "seq": seq})
            except DuplicateKeyError:
                # A reader tombstoned it: it is passing this block (a later one is open, or the
                # number outlived the grace). Leave the block; the next number comes from a new one.
                current = rt.seqlog_blocks.get(key)
                if current is not None and current.block == block_of(seq):
                    current.open = False
                continue
            except PyMongoError:
                await self._abandon(db, seq)
                raise
            rt.seqlog_heads[key] = max(rt.seqlog_heads.get(key, 0), seq)
            return seq, _id
        raise RuntimeError(f"could not claim an entry of {self.prefix!r}")

    @staticmethod
    def _lock(rt: Runtime, key: Key) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        held = rt.seqlog_locks.get(key)
        if held is None or held[0] is not loop:
            held = rt.seqlog_locks[key] = (loop, asyncio.Lock())
        return held[1]

    async def _take(self, db: Database, arrived: int) -> int:
        """A number for an append that arrived at tick `arrived`, under rule (2) of the module
        docstring: from this process's block once m<block+1> was seen absent after the arrival,
        else from a block opened after it."""
        key, rt = self._key(db), runtime_of(db)
        async with self._lock(rt, key):
            while True:
                current = rt.seqlog_blocks.get(key)
                if current is not None and current.open and current.next <= current.end:
                    if current.checked > arrived:
                        seq = current.next
                        current.next += 1
                        rt.seqlog_reserved[key] = max(rt.seqlog_reserved.get(key, 0), seq)
                        return seq
                    tick = next(rt.seqlog_ticks)
                    if not await self._marker_exists(db, current.block + 1):
                        current.checked = tick
                        continue
                    rt.seqlog_marked[key] = max(rt.seqlog_marked.get(key, -1), current.block + 1)
                    current.open = False
                tick = next(rt.seqlog_ticks)
                block = await self._open(db, current)
                rt.seqlog_blocks[key] = _Block(block, block * MARK_EVERY + 1, tick)

    async def _open(self, db: Database, left: _Block | None) -> int:
        """Wins the marker of a new block above every stored marker; returns its number. The
        `rest` tombstone of the block left behind goes in the same command as the first try."""
        key, rt = self._key(db), runtime_of(db)
        known = max(rt.seqlog_marked.get(key, -1), left.block if left is not None else -1)
        rest = []
        if left is not None and left.next <= left.end:
            rest = [{"_id": self.entry_id(left.next), "seq": left.next, HOLE: True, REST: left.end, "at": utcnow()}]
        block = known + 1  # usually free: tried without a read
        for _ in range(MAX_CLAIM_TRIES):
            marker = {"_id": self.marker_id(block), "by": WRITER, "at": utcnow()}
            outcome = (await group_commit.insert_each(db[self.collection], [marker, *rest]))[0]
            rest = []  # a lost `rest` insert only means a reader filled those numbers first
            if outcome is None:
                rt.seqlog_marked[key] = max(rt.seqlog_marked.get(key, -1), block)
                if self.announce is not None and (left is None or block != left.block + 1):
                    # Announced where the lane changes hands: this process's first block since it
                    # started, or one above another process's. A block that follows this
                    # process's own needs none: a reader idle in the block before it is this
                    # process, and any other reader has left that block behind (it reads on).
                    # Raises like any failed append: the block then stays empty (the next append
                    # opens and announces another), and readers pass it as any superseded block.
                    await self.announce.append(db, {"log": self.prefix, "block": block, "by": rt.id, "at": utcnow()})
                return block
            if not isinstance(outcome, DuplicateKeyError):
                raise outcome
            block = await self._highest_marked(db, block) + 1
        raise RuntimeError(f"could not open a block of {self.prefix!r}")

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

    async def fill_range(self, db: Database, first: int, last: int) -> list[int]:
        """Tombstones every missing number of first..last in one command (unordered, so a
        number an entry won does not stop the others). Returns the numbers it filled."""
        now = utcnow()
        docs = [{"_id": self.entry_id(n), "seq": n, HOLE: True, "at": now} for n in range(first, last + 1)]
        outcomes = await group_commit.insert_each(db[self.collection], docs)
        filled = []
        for n, outcome in zip(range(first, last + 1), outcomes, strict=True):
            if outcome is None:
                filled.append(n)
            elif not isinstance(outcome, DuplicateKeyError):
                raise outcome
        return filled

    async def pass_superseded(self, db: Database, seq: int) -> int | None:
        """Entry `seq` is missing. None while its block is the newest (a writer may still store
        it). Otherwise the next block is open and the owner of this one has moved on, or will at
        its next append: what is left of the block is tombstoned at once, and the answer is the
        highest h such that seq..h are tombstones now (seq - 1 when an entry won seq: read it)."""
        block = block_of(seq)
        if not await self._marker_exists(db, block + 1):
            return None
        key, rt = self._key(db), runtime_of(db)
        rt.seqlog_marked[key] = max(rt.seqlog_marked.get(key, -1), block + 1)
        own = rt.seqlog_blocks.get(key)
        if own is not None and own.block == block:  # superseded: our writer leaves it (as `_take` would)
            own.open = False
        filled = set(await self.fill_range(db, seq, (block + 1) * MARK_EVERY))
        h = seq - 1
        while h + 1 in filled:
            h += 1
        return h

    def _cursor(self) -> tuple[str, str]:
        if self.state_collection is None or self.cursor_id is None:
            raise TypeError(f"the log {self.prefix!r} is not walked: it keeps no cursor")
        return self.state_collection, self.cursor_id

    async def get_cursor(self, db: Database) -> int:
        collection, cursor_id = self._cursor()
        doc = await db[collection].find_one({"_id": cursor_id})
        return int(doc["seq"]) if doc else 0

    async def advance_cursor(self, db: Database, seq: int) -> None:
        """A hint: a concurrent reader may move it back a little, which only costs a re-read."""
        collection, cursor_id = self._cursor()
        try:
            await db[collection].update_one({"_id": cursor_id}, {"$max": {"seq": seq}}, upsert=True)
        except DuplicateKeyError:  # two first upserts racing: the other one created it
            await db[collection].update_one({"_id": cursor_id}, {"$max": {"seq": seq}})


async def _write_appends(db: Database, qkey: tuple[str, str], queue: _Appends) -> None:
    try:
        while queue.waiting:
            batch, queue.waiting = queue.waiting[:APPEND_BATCH], queue.waiting[APPEND_BATCH:]
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
        queues = runtime_of(db).seqlog_appends
        if not queue.waiting and queues.get(qkey) is queue:
            del queues[qkey]


async def _append_batch(db: Database, batch: list[_Append]) -> None:
    """Numbers `batch` (one collection's appends, of one or more logs) after each log's head as
    this process knows it, in arrival order, and inserts it in order (module docstring)."""
    rt, pending, losses = runtime_of(db), batch, Counter[Key]()
    for _ in range(MAX_CLAIM_TRIES):
        heads: dict[Key, int] = {}
        entries = []
        for w in pending:
            key = w.log._key(db)
            if key not in heads:
                known = rt.seqlog_heads.get(key, 0)
                heads[key] = known if known > 0 else await w.log.head(db)
            heads[key] += 1
            entries.append({**w.body, "_id": w.log.entry_id(heads[key]), "seq": heads[key]})
        stored, taken = await _insert_in_order(db[pending[0].log.collection], entries)
        for w, entry in zip(pending[:stored], entries[:stored], strict=True):
            w.log._appended(db, entry)
            w.done.set_result(entry)
        pending = pending[stored:]
        if not pending:
            return
        if taken:
            # Another writer has that number, so it is stored: the log numbers after it (and
            # searches for the real head now and then, when that writer keeps going). Other
            # logs' entries after it were not tried and keep their numbers.
            log, key = pending[0].log, pending[0].log._key(db)
            rt.seqlog_heads[key] = max(rt.seqlog_heads.get(key, 0), int(entries[stored]["seq"]))
            losses[key] += 1
            if losses[key] % APPEND_LOSSES_BEFORE_SEARCH == 0:
                await log.head(db)
    raise RuntimeError(f"could not claim entries of {batch[0].log.collection!r}")


async def _insert_in_order(collection: Any, entries: list[dict[str, Any]]) -> tuple[int, bool]:
    """Inserts `entries` in order: how many went in, and whether the next one met a taken `_id`.
    Retries transient store errors (FerretDB answers SQLITE_BUSY under write bursts). An attempt
    whose answer was lost may have landed after all: the retry then meets its own `_id`s, which
    are told from another writer's by what they hold (`_landed`), so it is stored once."""
    uncertain = False
    for attempt in range(APPEND_TRANSIENT_RETRIES):
        try:
            if len(entries) == 1:
                await collection.insert_one(entries[0])
            else:
                await collection.insert_many(entries, ordered=True)
            return len(entries), False
        except DuplicateKeyError:
            if uncertain and await _landed(collection, entries):
                return 1, False
            return 0, True
        except BulkWriteError as exc:
            details = exc.details or {}
            errors = details.get("writeErrors") or []
            if errors and errors[0].get("code") in group_commit.DUPLICATE_CODES:
                index = int(errors[0]["index"])
                if uncertain and (landed := await _landed(collection, entries[index:])):
                    return index + landed, False  # the rest go again, numbered after them
                return index, True
            if inserted := int(details.get("nInserted") or 0):
                return inserted, False  # the rest go again at once
            if attempt == APPEND_TRANSIENT_RETRIES - 1:
                raise
            uncertain = True
        except PyMongoError:
            if attempt == APPEND_TRANSIENT_RETRIES - 1:
                raise
            uncertain = True
        await asyncio.sleep(0.05 * 4**attempt)
    raise AssertionError("unreachable")


async def _landed(collection: Any, entries: list[dict[str, Any]]) -> int:
    """How many of `entries`, from the first, are stored as this writer wrote them (an earlier
    attempt's, whose answer was lost): equal to the entry as the store keeps it (datetimes to the
    millisecond). Another writer's entry under that number holds another body. Read one by one,
    by `_id`: the only look-up FerretDB does not scan for."""
    options = collection.codec_options
    landed = 0
    for entry in entries:
        stored = await collection.find_one({"_id": entry["_id"]})
        if stored != bson.decode(bson.encode(entry, codec_options=options), codec_options=options):
            break
        landed += 1
    return landed
