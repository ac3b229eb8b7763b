"""What the durable workers share — the outbound send (backend/outbound/worker.py) and the inbound
media fetch (backend/media/worker.py): a walk over their queue, and a ledger of attempts per message.

The walk (`QueueWalk`) reads a plain-append queue (backend/core/seqlog.py) from its stored cursor
in pages that wrap around, so an entry waiting out its backoff never hides the ones behind it. It
remembers the entries that need nothing more (a hint: finished never turns back) and moves the
cursor (a hint too) past the finished ones at the front. A process that queues something wakes its
own walk, whose pass then looks only at the new entries, reading nothing it already knows; the
polls, every `poll_seconds` however often it is woken, read the cursor and the head and look at
everything still open.

Attempt n of message m is the document `_id` "<m>:<n>", and inserting it is the claim: a unique
`_id` insert is atomic on FerretDB as on MongoDB, where a filtered update is not (FerretDB v1
reads, modifies and writes back by `_id`, outside any transaction), so exactly one worker of any
process makes each attempt. Attempts are claimed in order (n once n-1 is stored), so the first
missing number ends them. A claim holds a lease; the claimer then writes its verdict by `_id`:
the work's own result word ("sent", "stored", ...) or "error" with the reason, whether it is
`retryable`, and `retry_at` after an exponential backoff.

What `step` decides from the last attempt of the current round (a round restarts the count: the
media retry action):
- unfinished, under its lease: another worker is on it; wait.
- unfinished, lease over: its worker died. `answered` may find its answer another way (then it is
  recorded and settled like a success); else, at the last attempt, fail ("did not finish"); else
  claim the next attempt.
- a success: `settle` applies it (its worker died before doing so). `settle` answers False when
  it cannot (then the next attempt is claimed).
- an error, final or the last attempt's: `fail` with its reason; retryable, before `retry_at`: wait.
Crash windows: a worker killed between claim and verdict leaves its attempt unfinished until the
lease ends, then the work is done again (twice, unless `answered` can tell it was done). A worker
slower than its lease writes its verdict on its own attempt after the next one was claimed: the
round then goes by the newest attempt, and the slow worker still settles its own success.
Nothing here deletes an attempt (persistence rule 1).
"""

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError

from backend.core import group_commit
from backend.core.clock import as_utc, utcnow
from backend.core.db import Database
from backend.core.ids import new_id
from backend.core.logging import get_logger
from backend.core.runtime import runtime_of
from backend.core.schemas import StoredModel
from backend.core.seqlog import SeqLog
from backend.core.tuning import ATTEMPT_HINTS

log = get_logger("attempts")
ERROR = "error"
Verdict = dict[str, Any]  # `result` and the work's own fields: what finishing an attempt `$set`s


class Attempt(StoredModel):
    """An attempt document. A claim is inserted with the fields up to `result` (None); the verdict
    is `$set` on it. Each work's ledger reads its own subclass, which names the fields its
    verdict adds (the media fetch's `sha256`, the send's provider id)."""

    message_id: str
    attempt: int
    round: int = 0
    worker: str
    claimed_at: datetime
    lease_until: datetime
    result: str | None = None
    error: str | None = None
    retryable: bool = False
    retry_at: datetime | None = None
    finished_at: datetime | None = None

    def stored(self) -> dict[str, Any]:
        """The fields it was built with: a claim's, without the verdict's (absent until `$set`)."""
        return self.model_dump(by_alias=True, exclude_unset=True)


A = TypeVar("A", bound=Attempt)


@dataclass(frozen=True)
class Policy:
    """A worker's tuning, which it builds from its own settings (config.py)."""

    max_attempts: int  # per round
    lease_seconds: float
    backoff_base_seconds: float
    backoff_max_seconds: float
    poll_seconds: float  # between passes over the queue, unless woken
    concurrency: int  # entries handled at once
    scan_limit: int  # entries a pass looks at
    unreadable_give_up_seconds: float  # `QueueWalk.overdue`
    # The exception type whose `retryable` says whether a failed attempt may be tried again; any
    # other exception leaves the attempt unfinished (taken over once its lease ends).
    errors: type[Exception]
    # Media fetch errors quote whatever the provider answered and are shown on the message, so
    # they are cut; the outbound worker keeps the provider's reason whole, as it always has.
    error_max_chars: int | None = None

    def outlived(self, since: datetime, now: datetime) -> bool:
        """Older than a lease: what a request or worker that died left (a queue entry without its
        message) is given up on."""
        return (now - as_utc(since)).total_seconds() > self.lease_seconds

    def backoff_seconds(self, attempt: int) -> float:
        """Wait after failed attempt n (of a round) before attempt n+1."""
        return float(min(self.backoff_base_seconds * 2 ** (attempt - 1), self.backoff_max_seconds))


