"""The projection sweep: the durable backstop behind `projection.settle`.

Every writer settles the ticket document after its write, which keeps it equal to the log while
the writers live. What a writer cannot repair is left here: a process that died between storing
an event or a message and writing the ticket (or whose write failed), and on FerretDB an
activity lost to a concurrent whole-document write-back after its writer had checked it. Every
TICKET_SWEEP_SECONDS the sweep settles each ticket that has an event or a message written since
the previous sweep began (minus TICKET_SWEEP_LOOKBACK_SECONDS, longer than any write takes to
land), giving the newest such message as the activity the document must show. A ticket finalized
in that span (or with a message stamped after its `finalized_at`) whose finalize hooks never ran to
their end (no `finalize-hooks` key: one read by `_id`) gets them run again: a finalize request
killed between its event and the end of its hooks would otherwise leave a message that raced it
behind, or the closing message and the survey unsent. A ticket held (atendendo) by a person who is
inactive now is handed back to its department's queue (`tickets.hand_back_if_inactive`, one read of
each holder by `_id` per pass): a move whose own hand-back lost its event, or an assume projected
only now, after the release listed the person's tickets — each would leave the conversation with
someone who can no longer see it. And every pass pays the releases deactivations left owed
(`tickets.release_owed`: one read of the small `user_releases` collection, then only for an unpaid
mark), which reaches the person's idle conversations too.

The bound, with no reader: a ticket converges within one sweep period plus one sweep, the period
being max(TICKET_SWEEP_SECONDS, IDLE_FACTOR x the last sweep's scan time). Each sweep is two range
reads of recent entries (the scan), then one read by `_id` per ticket written recently, and a
settle only where something is behind. On MongoDB the scan uses the `at` and `created` indexes
(milliseconds: period = TICKET_SWEEP_SECONDS). FerretDB pushes only `_id` equality down, so there
the scan reads all of ticket_events and messages, and the pacing keeps it under a tenth of the
time: measured on this 2-core machine under load, 11-16 s per sweep at 100k messages + 30k events
(period ~2 min), about a tenth of that at 10k messages. Any number of processes may sweep at
once: settling is idempotent. A ticket (or an owed release) the sweep fails on, a bug or a
document only an operator can mend, is logged and passed over, and the ones after it are swept;
the process tries it again at each sweep after (`Owed`), however far its span has moved on.
"""

import asyncio
import contextlib
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from backend.audit import service as events
from backend.core.background import BackgroundLoop
from backend.core.clock import as_utc, utcnow
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.logging import get_logger
from backend.core.tuning import SWEEP_IDLE_FACTOR as IDLE_FACTOR
from backend.messages import public as messages
from backend.tickets import projection, repository
from backend.tickets import service as tickets
from backend.tickets.states import Status
from backend.users import service as users

log = get_logger("tickets.sweep")


@dataclass(frozen=True)
class Owed:
    """A ticket a sweep failed on (a bug, or a document only an operator can mend), with what
    that sweep knew of it: the next sweep tries it again although its span has moved on."""

    since: datetime
    version: int  # its newest event's
    newest: tuple[datetime, str] | None  # its newest message's time and id


@dataclass(frozen=True)
class Swept:
    repaired: int  # tickets that were behind
    scan_seconds: float  # the two range reads: what grows with the store on FerretDB
    failed: dict[str, Owed] = field(default_factory=dict)


async def sweep_once(db: Database, *, since: datetime, owed: Mapping[str, Owed] | None = None) -> Swept:
    """Settles every ticket moved or messaged at or after `since` whose stored document is behind
    (a lower version than its newest event, or an older last message), and every ticket `owed` by
    an earlier sweep that failed on it. A ticket that is not behind costs one read by `_id`. One
    that fails is logged and returned in `failed`; the tickets after it are still swept, so one
    ticket failing at every sweep never holds back the others."""
    owed = owed or {}
    clock = time.monotonic()
    versions = await events.versions_since_internal(db, since)
    latest = await messages.latest_per_ticket_since_internal(db, since)
    scan_seconds = time.monotonic() - clock
    repaired = 0
    failed: dict[str, Owed] = {}
    holders: dict[str, users.User | None] = {}  # the holders read in this pass (hand_back_if_inactive)
    for ticket_id in sorted(set(versions) | set(latest) | set(owed)):
        left = owed.get(ticket_id)
        wanted = Owed(since, versions.get(ticket_id, 0), latest.get(ticket_id))
        if left is not None:
            newer = left.newest is not None and (wanted.newest is None or left.newest[0] > wanted.newest[0])
            wanted = Owed(
                min(since, left.since), max(wanted.version, left.version), left.newest if newer else wanted.newest
            )
        try:
            repaired += await _sweep_ticket(db, ticket_id, wanted, holders)
        except Exception as exc:
            log.error(
                "ticket sweep failed on a ticket; the next sweep tries it again", ticket_id=ticket_id, error=str(exc)
            )
            failed[ticket_id] = wanted
    # Deactivations whose own release never ran to its end: their idle conversations too.
    try:
        await tickets.release_owed(db, paid_if_active_before=since)
    except Exception as exc:  # its marks stay owed and are read again at every sweep: the span moves on
        log.error("owed releases not paid; the next sweep tries them again", error=str(exc))
    return Swept(repaired, scan_seconds, failed)


