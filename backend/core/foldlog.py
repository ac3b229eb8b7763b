"""Exactly-once contributions folded into a compacted state, on a store whose every update is
read → modify → write the whole document (FerretDB v1), where concurrent $inc's on one document
lose updates: the ticket counters (backend/tickets/counters.py) and the reports (backend/reports)
build on it (docs/ARCHITECTURE.md).

A *bucket* (any string: a tenant, a tenant's month) has
- a contribution log: entry n is `_id` "<bucket>:<n>" of `entries` (backend/core/seqlog.py, plain
  append: entries exactly 1..head, no holes). Entries are appended, never updated or removed;
- a claim per contribution key (backend/core/natural_keys.py, kind `claim_kind`, per bucket
  unless `claims_by_bucket` is False for keys unique across buckets): key -> the entry that
  counts it, first insert wins and never changes. A retried or concurrent writer may append one
  contribution twice; only its canonical entry counts, so it counts exactly once;
- a totals document per *view* (`totals/<bucket>|<view>`): `{watermark: w, state}` = the view's
  fold of the canonical entries 1..w, written as one pair by a compactor. A view is a shape a
  reader needs (a rollup, a breakdown); each is its own consistent snapshot, so views never
  need to agree on a watermark. Every stored pair is some compactor's
  consistent snapshot, so two compactors at once (or a FerretDB write-back of an older pair)
  can only move the watermark back: a longer tail for the next reader, never a wrong figure.
  No lease is needed for correctness, so none is taken. A totals document may also carry a
  caller's *marks* (`start`, `Totals.marks`), which compaction keeps. Read, it is a `Totals`.

Reading a view: its totals, then the tail past the watermark (read a window at a time), where an
entry counts when its key is not yet counted in this tail and its claim points to it or does not
exist yet (its writer is between append and claim, or leaves the claim to the compactor:
`claim_on_write=False`). Cost: 2 + 2 x tail `_id` reads, whatever the
history. Round trips: the reader remembers, per view, the watermark and the tail's end it last
saw (a *hint*, in this process's runtime: backend/core/runtime.py) and reads the totals and the
entries from that watermark up to one past that end in the same round. The entries count only if
the totals carry that same watermark (entries are 1..head without holes and never change, so
entries w+1.. are the tail of any totals at w, whoever wrote them); otherwise the tail is read
after the totals as without a hint. A hint only chooses which `_id`s to read with the totals: a
wrong or stale one costs the round it would have saved, never a figure. So a quiet bucket (a
past month) costs one round, its totals and an absent entry read together; a bucket with a tail
two (its entries, then their claims).
A writer compacts at every `compact_every`-th entry, a reader past a tail of `reader_compacts_at`.
The writer's compaction folds up to its own entry, and takes the entries it folds from those this
process appended (kept as stored, in the runtime) when they cover the whole stretch past the
views' watermarks: entries never change, so a stored entry is the same bytes whichever way it is
read; where one is missing (another process appended it, or it was forgotten) the stretch is read.
A log that `keeps_totals` also starts each compaction, a writer's or a reader's, from the pair
this process last wrote (or read) for each view, as stored (BSON, in the runtime), and reads
only the views it does not remember, together: a process compacting one bucket again and again
reads no totals. That pair is a consistent snapshot like any stored one (the fold of the canonical
entries 1..w is the same whoever computes it), so folding on from it is as exact as from the
stored pair, whether that one has moved on since (another process compacted further: this one
writes an older watermark back, a longer tail for the next reader) or back (a write-back).
Not for totals with marks: a remembered pair would write its marks back over a newer one
(`start`, a repair) at every compaction of a running process, so a pair with marks is never
remembered, and a log whose marks matter (tickets/counters.py) does not keep totals at all.

`fold(state, body)` must be deterministic; it may be applied in any order to contributions that
commute (counts, multisets), and callers that need order (a set of open items) rely on each key's
canonical entries being appended in the order their events happened (see reports/aggregates.py).
"""

import asyncio
import contextlib
import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import bson
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError, WriteConcernError

from backend.core import natural_keys
from backend.core.clock import utcnow
from backend.core.db import Database
from backend.core.logging import get_logger
from backend.core.runtime import runtime_of
from backend.core.seqlog import SeqLog

log = get_logger("core.foldlog")