class QueueItem(StoredModel):
    """What every queue entry has: its number in the queue (core/seqlog), and the message it is for."""

    seq: int
    message_id: str


E = TypeVar("E", bound=QueueItem)


class QueueWalk(Generic[E]):
    """Walks `queue`, whose entries are `model`s. An entry that does not load as one, or whose
    handling meets a document that does not read (pydantic's ValidationError), is left where it
    is, like an entry whose handling fails, until that is `overdue`; then `give_up` gets its
    message's id (to fail what waits on it) and the walk counts it finished."""

    def __init__(
        self,
        queue: SeqLog,
        model: type[E],
        policy: Policy,
        *,
        what: str,
        give_up: Callable[[object], Awaitable[bool]] | None = None,
    ) -> None:
        self.queue, self.model, self.policy, self.what, self.give_up = queue, model, policy, what, give_up
        self._sem = asyncio.Semaphore(policy.concurrency)
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"  # names its claims
        self._pos = 0
        self._finished: set[int] = set()
        self._cursor: int | None = None  # as this walk last read or wrote it
        self._seen = 0  # the highest entry a woken pass looked at
        self._unreadable: dict[str, float] = {}  # document id -> when this walk first met it unreadable

    async def run_once(
        self, db: Database, visit: Callable[[list[E]], Awaitable[Iterable[int]]], *, poll: bool = True
    ) -> int:
        """One pass over (part of) the open queue: `visit` gets the page's entries and answers the
        seqs of those finished. Returns how many entries it looked at.
        A pass that is not a `poll` (this process queued something and woke the walk) looks only
        at the entries no woken pass has looked at yet, and reads neither the cursor nor the head: it
        goes by the cursor as this walk left it and the head as this process knows it (its own
        appends included), which is what it was woken for. The polls read both, so they find
        other processes' appends and cursor moves, and look again at what is left unfinished
        (waiting out a backoff, or behind an earlier reply of its chat)."""
        woken = not poll and self._cursor is not None
        if woken:
            cursor, last = self._cursor or 0, self.queue.hint(db)
            start = max(self._seen, cursor) + 1
        else:
            cursor = self._cursor = await self.queue.get_cursor(db)
            last = await self.queue.head(db)
            start = max(self._pos, cursor) + 1
            if start > last:
                start = cursor + 1
        self._finished = {s for s in self._finished if s > cursor}
        seqs = [s for s in range(start, last + 1) if s not in self._finished][: self.policy.scan_limit]
        entries = [e for s in seqs if (e := await self._load(s, await self.queue.get(db, s))) is not None]
        self._finished.update(await visit(entries))
        if woken:
            self._seen = max([self._seen, *seqs])
        else:  # the polls' pages go round the open queue
            # and leave `_seen` alone: an entry a poll found before its message was stored (an
            # agent's reply is queued first) is looked at again by the pass its store wakes.
            self._pos = seqs[-1] if seqs and seqs[-1] < last else cursor
        new_cursor = cursor
        while new_cursor + 1 in self._finished:
            new_cursor += 1
        if new_cursor > cursor:
            await self.queue.advance_cursor(db, new_cursor)
            self.queue.forget_upto(db, cursor, new_cursor)
            self._cursor = new_cursor
        return len(entries)

    async def run(
        self, stop: asyncio.Event, run_once: Callable[[bool], Awaitable[int]], wakeups: set[asyncio.Event]
    ) -> None:
        """Passes until `stop`: a poll every `poll_seconds` (`run_once(True)`), however often it
        is woken, and a pass at once (`run_once(False)`) when the event this loop puts in
        `wakeups` is set. A failed pass (a database hiccup) is logged; the loop goes on."""
        wakeup = asyncio.Event()
        wakeups.add(wakeup)
        log.info(f"{self.what} worker started", worker=self.worker)
        next_poll = time.monotonic()
        try:
            while not stop.is_set():
                wakeup.clear()
                poll = time.monotonic() >= next_poll
                if poll:
                    next_poll = time.monotonic() + self.policy.poll_seconds
                try:
                    await run_once(poll)
                except Exception as exc:
                    log.error(f"{self.what} pass failed", error=str(exc))
                stopping, woken = asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wakeup.wait())
                wait = max(0.0, next_poll - time.monotonic())
                await asyncio.wait({stopping, woken}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                for waiter in (stopping, woken):
                    waiter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiter
        finally:
            wakeups.discard(wakeup)
        log.info(f"{self.what} worker stopped", worker=self.worker)

    def overdue(self, _id: str, exc: ValidationError) -> bool:
        """Whether the document `_id`, which did not read, has been met so for the policy's
        give-up time (logged once, when first met). Until then the item that needs it is tried
        again at each pass, since a newer version's process (a rolling deploy) may read it; then
        the worker gives the item up, so that it holds nothing behind it for good."""
        first = self._unreadable.get(_id)
        if first is None:
            first = self._unreadable[_id] = time.monotonic()
            log.error(f"{self.what}: a stored document does not read", id=_id, error=str(exc))
        return time.monotonic() - first >= self.policy.unreadable_give_up_seconds

    async def _load(self, seq: int, doc: dict[str, Any] | None) -> E | None:
        try:
            return self.model.model_validate(doc) if doc is not None else None
        except ValidationError as exc:
            assert doc is not None
            if await self._unreadable_met(doc.get("message_id") or doc.get("_id"), exc):
                self._finished.add(seq)
            return None

    async def _unreadable_met(self, message_id: object, exc: ValidationError) -> bool:
        """Whether the entry of `message_id`, which met a document that does not read, is given
        up (`overdue`, then `give_up`, which may answer not yet): finished."""
        if not self.overdue(str(message_id), exc):
            return False
        try:
            return self.give_up is None or await self.give_up(message_id)
        except Exception as give_up_failed:  # a database hiccup: the next pass gives it up
            log.error(f"{self.what} give-up failed", message_id=str(message_id), error=str(give_up_failed))
            return False

    async def guarded(self, handle: Callable[[E], Awaitable[bool]], entry: E) -> bool:
        """`handle(entry)` within the walk's concurrency; an error leaves the entry for a later
        pass, a document that does not read until it is given up (the class docstring)."""
        async with self._sem:
            try:
                return await handle(entry)
            except ValidationError as exc:
                return await self._unreadable_met(entry.message_id, exc)
            except Exception as exc:
                log.error(f"{self.what} entry failed", seq=entry.seq, error=str(exc))
                return False


@dataclass(eq=False)
class AttemptLedger(Generic[A]):
    collection: str
    what: str  # for the log: "send", "media fetch"
    model: type[A]

    def attempt_id(self, message_id: str, attempt: int) -> str:
        return f"{message_id}:{attempt}"

    async def list(self, db: Database, message_id: str) -> list[A]:
        """A message's attempts in order, read as models (one that does not read raises)."""
        return [self.model.model_validate(doc) for doc in await self.stored_internal(db, message_id)]

    async def get(self, db: Database, _id: str) -> A | None:
        return self.model.load(await db[self.collection].find_one({"_id": _id}))

    async def claim(self, db: Database, claim: A) -> bool:
        try:
            await group_commit.insert_one(db[self.collection], claim.stored())
        except DuplicateKeyError:
            return False
        return True

    async def stored_internal(self, db: Database, message_id: str) -> Sequence[dict[str, Any]]:
        """A message's attempts as stored, in order (1..k, claimed in order, so the first miss
        ends them), not read as models: the give-up's look at attempts that may not read."""
        found: list[dict[str, Any]] = []
        while doc := await db[self.collection].find_one({"_id": self.attempt_id(message_id, len(found) + 1)}):
            found.append(doc)
        return found

    async def finish(self, db: Database, _id: str, changes: Verdict) -> None:
        await db[self.collection].update_one({"_id": _id}, {"$set": changes})

    async def step(
        self,
        db: Database,
        message_id: str,
        *,
        policy: Policy,
        worker: str,
        act: Callable[[str], Awaitable[Verdict]],
        settle: Callable[[A], Awaitable[bool]],
        fail: Callable[[str], Awaitable[None]],
        answered: Callable[[A], Awaitable[Verdict | None]] | None = None,
        round_: int = 0,
    ) -> bool:
        """Moves the message's work on by one decision (see the module docstring); True when it
        needs nothing more (settled or failed). `act(attempt_id)` does the work of a claimed
        attempt and returns its verdict (with its `result`); `answered(attempt)` returns the
        verdict of an unfinished attempt whose lease is over, if the work shows it was done.

        A message this process's workers have not looked at yet, in round 0, is usually new: its
        attempt 1 is claimed without reading its attempts first. The claim is the same unique
        insert that arbitrates every attempt, so it wins only where no attempt exists (what the
        read would have found); where one does, it loses and the attempts are read as before."""
        now = utcnow()
        seen, key = runtime_of(db).attempts_seen, (db.name, self.collection, message_id)
        if key not in seen:
            seen[key] = None
            while len(seen) > ATTEMPT_HINTS:
                seen.popitem(last=False)
            if round_ == 0:
                claim = self._claim_doc(message_id, 1, round_, worker, now, policy)
                if await self.claim(db, claim):
                    return await self._attempt(
                        db, message_id, claim, [], policy=policy, act=act, settle=settle, fail=fail
                    )
        tried = await self.list(db, message_id)
        mine = [a for a in tried if a.round == round_]
        if mine:
            last = mine[-1]
            if last.result is None:
                if as_utc(last.lease_until) > now:
                    return False  # another worker is on it
                if answered is not None and (verdict := await answered(last)) is not None:
                    await self.finish(db, last.id, {**verdict, "finished_at": now})
                    return await settle(self._with(last, verdict))
                if len(mine) >= policy.max_attempts:
                    await fail(f"attempt {len(mine)} did not finish (worker died?)")
                    return True
            elif last.result != ERROR:  # a success whose worker died before settling it
                if await settle(last):
                    return True
            elif not last.retryable or len(mine) >= policy.max_attempts:
                await fail(str(last.error))
                return True
            elif as_utc(last.retry_at or now) > now:
                return False
        claim = self._claim_doc(message_id, len(tried) + 1, round_, worker, now, policy)
        if not await self.claim(db, claim):
            return False  # another worker claimed this attempt first
        return await self._attempt(db, message_id, claim, mine, policy=policy, act=act, settle=settle, fail=fail)

    def _claim_doc(self, message_id: str, attempt: int, round_: int, worker: str, now: datetime, policy: Policy) -> A:
        return self.model(
            id=self.attempt_id(message_id, attempt),
            message_id=message_id,
            attempt=attempt,
            round=round_,
            worker=worker,
            claimed_at=now,
            lease_until=now + timedelta(seconds=policy.lease_seconds),
            result=None,
        )

    def _with(self, attempt: A, verdict: Verdict) -> A:
        """`attempt` as finishing it with `verdict` left it."""
        return self.model.model_validate({**attempt.model_dump(by_alias=True), **verdict})

    async def _attempt(
        self,
        db: Database,
        message_id: str,
        claim: A,
        mine: Sequence[A],
        *,
        policy: Policy,
        act: Callable[[str], Awaitable[Verdict]],
        settle: Callable[[A], Awaitable[bool]],
        fail: Callable[[str], Awaitable[None]],
    ) -> bool:
        """Does the work of the attempt this worker just claimed (`mine`: the round's earlier
        attempts) and records its verdict."""
        _id = claim.id
        try:
            verdict = await act(_id)
        except policy.errors as exc:
            retryable = bool(getattr(exc, "retryable", False))
            error = str(exc)[: policy.error_max_chars]
            retry_at = utcnow() + timedelta(seconds=policy.backoff_seconds(len(mine) + 1))
            changes = {"result": ERROR, "error": error, "retryable": retryable, "retry_at": retry_at}
            await self.finish(db, _id, {**changes, "finished_at": utcnow()})
            log.warning(
                f"{self.what} failed", message_id=message_id, attempt=claim.attempt, error=error, retryable=retryable
            )
            if not retryable or len(mine) + 1 >= policy.max_attempts:
                await fail(error)
                return True
            return False
        verdict = {**verdict, "finished_at": utcnow()}
        await self.finish(db, _id, verdict)
        return await settle(self._with(claim, verdict))
