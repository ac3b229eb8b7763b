"""The webhook processor: turns stored raw deliveries into clients, tickets and messages.

`python -m backend.webhooks` runs it alone (backend/webhooks/__main__.py); each backend process also runs one in its
lifespan (WEBHOOK_PROCESSOR_ENABLED). Several at once, in any number of processes, are safe:

- Work is found by `_id` reads only: lane L's entries are "w:<L>:<n>" (backend/core/seqlog.py),
  walked from a cursor. A delivery's chat picks its lane, so one chat's events are processed in
  the order they were stored.
- Lanes progress independently: each has its own walk, woken when this process stores a delivery
  in it and polled every WEBHOOK_POLL_SECONDS (each lane at its own phase) for other processes'
  deliveries. A walk holds one of WEBHOOK_PROCESSOR_CONCURRENCY processing slots for at most
  BATCH entries, then queues for a slot again behind the lanes waiting for one, so a lane with a
  long backlog delays a message of another lane by at most BATCH of its entries per lane ahead of
  it in that queue (none while slots are free), not by its whole backlog.
- Attempt k of an event is claimed by inserting `webhook_attempts` "<raw id>:<k>" (unique `_id`;
  never a filtered findAndModify, which FerretDB does not make atomic). A processor that loses
  the claim stops walking that lane, so it never overtakes the event; the winner moves on.
- A claim whose processor died (crash, SIGKILL) expires after WEBHOOK_LEASE_SECONDS and attempt
  k+1 is claimed; processing is idempotent (deterministic message ids), so nothing doubles.
- Attempt 1 of a delivery handed over in the process that acknowledged it is claimed by the
  acknowledgement itself: the stored delivery names that process's processor (`handed_to`,
  webhooks/signals.py), one insert fewer per delivery.
  - The named processor makes attempt 1 without a claim if it starts within half a lease of
    `received_at` (its own clock stamped it); later, it claims attempt 1 as above.
  - Any other processor holds back from it, as from a live claim, until 1.5 leases after
    `received_at` (the latest unclaimed start plus a lease); then it claims attempt 1 as a retry
    (the named processor may have started it), or the next one if the named processor claimed
    attempt 1 itself and its lease ran out. A walk that holds back, with deliveries of its own
    process's behind it, walks again after LANE_HELD_RECHECK_SECONDS, doubling up to the poll
    period: the holder makes it within moments as a rule.
  - A processor that meets a delivery another process's processor acknowledged (`acked_by`) has
    its own process's acknowledgements claim nothing for HANDED_CLAIMS_PAUSE_SECONDS [10 min]:
    where processes share the lanes, walks that take whatever they reach go faster than walks
    waiting for each other, so this claim is for a process that walks its lanes alone.
  - A processor that stops releases what it was handed and did not start (`handed_to` cleared:
    claimed as usual, attempt 1 not a retry), so a deploy waits for nothing. A SIGKILL leaves the
    deliveries its processor was handed and had not finished waiting up to
    1.5 × WEBHOOK_LEASE_SECONDS [90 s] after their acknowledgement.
- A retryable error (database, a lost race's winner not visible yet, a service's "…; retry"
  conflict: backend/core/retry.py) is retried with exponential backoff (the lane waits: order
  first) up to WEBHOOK_MAX_ATTEMPTS, then kept failed and run again later by the sweep
  (service.wait_to_redrive, written before the failure: a kill between the two leaves it
  waiting); so is a delivery whose attempts all died with their processes. The processor also
  remembers the attempts it made that failed: the store may lose the failure's record, and the
  next attempt must still be the retry (it completes what the failed one stored). Every other error
  (unknown event, malformed payload, a delivery or connection document that does not read) is
  final at once, for scripts/reprocess_webhooks.py, and its lane moves on (`_handle`).

Bounds (defaults in brackets):
- Holes (numbers of a lane's block that no entry took: its writer moved to a newer block, died,
  or is still inserting; backend/core/seqlog.py): a walk (woken or polled) at a missing entry
  whose block is no longer the newest passes it at once — the block's owner left a `rest`
  tombstone, or the walk tombstones what is left of the block in one command
  (`SeqLog.pass_superseded`; one `_id` read of the next block's marker, also at a quiet lane's
  end on each poll). So writes alternating between processes cost no wait. In the
  newest block, a polled walk looks past the hole (`SeqLog.after`, at most MARK_EVERY reads) at
  most every WEBHOOK_HOLE_GRACE_SECONDS / 2; once the first entry stored past it is older than
  WEBHOOK_HOLE_GRACE_SECONDS, the whole run of holes before it is tombstoned in one command. Any
  pattern of holes is passed within 1.5 × WEBHOOK_HOLE_GRACE_SECONDS + WEBHOOK_POLL_SECONDS of
  the entry after it being stored [16 s], and within WEBHOOK_POLL_SECONDS once a newer block is
  open. Holes whose writer failed in this process are tombstoned by the writer at once
  (SeqLog._abandon).
- Other processes' blocks: a quiet lane whose end lies in the block this process owns (past
  every number it handed out) can grow only in another process's newer block, which that
  process processes itself unless it died or runs no processor. Every block opened where a lane
  changes hands (core/seqlog `announce`) is announced in one log (repository.opened), read for
  all lanes at once at most twice per
  WEBHOOK_POLL_SECONDS; such a lane's poll reads the next block's marker only when another
  process announced a block of it, or at every FOREIGN_CHECK_EVERY-th poll (`_idle_end`). So an
  idle processor costs about one read per second instead of one per lane, and another process's
  block is found within 2 × WEBHOOK_POLL_SECONDS [2 s] (one it never announced — it died between
  its marker and its announcement, so the block holds nothing, or it predates announcements —
  within FOREIGN_CHECK_EVERY polls [30 s]).
- Cursors: a lane's saved cursor trails its walk by fewer than CURSOR_EVERY entries while it
  works, and equals its processed position within WEBHOOK_POLL_SECONDS after the lane goes quiet
  (its next poll saves it), however the entries were processed [1 s]. So a restart re-reads at
  most CURSOR_EVERY processed entries per lane before new work (a little more only when two
  processors' cursor writes cross on FerretDB, which may put back the older of the two).
- Lanes retired by lowering WEBHOOK_LANES: at start (and every RETIRED_CHECK_SECONDS) the
  processor looks for lanes at or above WEBHOOK_LANES that were ever written and walks them like
  the others, so nothing stored there is stranded; no new delivery goes to them.
"""

