"""The webhook processor: turns stored raw deliveries into clients, tickets and messages.

`python -m backend.webhooks.processor` runs it alone; each backend process also runs one in its
lifespan (WEBHOOK_PROCESSOR_ENABLED). Several at once, in any number of processes, are safe:

- Work is found by `_id` reads only: lane L's entries are "w:<L>:<n>" (backend/core/seqlog.py),
  walked from a cursor. A delivery's chat picks its lane, so one chat's events are processed in
  the order they were stored; different lanes run in parallel.
- Attempt k of an event is claimed by inserting `webhook_attempts` "<raw id>:<k>" (unique `_id`;
  never a filtered findAndModify, which FerretDB does not make atomic). A processor that loses
  the claim stops walking that lane, so it never overtakes the event; the winner moves on.
- A claim whose processor died (crash, SIGKILL) expires after WEBHOOK_LEASE_SECONDS and attempt
  k+1 is claimed; processing is idempotent (deterministic message ids), so nothing doubles.
- A database error is retried with exponential backoff (the lane waits: order first) up to
  WEBHOOK_MAX_ATTEMPTS, then kept failed for scripts/reprocess_webhooks.py, like every
  non-database error (unknown event, malformed payload), which is final at once.
"""

import asyncio
import contextlib
import math
import os
import random
import socket
import time
from datetime import timedelta
from typing import Any

from pymongo.errors import PyMongoError

from backend.connections import repository as connections
from backend.core.background import BackgroundLoop, run_standalone
from backend.core.clock import as_utc, utcnow
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.ids import new_id
from backend.core.logging import get_logger
from backend.core.seqlog import HOLE, PROBE_FAR, SeqLog
from backend.webhooks import repository, service, signals

log = get_logger("webhooks.processor")

PENDING = "received"
CURSOR_EVERY = 100  # entries between cursor saves within one lane pass
FAR_PROBE_GRACES = 3  # a lane looks past a run of holes at most once per this many hole graces
POLL_SLICES = 8  # the poll walks the lanes in this many slices, one after the other


def backoff_seconds(settings: Settings, attempt: int) -> float:
    """Wait after failed attempt n before attempt n+1."""
    return float(min(settings.WEBHOOK_BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), settings.WEBHOOK_BACKOFF_MAX_SECONDS))