async def _sweep_ticket(db: Database, ticket_id: str, wanted: Owed, holders: dict[str, users.User | None]) -> int:
    """One ticket's repairs (module docstring). Returns 1 when its document was behind."""
    doc = await repository.get_internal(db, ticket_id)
    behind = doc is None or doc.version < wanted.version
    activity = None
    if wanted.newest is not None:
        at, message_id = wanted.newest
        if doc is None or as_utc(doc.last_message_at) < as_utc(at):
            message = await messages.get_internal(db, message_id)
            activity = projection.Activity.of(message) if message is not None else None
    if behind or activity is not None:
        settled = await projection.settle(db, ticket_id, activity=activity)
        doc = settled if settled is not None else doc
    due = doc is not None and _hooks_may_be_due(doc, wanted.since, wanted.newest)
    if doc is not None and due and not await tickets.finalize_hooks_done(db, ticket_id):
        # Its finalize died before its hooks ran to their end (module docstring): each hook is
        # idempotent, so running them again finishes them.
        await tickets.after_finalize(db, doc)
    if doc is not None:
        # Held by a person deactivated meanwhile (module docstring): handed back to its queue.
        await tickets.hand_back_if_inactive(db, doc, holders=holders)
    return 1 if behind or activity is not None else 0


def _hooks_may_be_due(doc: tickets.Ticket, since: datetime, newest: tuple[datetime, str] | None) -> bool:
    """A finalized ticket finalized within the swept span (its event is what brought it here), or
    one with a message stamped after its finalize (a message that raced it, however long ago it
    was finalized). Older finalized tickets, touched by a rating, are not re-run: their hooks ran
    before the `finalize-hooks` key existed, or a sweep of their own span ran them."""
    if doc.status != Status.FINALIZADO.value or doc.finalized_at is None:
        return False
    done = as_utc(doc.finalized_at)
    return done >= as_utc(since) or (newest is not None and as_utc(newest[0]) > done)


async def run_until(db: Database, settings: Settings, stop: asyncio.Event) -> None:
    since = utcnow() - timedelta(seconds=settings.TICKET_SWEEP_STARTUP_LOOKBACK_SECONDS)
    owed: dict[str, Owed] = {}  # tickets the last sweep failed on (Swept.failed)
    while not stop.is_set():
        started, clock = utcnow(), time.monotonic()
        try:
            swept = await _unless_stopped(sweep_once(db, since=since, owed=owed), stop)
            if swept is None:
                return
        except Exception as exc:  # a database hiccup: the next sweep covers the same span again
            log.warning("ticket projection sweep failed; retrying", error=str(exc))
            scan_seconds = time.monotonic() - clock
        else:
            if swept.repaired:
                log.info("ticket projections repaired from their log", tickets=swept.repaired)
            since = started - timedelta(seconds=settings.TICKET_SWEEP_LOOKBACK_SECONDS)
            owed = swept.failed
            scan_seconds = swept.scan_seconds
        # Paced by the scans only: the reads by `_id` that follow are one per recently written
        # ticket, a fraction of what its writers did, and pacing on them would stretch the bound
        # exactly when traffic is high.
        wait = max(settings.TICKET_SWEEP_SECONDS, IDLE_FACTOR * scan_seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=wait)


async def _unless_stopped(work: Coroutine[Any, Any, Swept], stop: asyncio.Event) -> Swept | None:
    """`work`'s result, or None once `stop` is set first: a sweep over a large FerretDB can take
    minutes, and a process shutting down must not wait for it. Cutting one short is safe: every
    repair it makes is a whole settle or nothing that matters, and the next process sweeps again."""
    task, stopped = asyncio.ensure_future(work), asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return None if task.cancelled() else task.result()


def background(db: Database, settings: Settings, *, enabled: bool = True) -> BackgroundLoop:
    """The sweep inside a backend process's lifespan (TICKET_SWEEP_ENABLED)."""
    return BackgroundLoop("ticket-sweep", run_until, db, settings, enabled=enabled and settings.TICKET_SWEEP_ENABLED)