import asyncio
import contextlib
import math
import os
import random
import socket
import time
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from pymongo.errors import PyMongoError

from backend.connections import service as connections
from backend.core import metrics
from backend.core.background import BackgroundLoop
from backend.core.clock import as_utc, utcnow
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.ids import new_id
from backend.core.logging import get_logger
from backend.core.retry import is_retryable
from backend.core.runtime import runtime_of
from backend.core.seqlog import HOLE, REST, SeqLog
from backend.core.tuning import FAILED_ATTEMPTS_KEPT as FAILED_KEPT
from backend.core.tuning import HANDED_CLAIMS_PAUSE_SECONDS as CLAIMS_PAUSE
from backend.core.tuning import LANE_BATCH as BATCH
from backend.core.tuning import LANE_CURSOR_EVERY as CURSOR_EVERY
from backend.core.tuning import LANE_FOREIGN_CHECK_EVERY as FOREIGN_CHECK_EVERY
from backend.core.tuning import LANE_HELD_RECHECK_SECONDS as HELD_RECHECK
from backend.core.tuning import RETIRED_CHECK_SECONDS
from backend.webhooks import repository, sanitize, service, signals
from backend.webhooks.models import Attempt, RawEvent

log = get_logger("webhooks.processor")

PENDING = "received"
MAX_LANES = 256  # WEBHOOK_LANES' ceiling (backend/core/config.py): retired lanes lie below it
# How long a waiting delivery is looked after (webhooks.service `run_waiting`): an edit's message
# is at most a backlog or a history sync away (WhatsApp allows edits for 15 minutes), and a failed
# delivery is run again about a dozen times. After it, scripts/reprocess_webhooks.py.
WAITING_LOOKED_AFTER = timedelta(days=2)
WAITING_PER_SWEEP = 200