Doc = dict[str, Any]  # a stored entry (or totals document)
State = dict[str, Any]  # a view's fold
Fold = Callable[[State, Any], None]  # (state, an entry as its view loads it)
Codec = Callable[[State], State]
READ_WINDOW = 8  # tail entries (and their claims) read concurrently past the first: a tail costs ~3 round trips
HINTS = 20_000  # views whose last seen watermark and tail end a process remembers (module docstring)
APPENDED = 1_000  # buckets whose latest appended entries a process keeps for its compactions
# Views whose last written (or read) totals a process keeps for its compactions (`keeps_totals`):
# the views of the buckets APPENDED keeps entries for, a tenant being two (its month's 6 views and
# its live one: 500 tenants). Past that, the least recently compacted are read again, as
# without. Each is its stored document: a few KB, a busy tenant's month view up to ~60 KB
# (BENCHMARKS.md, Reports), so at most ~200 MB were every view a busy one.
TOTALS_KEPT = 3_500


@dataclass
class Totals:
    """A view's totals document as read (module docstring): `state`, decoded, is the fold of the
    canonical entries 1..`watermark`; `marks` are the caller's, written with it. A read's answer
    is one too, its watermark the last entry of the tail it folded on."""

    watermark: int = 0
    state: State = field(default_factory=dict)
    marks: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class View:
    """One folded shape of a bucket's entries, stored as its own totals document (`_id`
    "<bucket>" for the view named "", "<bucket>|<name>" otherwise) with its own watermark:
    a reader reads the one view it needs. `encode`/`decode`: the state as stored and back;
    `load`: a stored entry as `fold` takes it (a caller's model; the document itself by default)."""

    fold: Fold
    encode: Codec = dict
    decode: Codec = dict
    load: Callable[[Doc], Any] = lambda doc: doc

    def add(self, state: State, entry: Doc) -> None:
        self.fold(state, self.load(entry))


def _present(entries: list[Doc | None]) -> list[Doc]:
    """The entries read up to the first absent one: a log has no holes, so an entry read past
    an absent one was appended after that read (it belongs to a later reader)."""
    out: list[Doc] = []
    for entry in entries:
        if entry is None:
            break
        out.append(entry)
    return out


def _duplicate(error: Mapping[str, Any]) -> bool:
    """A bulk statement's unique-index violation (FerretDB v1 may pass SQLite's own words through)."""
    return error.get("code") == 11000 or "UNIQUE constraint failed" in str(error.get("errmsg"))


async def _unread_claim() -> int | None:
    return None


