"""The projection sweep: the durable backstop behind `projection.settle`.

Every writer settles the ticket document after its write, which keeps it equal to the log while
the writers live. What a writer cannot repair is left here: a process that died between storing
an event or a message and writing the ticket (or whose write failed), and on FerretDB an
activity lost to a concurrent whole-document write-back after its writer had checked it. Every
TICKET_SWEEP_SECONDS the sweep settles each ticket that has an event or a message written since
the previous sweep began (minus TICKET_SWEEP_LOOKBACK_SECONDS, longer than any write takes to
land), giving the newest such message as the activity the document must show.

The bound, with no reader: a ticket converges within one sweep period plus one sweep, the period
being max(TICKET_SWEEP_SECONDS, IDLE_FACTOR x the last sweep's duration). Each sweep is two range
reads of recent entries, then reads by `_id`, and a write only where something is behind. On
MongoDB the reads use the `at` and `created` indexes (milliseconds: period = TICKET_SWEEP_SECONDS).
FerretDB pushes only `_id` equality down, so there they are scans of ticket_events and messages,
and the pacing keeps the sweep under a tenth of the time: measured on this 2-core machine under
load, 11-16 s per sweep at 100k messages + 30k events (period ~2 min), about a tenth of that at
10k messages. Any number of processes may sweep at once: settling is idempotent.
"""

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any

from backend.audit import repository as events
from backend.core.background import BackgroundLoop
from backend.core.clock import as_utc, utcnow
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.logging import get_logger
from backend.messages import repository as messages
from backend.tickets import projection, repository

log = get_logger("tickets.sweep")

IDLE_FACTOR = 9


async def sweep_once(db: Database, *, since: datetime) -> int:
    """Settles every ticket moved or messaged at or after `since`. Returns how many were behind."""
    moved = await events.ticket_ids_since(db, since)
    latest = await messages.latest_per_ticket_since(db, since)
    repaired = 0
    for ticket_id in sorted(moved | set(latest)):
        doc = await repository.get(db, ticket_id)
        activity = None
        if ticket_id in latest:
            at, message_id = latest[ticket_id]
            shown = doc.get("last_message_at") if doc is not None else None
            if shown is None or as_utc(shown) < as_utc(at):
                message = await messages.get(db, message_id)
                activity = projection.Activity.of(message) if message is not None else None
        before = doc.get("version") if doc is not None else None
        after = await projection.settle(db, ticket_id, activity=activity)
        if activity is not None or (after is not None and after.get("version") != before):
            repaired += 1
    return repaired


async def run_until(db: Database, settings: Settings, stop: asyncio.Event) -> None:
    since = utcnow() - timedelta(seconds=settings.TICKET_SWEEP_STARTUP_LOOKBACK_SECONDS)
    while not stop.is_set():
        started, clock = utcnow(), time.monotonic()
        try:
            repaired = await _unless_stopped(sweep_once(db, since=since), stop)
            if repaired is None:
                return
        except Exception as exc:  # a database hiccup: the next sweep covers the same span again
            log.warning("ticket projection sweep failed; retrying", error=str(exc))
        else:
            if repaired:
                log.info("ticket projections repaired from their log", tickets=repaired)
            since = started - timedelta(seconds=settings.TICKET_SWEEP_LOOKBACK_SECONDS)
        wait = max(settings.TICKET_SWEEP_SECONDS, IDLE_FACTOR * (time.monotonic() - clock))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=wait)


async def _unless_stopped(work: Coroutine[Any, Any, int], stop: asyncio.Event) -> int | None:
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