class WebhookProcessor:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"
        self.lanes = [repository.lane(n) for n in range(settings.WEBHOOK_LANES)]
        # Speed hints only (every rule is decided by stored `_id`s): last finished entry per
        # lane, and when each lane last looked for entries behind a hole (near and far).
        self._pos: dict[int, int] = {}
        self._probed_at: dict[int, float] = {}
        self._probed_far_at: dict[int, float] = {}
        self._saved: dict[int, int] = {}  # cursor last stored per lane
        self._wakeup: signals.Wakeup | None = None  # deliveries this process stored, handed over
        self._sem = asyncio.Semaphore(settings.WEBHOOK_PROCESSOR_CONCURRENCY)

    async def run_once(self, lanes: set[int] | None = None) -> int:
        """One pass over `lanes` (default: a full pass over every lane). Returns how many events
        it processed. Only a full pass looks for holes left by dead writers: a wake-up names a
        lane that just got an entry."""
        if lanes is None:
            return await self._pass(full=set(range(len(self.lanes))), woken=set())
        return await self._pass(full=set(), woken=lanes)

    async def _pass(self, *, full: set[int], woken: set[int]) -> int:
        done = await asyncio.gather(*(self._guarded(n, n in full) for n in sorted(full | woken)))
        return sum(done)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("webhook processor started", worker=self.worker_id, lanes=len(self.lanes))
        woken = self._wakeup = signals.subscribe()
        # Every lane gets a full walk once per WEBHOOK_POLL_SECONDS, but a slice of the lanes at
        # a time, spread over the interval: all 32 at once (and their hole probes, ~10 reads a
        # lane) was a burst of database reads each second, in every process at the same moment,
        # which stalled whatever else shared the cores — realtime deliveries 50–150 ms late.
        slices = [set(range(k, len(self.lanes), POLL_SLICES)) for k in range(min(POLL_SLICES, len(self.lanes)))]
        step = self.settings.WEBHOOK_POLL_SECONDS / len(slices)
        turn = random.randrange(len(slices))  # processes started together stay out of step
        next_slice = time.monotonic()
        try:
            while not stop.is_set():
                lanes = woken.take()
                due = time.monotonic() >= next_slice
                try:
                    await self._pass(full=slices[turn] if due else set(), woken=lanes)
                except Exception as exc:  # the loop must survive a database hiccup
                    log.error("webhook pass failed", error=str(exc))
                if due:
                    turn = (turn + 1) % len(slices)
                    next_slice = max(next_slice + step, time.monotonic())
                waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(woken.event.wait())}
                _, pending = await asyncio.wait(
                    waiters, timeout=max(0.0, next_slice - time.monotonic()), return_when=asyncio.FIRST_COMPLETED
                )
                for task in pending:
                    task.cancel()
        finally:
            signals.unsubscribe(woken)
            self._wakeup = None
        log.info("webhook processor stopped", worker=self.worker_id)

    async def _guarded(self, lane: int, full: bool = True) -> int:
        async with self._sem:
            try:
                return await self._walk(lane, probe_holes=full)
            except Exception as exc:
                log.error("webhook lane failed", lane=lane, error=str(exc))
                return 0

    async def _walk(self, lane: int, *, probe_holes: bool = True) -> int:
        """Processes a lane's entries in order from its position until the lane ends or must
        wait (an event in backoff, or being processed by another processor)."""
        seqlog = self.lanes[lane]
        if lane not in self._pos:
            self._pos[lane] = await seqlog.get_cursor(self.db)
        pos = self._pos[lane]
        start = self._saved.get(lane, pos)
        processed = 0
        conns: dict[str, dict[str, Any] | None] = {}  # read once per pass
        handed = self._wakeup
        if handed is not None:
            handed.forget_up_to(lane, pos)
        last_handed = handed.highest(lane) if handed is not None else 0
        try:
            while True:
                seq = pos + 1
                entry = handed.pop(lane, seq) if handed is not None else None
                if entry is None and not probe_holes and 0 < last_handed < seq:
                    break  # a woken walk's job ends with what was handed; the poll reads on
                if entry is None:
                    entry = await seqlog.get(self.db, seq)
                if entry is None:
                    if not probe_holes or not await self._fill_dead_hole(lane, seqlog, seq):
                        break
                    continue  # filled: read it again (a tombstone, or a writer that just won)
                if not entry.get(HOLE) and entry.get("status") == PENDING:
                    if not await self._handle(entry, conns):
                        break
                    processed += 1
                pos = seq
                self._pos[lane] = pos
                if pos - start >= CURSOR_EVERY:
                    await seqlog.advance_cursor(self.db, pos)
                    start = self._saved[lane] = pos
        finally:
            # The cursor only shortens the walk after a restart; a woken walk of a few entries
            # leaves it to the next full pass rather than spend a write on it.
            if pos > start and probe_holes:
                await seqlog.advance_cursor(self.db, pos)
                self._saved[lane] = pos
        return processed

    async def _fill_dead_hole(self, lane: int, seqlog: SeqLog, seq: int) -> bool:
        """Entry `seq` is missing. When an entry after it was stored longer than the grace ago,
        `seq`'s writer has died or given up (reservations are inserted in order, concurrently):
        tombstone it. A writer still in flight then fails on the duplicate and takes another
        number, so nothing is lost. Returns True when it filled the hole."""
        # A hole may only be filled once the entries after it are older than the grace, so looking
        # more often than twice per grace finds nothing sooner; a run of several holes (writers
        # that died together) is rarer still, and looking past one costs ~10 reads. Looking at
        # every full pass (each second, on every lane of every process) was most of an idle
        # backend's database reads.
        grace = self.settings.WEBHOOK_HOLE_GRACE_SECONDS
        now = time.monotonic()
        if now - self._probed_at.get(lane, -math.inf) < grace / 2:
            return False
        self._probed_at[lane] = now
        after = await self.db[seqlog.collection].find_one({"_id": seqlog.entry_id(seq + 1)})
        if after is None:
            if now - self._probed_far_at.get(lane, -math.inf) < grace * FAR_PROBE_GRACES:
                return False
            self._probed_far_at[lane] = now
            step = 2
            while after is None and step <= PROBE_FAR:
                after = await self.db[seqlog.collection].find_one({"_id": seqlog.entry_id(seq + step)})
                step *= 2
            if after is None:
                return False  # the lane ends here
        stored_at = after.get("received_at") or after.get("at")
        age = (utcnow() - as_utc(stored_at)).total_seconds() if stored_at else 0.0
        if age < self.settings.WEBHOOK_HOLE_GRACE_SECONDS:
            return False  # probably still being inserted: wait
        if await seqlog.fill(self.db, seq):
            log.warning("webhook lane hole filled", lane=lane, seq=seq)
        return True

    async def _claim(self, raw: dict[str, Any]) -> int | None:
        """Claims the next attempt on `raw`. Returns its number, or None when the lane must wait
        (another processor holds a live claim) or the event turned out finished."""
        now = utcnow()
        retry_at = raw.get("retry_at")
        if retry_at is not None and as_utc(retry_at) > now:
            return None
        attempt = int(raw.get("attempts") or 0) + 1
        while True:
            claim = {
                "_id": repository.attempt_id(raw["_id"], attempt),
                "raw_id": raw["_id"],
                "attempt": attempt,
                "worker": self.worker_id,
                "claimed_at": now,
                "lease_until": now + timedelta(seconds=self.settings.WEBHOOK_LEASE_SECONDS),
            }
            if await repository.claim_attempt(self.db, claim):
                return attempt
            held = await repository.get_attempt(self.db, raw["_id"], attempt)
            if held is not None and as_utc(held["lease_until"]) > now:
                return None  # another processor is on it: do not overtake it
            fresh = await repository.get(self.db, raw["_id"])
            if fresh is None or fresh.get("status") != PENDING:
                return None  # finished meanwhile; the walk reads it again next time
            attempt += 1  # its processor died: the next attempt

    async def _handle(self, raw: dict[str, Any], conns: dict[str, dict[str, Any] | None]) -> bool:
        """Processes one pending event. Returns True when the lane may move past it."""
        attempt = await self._claim(raw)
        if attempt is None:
            fresh = await repository.get(self.db, raw["_id"])
            return fresh is not None and fresh.get("status") != PENDING
        max_attempts = self.settings.WEBHOOK_MAX_ATTEMPTS
        if attempt > max_attempts:  # earlier attempts died with their processes
            await repository.mark(
                self.db,
                raw["_id"],
                {"status": "failed", "error": "processing did not finish (processor died?)", "attempts": attempt},
                inc_attempts=False,
            )
            return True
        connection_id = str(raw["connection_id"])
        try:
            if connection_id not in conns:
                conns[connection_id] = await connections.get(self.db, connection_id)
            await service.process(self.db, raw, conn=conns[connection_id], attempt=attempt)
        except PyMongoError as exc:
            final = attempt >= max_attempts
            changes: dict[str, Any] = {"error": f"database: {exc}", "attempts": attempt}
            if final:
                changes.update(status="failed", failed_at=utcnow(), retry_at=None)
            else:
                changes["retry_at"] = utcnow() + timedelta(seconds=backoff_seconds(self.settings, attempt))
            log.warning("webhook event will be retried", raw_id=raw["_id"], attempt=attempt, error=str(exc))
            with contextlib.suppress(PyMongoError):  # unrecorded: the claim's lease runs out instead
                await repository.mark(self.db, raw["_id"], changes, inc_attempts=False)
            return final
        return True


async def run_until(db: Database, settings: Settings, stop: asyncio.Event) -> None:
    await WebhookProcessor(db, settings).run(stop)


def background(db: Database, settings: Settings, *, enabled: bool = True) -> BackgroundLoop:
    """The processor inside a backend process's lifespan (WEBHOOK_PROCESSOR_ENABLED)."""
    return BackgroundLoop(
        "webhook-processor", run_until, db, settings, enabled=enabled and settings.WEBHOOK_PROCESSOR_ENABLED
    )


if __name__ == "__main__":
    run_standalone(run_until)