@dataclass(kw_only=True, eq=False)
class FoldLog:
    """`key_field`, `state_field`, `claims_by_bucket`: where an entry keeps its key, a totals
    document its state, and whether a claim's `_id` names the bucket (the stored layout).
    `claim_on_write=False`: `record` appends without claiming, and the compactor claims the
    entries it folds, together (`compact`); for views whose fold commutes (counts), whose
    writers do not need to know whether their copy counts (`record` then answers True for an
    append). Exactness is unchanged: a reader counts an unclaimed entry once per key in its
    tail (the first copy; a later copy of the key is skipped, and a claimed key counts only at
    its claim), and nothing is folded into totals before it is claimed, so each key counts
    once whichever copy ends up canonical. `keeps_totals`: compactions start from the totals
    this process last wrote or read (module docstring); only for totals without marks."""

    entries: str
    totals: str
    claim_kind: str
    views: Mapping[str, View]
    compact_every: int = 16
    reader_compacts_at: int = 64
    max_fold: int = 5_000
    key_field: str = "key"
    state_field: str = "state"
    claims_by_bucket: bool = True
    claim_on_write: bool = True
    # Compactions start from this process's own last pair of each view (module docstring); never
    # for totals that carry marks.
    keeps_totals: bool = False

    def _log(self, bucket: str) -> SeqLog:
        # Never walked: the watermark lives in the totals documents.
        return SeqLog(self.entries, f"{bucket}:")

    @staticmethod
    def _doc_id(bucket: str, view: str) -> str:
        return f"{bucket}|{view}" if view else bucket

    def _compaction_lock(self, db: Database, bucket: str) -> asyncio.Lock:
        return runtime_of(db).process_locks.setdefault((db.name, f"{self.entries}/{bucket}|compact"), asyncio.Lock())

    def _claim_parts(self, bucket: str, key: str) -> tuple[str, ...]:
        return (bucket, key) if self.claims_by_bucket else (key,)

    async def canonical(self, db: Database, bucket: str, key: str) -> int | None:
        bound = await natural_keys.lookup(db, self.claim_kind, *self._claim_parts(bucket, key))
        return int(bound) if bound is not None else None

    async def _claim(self, db: Database, bucket: str, key: str, seq: int) -> int:
        bound, _ = await natural_keys.claim(db, self.claim_kind, *self._claim_parts(bucket, key), target=str(seq))
        return int(bound)

    async def record(self, db: Database, bucket: str, key: str, body: Mapping[str, Any], *, check: bool = True) -> bool:
        """Appends `body` as contribution `key` of `bucket` unless it is counted already.
        Returns True only to the one call whose entry counts (its claim's first insert, or a
        compactor's on its behalf), False to every other: a repeat that found it counted, or a
        racer whose copy lost the claim. Safe to repeat and to race with itself. `check=False`
        skips the look-up for a caller that knows no entry exists (it just wrote the event), or
        whose repeats are rare where claims are left to the compactor (the look-up finds only
        compacted contributions there; a repeat's copy is appended, and never counts)."""
        if check and await self.canonical(db, bucket, key) is not None:
            return False
        # This process's concurrent appends to the bucket go out together (core/seqlog.py).
        stored = await self._log(bucket).append_entry(
            db, {**body, self.key_field: key, "bucket": bucket, "at": utcnow()}
        )
        seq = int(stored["seq"])
        self._appended(db, bucket, stored)
        counts = await self._claim(db, bucket, key, seq) == seq if self.claim_on_write else True
        if seq % self.compact_every == 0:
            try:
                # One writer's compaction of a bucket at a time in this process: the next one
                # starts from the watermark the previous wrote, so it folds only entries it kept
                # and claims only keys not claimed yet (at once, both re-read and re-claimed the
                # stretch the first was folding, each lost claim a read).
                async with self._compaction_lock(db, bucket):
                    await self.compact(db, bucket, upto=seq)
            except PyMongoError as exc:  # the entry is stored; the next compaction folds it
                log.warning("compaction failed", bucket=bucket, error=str(exc))
        return counts

    def _appended(self, db: Database, bucket: str, stored: Doc) -> None:
        """Keeps `stored` (this process's entry, as stored) for the compaction of its bucket, until
        a compaction folded it (at most the last 4 x `compact_every` entries: a burst's writers
        wait for each other's compactions) of at most APPENDED buckets."""
        kept = runtime_of(db).foldlog_appended
        key = (db.name, f"{self.entries}/{bucket}")
        entries = kept.pop(key, None) or {}
        kept[key] = entries  # the most recent last
        seq = int(stored["seq"])
        entries[seq] = bson.encode(stored)
        self._forget(db, bucket, seq - 4 * self.compact_every)
        while len(kept) > APPENDED:
            kept.popitem(last=False)

    def _forget(self, db: Database, bucket: str, upto: int) -> None:
        entries = runtime_of(db).foldlog_appended.get((db.name, f"{self.entries}/{bucket}"), {})
        for old in [n for n in entries if n <= upto]:
            del entries[old]

    def _kept(self, db: Database, bucket: str, after: int, upto: int) -> list[Doc] | None:
        """Entries after+1..upto as stored, when this process kept every one of them."""
        entries = runtime_of(db).foldlog_appended.get((db.name, f"{self.entries}/{bucket}"), {})
        if any(n not in entries for n in range(after + 1, upto + 1)):
            return None
        return [bson.decode(entries[n], db.codec_options) for n in range(after + 1, upto + 1)]

    async def _totals(self, db: Database, bucket: str, view: str) -> Totals:
        doc = await db[self.totals].find_one({"_id": self._doc_id(bucket, view)})
        return self._decoded(doc, self.views[view].decode)

    def _marks(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in doc.items() if k not in ("_id", "watermark", self.state_field, "updated_at")}

    def _decoded(self, doc: Mapping[str, Any] | None, decode: Codec) -> Totals:
        if not doc:
            return Totals()
        return Totals(int(doc["watermark"]), decode(dict(doc[self.state_field] or {})), self._marks(doc))

    def _remember(self, db: Database, bucket: str, view: str, doc: Mapping[str, Any]) -> None:
        """Keeps `doc` (a view's totals document this process wrote or read) as its BSON, a copy
        no later fold can touch, for the next compaction of the bucket (`keeps_totals`), unless
        it has marks or this process keeps a pair further on (both are consistent: the further
        one leaves the shorter tail)."""
        if not self.keeps_totals:
            return
        kept = runtime_of(db).foldlog_totals
        key = (db.name, self.totals, self._doc_id(bucket, view))
        if self._marks(doc):
            kept.pop(key, None)  # the marks are read with the totals from now on
            return
        watermark = int(doc["watermark"])
        known = kept.pop(key, None)
        kept[key] = known if known is not None and known[0] > watermark else (watermark, bson.encode(doc))
        while len(kept) > TOTALS_KEPT:
            kept.popitem(last=False)

    def _recalled(self, db: Database, bucket: str, view: str) -> Totals | None:
        """The view's totals as this process last wrote or read them, if it keeps them."""
        if not self.keeps_totals:
            return None
        kept = runtime_of(db).foldlog_totals
        key = (db.name, self.totals, self._doc_id(bucket, view))
        known = kept.get(key)
        if known is None:
            return None
        kept.move_to_end(key)
        return self._decoded(bson.decode(known[1], db.codec_options), self.views[view].decode)

    async def _start_totals(self, db: Database, bucket: str) -> dict[str, Totals]:
        """Each view's totals for a compaction: remembered (`keeps_totals`), else read, the views
        not remembered all at once."""
        read: dict[str, Totals | None] = {v: self._recalled(db, bucket, v) for v in self.views}
        missing = [v for v, totals in read.items() if totals is None]
        docs = await asyncio.gather(*(db[self.totals].find_one({"_id": self._doc_id(bucket, v)}) for v in missing))
        for view, doc in zip(missing, docs, strict=True):
            if doc:
                self._remember(db, bucket, view, {k: v for k, v in doc.items() if k != "_id"})
            read[view] = self._decoded(doc, self.views[view].decode)
        return {v: totals for v, totals in read.items() if totals is not None}

    def _document(self, view: str, totals: Totals) -> Doc:
        """`totals` as stored: its watermark, its state encoded, its marks."""
        encoded = self.views[view].encode(totals.state)
        return {"watermark": totals.watermark, self.state_field: encoded, "updated_at": utcnow(), **totals.marks}

    async def _tail(
        self,
        db: Database,
        bucket: str,
        after: int,
        limit: int | None = None,
        *,
        ahead: list[Doc | None] | None = None,
        with_claims: bool = True,
    ) -> list[Doc]:
        """The entries after `after` (at most `limit`, give or take a window), each with
        `_canonical` (its claim, or None while its writer is between append and claim), read
        READ_WINDOW at a time; a window's claims are read with the next window's entries (a
        claim is still read after its entry), so a short tail costs the probe and one more round.
        `ahead`: entries after+1, after+2, ... already read (None where absent), for the probe.
        `with_claims=False`: the claims are not read (`_canonical` None throughout: the caller claims)."""
        log_ = self._log(bucket)
        out: list[Doc] = []
        if ahead is None:
            ahead = [await log_.get(db, after + 1)]  # most tails are empty: one read says so
        run = _present(ahead)
        if not run or limit == 0:
            return out
        window, n = len(ahead), after + len(run)  # n: the last entry read
        while run:
            more = len(run) == window and (limit is None or len(out) + len(run) < limit)
            claims_of = asyncio.gather(
                *(self.canonical(db, bucket, str(e[self.key_field])) if with_claims else _unread_claim() for e in run)
            )
            if more:
                claims, got = await asyncio.gather(
                    claims_of, asyncio.gather(*(log_.get(db, n + i) for i in range(1, READ_WINDOW + 1)))
                )
            else:
                claims, got = await claims_of, []
            out.extend({**entry, "_canonical": claim} for entry, claim in zip(run, claims, strict=True))
            run, window = _present(got), READ_WINDOW
            n += len(run)
        return out

    async def compact(self, db: Database, bucket: str, *, upto: int | None = None) -> int:
        """Folds the entries past each view's watermark (up to entry `upto` when given) into its
        totals; returns the highest watermark written. Safe to run concurrently with itself and
        with writers. The watermark is the stored one, or, where the log `keeps_totals`, the one
        of the pair this process remembers for the view (module docstring)."""
        read = await self._start_totals(db, bucket)
        start = min(totals.watermark for totals in read.values())
        n = start
        # Where writers leave the claims to compactors, the tail's claims are not read: the claim
        # insert itself answers with the key's claim when one exists (an earlier or concurrent
        # compactor's), one read for a lost insert instead of one per entry.
        kept = self._kept(db, bucket, start, upto) if upto is not None and not self.claim_on_write else None
        if kept is not None:  # this process appended each of them: nothing to read
            tail = [{**entry, "_canonical": None} for entry in kept]
        else:
            limit = self.max_fold if upto is None else max(0, min(self.max_fold, upto - start))
            tail = await self._tail(db, bucket, start, limit, with_claims=self.claim_on_write)
            tail = [entry for entry in tail if upto is None or int(entry["seq"]) <= upto]
        # Unclaimed entries are claimed before anything is folded, so no reader counts another
        # copy: all at once (one insert command through group commit), the first copy of a key
        # in the log first (a later copy of the key reads that claim, and loses).
        unclaimed: dict[str, int] = {}
        for entry in tail:
            if entry["_canonical"] is None:
                unclaimed.setdefault(str(entry[self.key_field]), int(entry["seq"]))
        bound = await asyncio.gather(*(self._claim(db, bucket, key, seq) for key, seq in unclaimed.items()))
        claimed = dict(zip(unclaimed, bound, strict=True))
        for entry in tail:
            n = int(entry["seq"])
            canonical = entry["_canonical"]
            if canonical is None:
                canonical = claimed[str(entry[self.key_field])]
            if canonical != n:
                continue
            for name, totals in read.items():
                if n > totals.watermark:
                    self.views[name].add(totals.state, entry)
        # The marks as read with the totals (write_totals replaces the document).
        moved = {
            name: dataclasses.replace(totals, watermark=n) for name, totals in read.items() if n > totals.watermark
        }
        await self.write_all(db, bucket, moved)
        self._forget(db, bucket, n)  # folded: the next compaction starts past them
        return n

    async def write_totals(self, db: Database, bucket: str, view: str, totals: Totals) -> None:
        """One write of the whole pair (module docstring) with its marks: the document is replaced,
        so a caller passes every mark it keeps (compaction: those it read with the totals).

        Not `$set`: FerretDB v1 skips a `$set` of a subdocument whose values equal the stored
        one's in order, whatever its keys (measured: counts {a|…|atendendo: 1, …} then
        {a|…|finalizado: 1, …}, three keys each, stored the old counts beside the new watermark —
        a wrong figure for every reader). A replacement is stored as given. On FerretDB an update
        is a read and a write-back of the whole document anyway, so a mark written between this
        writer's read and its write could be lost either way; the one mark (`complete`, written
        when a tenant starts or by scripts/ticket_counts.py --fix) then makes readers count from
        the ticket documents until the next --fix: slower, never wrong."""
        await self.write_all(db, bucket, {view: totals})

    async def write_all(self, db: Database, bucket: str, written: Mapping[str, Totals]) -> None:
        """`write_totals` of each view in `written`, in one `update` command (a compaction writes
        every view it moved: one round trip instead of one per view), one replacement statement
        each, unordered: a statement's failure does not stop the others. Sent as the command
        itself: on FerretDB v1 a statement's duplicate key (two first upserts) comes back without
        the counts PyMongo's bulk_write reads, which then raises KeyError, not BulkWriteError."""
        views = list(written)
        pairs = [({"_id": self._doc_id(bucket, v)}, self._document(v, t)) for v, t in written.items()]
        lost = await self._replace(db, pairs, upsert=True) if pairs else []
        failed = [views[e["index"]] for e in lost]
        if lost and all(_duplicate(e) for e in lost):
            # Two first upserts of a document: it exists now, so these replace it.
            lost = await self._replace(db, [pairs[e["index"]] for e in lost], upsert=False)
            failed = [failed[e["index"]] for e in lost]
        for view, (_, doc) in zip(views, pairs, strict=True):
            if view not in failed:  # stored: the pair the next compaction may start from
                self._remember(db, bucket, view, doc)
        if lost:
            raise BulkWriteError({"writeErrors": lost})

    async def _replace(self, db: Database, pairs: list[tuple[Doc, Doc]], *, upsert: bool) -> list[Doc]:
        """Its statements' write errors (a write concern error raises)."""
        updates = [{"q": q, "u": u, "upsert": upsert} for q, u in pairs]
        concern = db.write_concern.document
        reply = await db.command("update", self.totals, updates=updates, ordered=False, writeConcern=concern)
        if "writeConcernError" in reply:
            raise WriteConcernError(str(reply["writeConcernError"]))
        return list(reply.get("writeErrors", []))

    async def start(self, db: Database, bucket: str, view: str = "", *, marks: Mapping[str, Any]) -> None:
        """A view's first totals (nothing folded yet) carrying `marks`, unless it has totals already."""
        doc = {"_id": self._doc_id(bucket, view), **self._document(view, Totals(marks=marks))}
        with contextlib.suppress(DuplicateKeyError):  # a retry, or totals written already
            await db[self.totals].insert_one(doc)

    async def read(self, db: Database, bucket: str, view: str = "", *, decode: Codec | None = None) -> Totals:
        """The view as of now: its totals plus the tail past their watermark, with the marks its
        totals document carries. The tail is read, with a hint, in the totals' round (module
        docstring). `decode`: the view's own unless given (a reader that needs part of the state
        may decode only that part; the tail's entries are folded onto it whole)."""
        _id = self._doc_id(bucket, view)
        hints = runtime_of(db).foldlog_hints
        hint = hints.get((db.name, self.totals, _id))
        stored = db[self.totals].find_one({"_id": _id})
        ahead: list[Doc | None] | None = None
        if hint is None:
            doc = await stored
        else:
            log_, (guess, end) = self._log(bucket), hint
            seqs = range(guess + 1, min(end, guess + READ_WINDOW) + 2)  # past the end seen: one more
            doc, ahead = await asyncio.gather(stored, asyncio.gather(*(log_.get(db, n) for n in seqs)))
        totals = self._decoded(doc, decode or self.views[view].decode)
        if hint is not None and totals.watermark != hint[0]:
            ahead = None  # read for another watermark: not this tail
        counted: set[str] = set()
        tail = await self._tail(db, bucket, totals.watermark, ahead=ahead)
        if len(hints) >= HINTS:
            hints.clear()
        end = int(tail[-1]["seq"]) if tail else totals.watermark
        hints[(db.name, self.totals, _id)] = (totals.watermark, end)
        for entry in tail:
            key = str(entry[self.key_field])
            if key in counted:
                continue
            canonical = entry["_canonical"]
            if canonical is None or canonical == int(entry["seq"]):
                counted.add(key)
                self.views[view].add(totals.state, entry)
        if len(tail) >= self.reader_compacts_at:
            with contextlib.suppress(PyMongoError):  # a faster read next time, nothing more
                await self.compact(db, bucket)
        return dataclasses.replace(totals, watermark=end)

    async def refold(self, db: Database, bucket: str, view: str = "") -> tuple[Totals, Totals]:
        """(the stored totals, the same with the canonical entries 1..watermark folded afresh):
        whether the stored totals are their own entries' fold (an operator's check; reads the log)."""
        stored = await self._totals(db, bucket, view)
        folded = Totals(stored.watermark, {}, stored.marks)
        for entry in await self._tail(db, bucket, 0, stored.watermark):
            if int(entry["seq"]) <= stored.watermark and entry["_canonical"] == int(entry["seq"]):
                self.views[view].add(folded.state, entry)
        return stored, folded

    async def claims(self, db: Database, bucket: str) -> dict[str, int]:
        """key -> its counting entry, for every claimed contribution of `bucket` (of every bucket
        when claims do not name it): an operator's scan of one claim kind."""
        prefix = natural_keys.key_id(self.claim_kind, *self._claim_parts(bucket, ""))
        out: dict[str, int] = {}
        async for doc in db[natural_keys.COLLECTION].find({"_id": {"$regex": f"^{re.escape(prefix)}"}}):
            out[str(doc["_id"])[len(prefix) :]] = int(doc["target"])
        return out