def backoff_seconds(settings: Settings, attempt: int) -> float:
    """Wait after failed attempt n before attempt n+1."""
    return float(min(settings.WEBHOOK_BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), settings.WEBHOOK_BACKOFF_MAX_SECONDS))


class WebhookProcessor:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"
        self.lanes = {n: repository.lane(n) for n in range(settings.WEBHOOK_LANES)}
        # Speed hints only (every rule is decided by stored `_id`s): last finished entry and
        # cursor last stored per lane, and when each lane last looked past a missing entry.
        self._pos: dict[int, int] = {}
        self._saved: dict[int, int] = {}
        self._probed_at: dict[int, float] = {}
        # Other processes' block openings (repository.opened), read for every lane at once: the
        # position read up to and when, and the lanes where one was seen and not yet checked.
        self._opened_pos: int | None = None
        self._opened_read_at = -math.inf
        self._opened_lock = asyncio.Lock()
        self._foreign: set[int] = set()
        self._quiet_polls: dict[int, int] = {}
        self._held: set[int] = set()  # lanes whose walk stopped at another process's handed delivery
        self._retired_checked = False
        self._halt = asyncio.Event()  # set when run() stops: walks end at their next batch
        self._wakeup: signals.Wakeup | None = None  # deliveries this process stored, handed over
        self._sem = asyncio.Semaphore(settings.WEBHOOK_PROCESSOR_CONCURRENCY)
        # Attempts this processor made that failed, and their backoff: raw id -> (attempt, retry
        # at). The store may lose the failure's record (`_handle`), and a handed-over first attempt
        # left no claim either: the delivery would then read as never attempted, and run again
        # as a first attempt, not as the retry that completes what the failed one stored.
        self._failed: OrderedDict[str, tuple[int, datetime | None]] = OrderedDict()

    async def run_once(self, lanes: set[int] | None = None) -> int:
        """Walks `lanes` once as a wake-up would (each up to what was handed over), or by default
        polls every lane, retired ones included: looks past holes and saves cursors. Returns how
        many events it processed."""
        if lanes is None and not self._retired_checked:
            await self._adopt_retired()
        walks = [self._guarded(n, poll=lanes is None) for n in sorted(self.lanes if lanes is None else lanes)]
        return sum(await asyncio.gather(*walks))

    async def run(self, stop: asyncio.Event) -> None:
        log.info("webhook processor started", worker=self.worker_id, lanes=len(self.lanes))
        wakeup = self._wakeup = signals.subscribe(self.db, worker=self.worker_id)
        halt = self._halt = asyncio.Event()
        loops: dict[int, asyncio.Task[None]] = {}
        next_check = time.monotonic()  # retired lanes: right after the lanes' loops start
        waiting = asyncio.create_task(self._waiting_loop(halt))
        try:
            while True:
                for lane in self.lanes:
                    if lane not in loops:
                        loops[lane] = asyncio.create_task(self._lane_loop(lane, halt))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=max(0.0, next_check - time.monotonic()))
                if stop.is_set():
                    break
                next_check = time.monotonic() + RETIRED_CHECK_SECONDS
                try:
                    await self._adopt_retired()
                except Exception as exc:  # looked for again at the next check
                    log.error("webhook retired lane check failed", error=str(exc))
        finally:
            halt.set()
            for lane in loops:
                wakeup.event(lane).set()
            await asyncio.gather(*loops.values(), waiting, return_exceptions=True)
            signals.unsubscribe(self.db, wakeup)
            await self._release(wakeup)
            self._wakeup = None
            self._halt = asyncio.Event()
        log.info("webhook processor stopped", worker=self.worker_id)

    async def _lane_loop(self, lane: int, halt: asyncio.Event) -> None:
        """One lane's walks: at once when this process stores a delivery in it, and a polled walk
        every WEBHOOK_POLL_SECONDS, at a phase of its own so that the lanes (and processes
        started together) do not all read at the same moment."""
        assert self._wakeup is not None
        woken = self._wakeup.event(lane)
        period = self.settings.WEBHOOK_POLL_SECONDS
        next_poll = time.monotonic() + random.uniform(0, period)
        held_for, next_walk = 0.0, math.inf  # a walk again soon after one stopped at a held delivery
        while True:
            with contextlib.suppress(TimeoutError):
                deadline = min(next_poll, next_walk)
                await asyncio.wait_for(woken.wait(), timeout=max(0.0, deadline - time.monotonic()))
            if halt.is_set():
                return
            woken.clear()
            poll = time.monotonic() >= next_poll
            if poll:
                next_poll = max(next_poll + period, time.monotonic())
            self._held.discard(lane)
            await self._guarded(lane, poll=poll)
            # Only for what this process was handed past the held delivery: the rest is the holder's.
            if lane in self._held and self._wakeup.highest(lane) > self._pos.get(lane, 0):
                held_for = min(2 * held_for, period) if held_for else HELD_RECHECK
                next_walk = time.monotonic() + held_for
            else:
                held_for, next_walk = 0.0, math.inf

    async def _waiting_loop(self, halt: asyncio.Event) -> None:
        """Every WEBHOOK_WAITING_CHECK_SECONDS: the waiting deliveries whose time has come are run
        again (webhooks.service.run_waiting). Every process sweeps; a delivery run twice records
        its messages once."""
        period = self.settings.WEBHOOK_WAITING_CHECK_SECONDS
        while not halt.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(halt.wait(), timeout=random.uniform(0.5, 1.0) * period)
            if halt.is_set():
                return
            try:
                since = utcnow() - WAITING_LOOKED_AFTER
                await service.run_waiting(self.db, self.settings, since=since, limit=WAITING_PER_SWEEP)
            except Exception as exc:  # looked for again at the next sweep
                log.error("webhook waiting deliveries sweep failed", error=str(exc))

    async def _release(self, wakeup: signals.Wakeup) -> None:
        """The deliveries handed to this processor that it did not start: another processor
        takes them at once instead of waiting out the acknowledgement's hold. Unreleased (the
        process was killed, or this write failed), they wait for it."""
        unstarted = [
            str(doc["_id"])
            for docs in wakeup.handed.values()
            for doc in docs.values()
            if doc.get("handed_to") == self.worker_id
        ]
        try:
            await repository.release_handed(self.db, unstarted)
        except PyMongoError as exc:
            log.warning("webhook handed deliveries not released", error=str(exc), count=len(unstarted))

    async def _adopt_retired(self) -> None:
        """Lanes at or above WEBHOOK_LANES that an earlier, larger setting wrote to: walked like
        the others (no new delivery goes there) so that nothing stored in them is stranded."""
        candidates = [n for n in range(self.settings.WEBHOOK_LANES, MAX_LANES) if n not in self.lanes]
        written = await asyncio.gather(*(repository.lane(n).ever_written(self.db) for n in candidates))
        for n, used in zip(candidates, written, strict=True):
            if used:
                self.lanes[n] = repository.lane(n)
                log.warning("walking a lane beyond WEBHOOK_LANES that holds deliveries", lane=n)
        self._retired_checked = True

    async def _guarded(self, lane: int, *, poll: bool) -> int:
        try:
            return await self._walk(lane, poll=poll)
        except Exception as exc:  # the lane's loop must survive a database hiccup
            log.error("webhook lane failed", lane=lane, error=str(exc))
            return 0

    async def _walk(self, lane: int, *, poll: bool) -> int:
        """Processes the lane's entries in order from its position until the lane ends or must
        wait (an event in backoff, or being processed by another processor), BATCH entries per
        processing slot. A polled walk also looks past holes and saves the cursor at its end; a
        woken walk goes as far as what was handed over."""
        seqlog = self.lanes[lane]
        if lane not in self._pos:
            self._pos[lane] = self._saved[lane] = await seqlog.get_cursor(self.db)
        handed = self._wakeup
        if handed is not None:
            handed.forget_up_to(lane, self._pos[lane])
        last_handed = handed.highest(lane) if handed is not None else 0
        conns: dict[str, connections.Connection | None] = {}  # read once per walk
        # Per chat: what its last message of this walk found; per tenant: its config (service.process).
        chats: dict[str, Any] = {}
        processed, going = 0, True
        while going and not self._halt.is_set():
            async with self._sem:
                going, done = await self._batch(
                    lane, seqlog, poll=poll, last_handed=last_handed, conns=conns, chats=chats
                )
            processed += done
            if going:
                await asyncio.sleep(0)  # lanes queued for a slot take it before our next batch
        if poll and self._pos[lane] > self._saved[lane]:  # quiet (or waiting): the cursor catches up
            await self._save(lane)
        return processed

    async def _batch(
        self,
        lane: int,
        seqlog: SeqLog,
        *,
        poll: bool,
        last_handed: int,
        conns: dict[str, connections.Connection | None],
        chats: dict[str, Any],
    ) -> tuple[bool, int]:
        """Up to BATCH entries of the walk. Returns (more to walk, events processed)."""
        handed = self._wakeup
        done = 0
        for _ in range(BATCH):
            seq = self._pos[lane] + 1
            entry = handed.pop(lane, seq) if handed is not None else None
            if entry is None and not poll and 0 < last_handed < seq:
                return False, done  # a woken walk's job ends with what was handed; the poll reads on
            if entry is None and not seqlog.unwritten(self.db, seq):
                entry = await seqlog.get(self.db, seq)
            if entry is None:
                if poll and seqlog.unwritten(self.db, seq) and await self._idle_end(lane):
                    return False, done
                passed = await seqlog.pass_superseded(self.db, seq)
                if passed is not None:  # a later block is open: what is left of this one is tombstoned
                    self._pos[lane] = passed
                    continue
                if not poll or not await self._pass_holes(lane, seqlog, seq):
                    return False, done
                continue  # filled: read it again (a tombstone, or a writer that just won)
            if not entry.get(HOLE) and entry.get("status") == PENDING:
                if not await self._handle(entry, conns, chats):
                    return False, done
                done += 1
            # a writer's `rest` tombstone: it left its block, the numbers up to `rest` stay empty
            self._pos[lane] = max(seq, int(entry.get(REST) or seq)) if entry.get(HOLE) else seq
            if seq - self._saved[lane] >= CURSOR_EVERY:
                await self._save(lane)
        return True, done

    async def _idle_end(self, lane: int) -> bool:
        """A polled walk is at the lane's end, inside the block this process owns, past every
        number it handed out: only another process's newer block can hold anything more. True
        when the walk may stop there without reading that block's marker: no other process
        announced a block of this lane since the last check, and this is not the lane's every
        FOREIGN_CHECK_EVERY-th such poll (the backstop for a block nobody announced: a process
        of a version before announcements, or one that died between its marker and its
        announcement, whose block then holds nothing)."""
        polls = self._quiet_polls.get(lane, 0) + 1
        if polls < FOREIGN_CHECK_EVERY:
            await self._read_openings()
            if lane not in self._foreign:
                self._quiet_polls[lane] = polls
                return True
            self._foreign.discard(lane)
        self._quiet_polls[lane] = 0  # checked now: the backstop counts from here
        return False

    async def _read_openings(self) -> None:
        """Reads the block openings announced since the last read, at most twice per
        WEBHOOK_POLL_SECONDS for all lanes together: a lane where another process opened a block
        is checked at its next poll, so it is found within twice WEBHOOK_POLL_SECONDS of being
        opened. The first read starts at the log's head and has every lane checked once, which
        finds what was opened before it."""
        async with self._opened_lock:
            started = time.monotonic()
            if started - self._opened_read_at < self.settings.WEBHOOK_POLL_SECONDS / 2:
                return
            opened, own = repository.opened, runtime_of(self.db).id
            if self._opened_pos is None:
                self._opened_pos = await opened.head(self.db)
                self._foreign.update(self.lanes)
            while (entry := await opened.get(self.db, self._opened_pos + 1)) is not None:
                self._opened_pos += 1
                lane = repository.lane_of_prefix(str(entry.get("log", "")))
                if lane is not None and entry.get("by") != own:
                    self._foreign.add(lane)
            self._opened_read_at = started

    async def _save(self, lane: int) -> None:
        pos = self._pos[lane]
        await self.lanes[lane].advance_cursor(self.db, pos)
        self._saved[lane] = pos

    async def _pass_holes(self, lane: int, seqlog: SeqLog, seq: int) -> bool:
        """Entry `seq` is missing. When an entry stored past it is older than the grace, the
        numbers before that entry lost their writers (reservations are inserted within moments
        of each other): tombstone the whole run at once. A writer still in flight then fails on
        the duplicate and takes another number, so nothing is lost. Returns True when it filled.
        A look that finds nothing to fill is not repeated for half a grace: a lane's end looks
        like a hole, and looking sooner would find nothing older than the grace sooner."""
        grace = self.settings.WEBHOOK_HOLE_GRACE_SECONDS
        now = time.monotonic()
        if now - self._probed_at.get(lane, -math.inf) < grace / 2:
            return False
        after = await seqlog.after(self.db, seq, projection=repository.POSITION)  # the walk reads it whole after
        stored_at = after.get("received_at") or after.get("at") if after is not None else None
        # A time that does not read (a damaged entry) tells nothing of the writers before it, and
        # never will: the run is filled as if old (nothing is lost: above), and the walk then
        # keeps that entry failed with why (`_handle`). Waited for, it stalled the lane for good.
        # Its `seq` may not read either (raised, it stalled the lane too): its `_id` names its number.
        young = isinstance(stored_at, datetime) and (utcnow() - as_utc(stored_at)).total_seconds() < grace
        if after is None or young:
            self._probed_at[lane] = now  # the lane ends here, or the numbers before it may still be being inserted
            return False
        found = int(str(after["_id"]).removeprefix(seqlog.prefix))
        for n in await seqlog.fill_range(self.db, seq, found - 1):
            log.warning("webhook lane hole filled", lane=lane, seq=n)
        return True

    async def _claim(self, raw: dict[str, Any]) -> tuple[int, bool] | None:
        """Claims the next attempt on `raw`. Returns (its number, whether an earlier attempt may
        have started), or None when the lane must wait (another processor holds a live claim,
        or the acknowledgement's: module docstring) or the event turned out finished."""
        now = utcnow()
        acked_by = raw.get("acked_by")
        if acked_by not in (None, self.worker_id) and self._wakeup is not None:
            # Another process's processor walks these lanes too: claim nothing for a while.
            self._wakeup.claims_from = time.monotonic() + CLAIMS_PAUSE
        made, backoff_until = self._failed.get(raw["_id"], (0, None))
        retry_at = raw.get("retry_at") or backoff_until
        if retry_at is not None and as_utc(retry_at) > now:
            return None
        attempt = max(int(raw.get("attempts") or 0), made) + 1
        handed_to = raw.get("handed_to") if attempt == 1 else None
        if handed_to is not None:
            lease = timedelta(seconds=self.settings.WEBHOOK_LEASE_SECONDS)
            received = as_utc(raw["received_at"])
            if handed_to == self.worker_id and now <= received + lease / 2:
                return 1, False  # the acknowledgement claimed it for us
            if handed_to != self.worker_id and now < received + lease * 3 / 2:
                self._held.add(int(raw.get("lane", -1)))  # its processor is about to make it: look again soon
                return None
        while True:
            claim = Attempt(
                id=repository.attempt_id(raw["_id"], attempt),
                raw_id=raw["_id"],
                attempt=attempt,
                worker=self.worker_id,
                claimed_at=now,
                lease_until=now + timedelta(seconds=self.settings.WEBHOOK_LEASE_SECONDS),
            )
            if await repository.claim_attempt(self.db, claim):
                return attempt, attempt > 1 or handed_to not in (None, self.worker_id)
            held = await repository.get_attempt(self.db, raw["_id"], attempt)
            if held is not None and as_utc(held.lease_until) > now:
                return None  # another processor is on it: do not overtake it
            status = await repository.status_of(self.db, raw["_id"])
            if status is None or status != PENDING:
                return None  # finished meanwhile; the walk reads it again next time
            attempt += 1  # its processor died: the next attempt

    async def _handle(
        self, raw: dict[str, Any], conns: dict[str, connections.Connection | None], chats: dict[str, Any] | None = None
    ) -> bool:
        """Processes one pending event. Returns True when the lane may move past it. An error no
        retry mends ends the delivery failed (`_fail`), wherever it is raised: in `service.process`
        (which records its own), reading the delivery's connection (a document that does not
        validate), or reading the delivery itself (a field missing or of another type). Raised, it
        would hold the lane on that delivery for good, and a lane is shared by many tenants' chats
        (service.lane_of): theirs would be stored and never processed. A retryable error raised
        outside an attempt (the claim's reads) propagates: the lane's next walk tries again."""
        try:
            return await self._attempt(raw, conns, chats)
        except Exception as exc:
            if is_retryable(exc):
                raise
            # Read whole (only here: the walk trusts what it stores) to say which field is wrong.
            unreadable = _unreadable(raw)
            return await self._fail(raw["_id"], unreadable or exc, redrive=None if unreadable else raw["connection_id"])

    async def _attempt(
        self, raw: dict[str, Any], conns: dict[str, connections.Connection | None], chats: dict[str, Any] | None
    ) -> bool:
        """`_handle`'s claim and attempt."""
        claimed = await self._claim(raw)
        if claimed is None:  # its outcome only: the payload may be megabytes of media
            status = await repository.status_of(self.db, raw["_id"])
            finished = status is not None and status != PENDING
            if finished:
                self._failed.pop(raw["_id"], None)
            return finished
        attempt, retry = claimed
        max_attempts = self.settings.WEBHOOK_MAX_ATTEMPTS
        connection_id = str(raw["connection_id"])
        if attempt > max_attempts:  # earlier attempts died with their processes (a deploy, a kill, a lease outrun)
            # Waits for the sweep before it is recorded failed: a kill between the two leaves it
            # pending and waiting, never failed and forgotten.
            await service.wait_to_redrive(self.db, raw["_id"], connection_id)
            await repository.mark(
                self.db,
                raw["_id"],
                {"status": "failed", "error": "processing did not finish (processor died?)", "attempts": attempt},
                inc_attempts=False,
            )
            metrics.WEBHOOK_FAILED.labels(kind="final").inc()
            return True
        try:
            # The webhook's own read, handed over with the delivery, is the connection as it was
            # when the delivery was acknowledged: it replaces the walk's read, which may predate
            # a change made since (a menu just enabled). A delivery read from the log (a backlog,
            # a restart) uses the walk's one read, taken after its acknowledgement (this process's
            # copy: what a stale one can do, and what is re-read, is in connections.get_cached_internal).
            handed = raw.get(signals.CONNECTION)
            if handed is not None:
                conns[connection_id] = handed
            elif connection_id not in conns:
                conns[connection_id] = await connections.get_cached_internal(self.db, connection_id)
            event = RawEvent.trusted(raw)  # as stored, or as handed over
            await service.process(self.db, event, conn=conns[connection_id], attempt=attempt, retry=retry, chats=chats)
        except Exception as exc:
            if not is_retryable(exc):
                return await self._fail(raw["_id"], exc, attempt=attempt, redrive=connection_id)
            final = attempt >= max_attempts
            changes: dict[str, Any] = {"error": f"{type(exc).__name__}: {exc}", "attempts": attempt}
            if final:
                changes.update(status="failed", failed_at=utcnow(), retry_at=None)
                metrics.WEBHOOK_FAILED.labels(kind="retryable").inc()
            else:
                changes["retry_at"] = utcnow() + timedelta(seconds=backoff_seconds(self.settings, attempt))
            log.warning("webhook event will be retried", raw_id=raw["_id"], attempt=attempt, error=str(exc))
            self._failed[raw["_id"]] = (attempt, changes.get("retry_at"))
            while len(self._failed) > FAILED_KEPT:
                self._failed.popitem(last=False)
            try:
                if final:  # not left for an operator: the sweep runs it again later (waiting first, as above)
                    await service.wait_to_redrive(self.db, raw["_id"], connection_id)
                await repository.mark(self.db, raw["_id"], changes, inc_attempts=False)
            except PyMongoError as lost:
                # Not recorded: the lane stays on it (its backoff is remembered above). A last
                # attempt passed here would leave the delivery pending with no wait for the sweep,
                # behind a lane that moved on: the next walk claims past the last attempt and
                # records it waiting then (the branch above), or stays until it can.
                log.warning("webhook attempt's failure not recorded", raw_id=raw["_id"], error=str(lost))
                return False
            return final
        self._failed.pop(raw["_id"], None)
        return True

    async def _fail(
        self, raw_id: str, exc: Exception, *, attempt: int | None = None, redrive: str | None = None
    ) -> bool:
        """Ends a delivery no retry of its lane can process: kept failed with why, for
        scripts/reprocess_webhooks.py (once its connection or the delivery is mended), and counted
        "final", as `service.process` keeps its own errors. Written by `_id` alone: the delivery
        may not read. A readable delivery (`redrive`: its connection's id) that failed on a
        document that does not read, its connection's, may be one a newer version wrote during a
        rolling deploy: it is run again by the waiting sweep (`service.wait_to_redrive`, as a
        delivery whose attempts all failed on errors that may pass), given up only if it still
        fails after its 2 days. Returns whether its lane may move past it: not when the failure
        was not recorded (the lane's next walk fails it again)."""
        again = redrive is not None and isinstance(exc, ValidationError)
        error = sanitize.text(f"{type(exc).__name__}: {exc}")[: service.ERROR_MAX_CHARS]
        changes: dict[str, Any] = {"status": "failed", "error": error, "failed_at": utcnow(), "retry_at": None}
        if attempt is not None:
            changes["attempts"] = attempt
        try:
            if again and redrive is not None:  # waiting first, as in `_attempt`: a kill after leaves it run again
                await service.wait_to_redrive(self.db, raw_id, redrive)
            await repository.mark(self.db, raw_id, changes, inc_attempts=False)
        except PyMongoError as lost:
            log.warning("webhook event's failure not recorded", raw_id=raw_id, error=str(lost))
            return False
        if again:
            log.warning("webhook event failed on a document that does not read; run again", raw_id=raw_id, error=error)
        else:
            log.error("webhook event failed; its lane moves on", raw_id=raw_id, error=error)
        metrics.WEBHOOK_FAILED.labels(kind="retryable" if again else "final").inc()
        self._failed.pop(raw_id, None)
        return True


def _unreadable(raw: dict[str, Any]) -> ValidationError | None:
    """Why a stored delivery does not read as one, if it does not."""
    try:
        RawEvent.model_validate(raw)
    except ValidationError as exc:
        return exc
    return None


async def run_until(db: Database, settings: Settings, stop: asyncio.Event) -> None:
    await WebhookProcessor(db, settings).run(stop)


def background(db: Database, settings: Settings, *, enabled: bool = True) -> BackgroundLoop:
    """The processor inside a backend process's lifespan (WEBHOOK_PROCESSOR_ENABLED)."""
    return BackgroundLoop(
        "webhook-processor", run_until, db, settings, enabled=enabled and settings.WEBHOOK_PROCESSOR_ENABLED
    )
