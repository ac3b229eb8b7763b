"""The ticket document is a projection of two sources of truth: its `ticket_events` (status,
holder, department, version) and its `messages` (last_message_at, preview, direction). Lists
and announcements read the projection, so it must converge to those sources on its own, without
anyone opening the ticket. `/tickets/counts` reads counters folded from the same log
(tickets/counters.py); settle appends their deltas for the events it rolls forward.

Why every writer *settles* after its write. On MongoDB an update of one document is atomic. On
FerretDB v1 every update is read → modify → write the whole document back, non-atomically: an
activity update can put back the status and version it read just before a transition landed,
and a transition can put back an older `last_message_at`. No update can be made atomic there.
So every writer of a ticket document, after its write, calls `settle`: read the document, roll
it forward over the log (events v+1, v+2, … read by `_id`), check its own activity is there,
repair what is missing, and read again, until a read needs no repair.

Why that converges. Take the last write that lands on a document: its writer's settle reads
after it, so the document it leaves is rolled forward to the end of the log and carries that
writer's activity; an event logged later is followed by its own writer's write and settle. So a
status or version undone by a concurrent write is back within one settle (a few round trips on
`_id`) as long as the writers live. Settle cannot see two things, and the sweep
(`backend/tickets/sweep.py`) repairs both within one sweep period (its docstring states the bound:
TICKET_SWEEP_SECONDS on MongoDB; on FerretDB also at most ten sweep durations):
  * a writer that died, or whose write failed, between its event or message and the document;
  * on FerretDB, one activity undone by a concurrent writer whose read came before that
    activity's write and whose write came after that activity writer's settle read (the last
    writer checks only its own contribution; it cannot know the other one).
"""

import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from backend.audit import service as events
from backend.core.clock import CLOCK_SKEW_SECONDS, as_utc, utcnow
from backend.core.db import Database
from backend.core.logging import get_logger
from backend.messages.models import Message
from backend.realtime import feed
from backend.tickets import counters, repository
from backend.tickets.models import Ticket, TicketEvent, TicketState

log = get_logger("tickets.projection")

PREVIEW_CHARS = 120
# Each round is a read plus at most two writes; two settlers repairing at once agree in a couple
# of rounds. Past this the sweep finishes the job.
MAX_SETTLE_ROUNDS = 20


@dataclass(frozen=True)
class Activity:
    """What one stored message contributes to its ticket: the last-message fields, moved forward only."""

    at: datetime
    preview: str
    direction: str
    automatic: bool = False  # sent by the helpdesk itself (backend/automation): the inbox says so

    @classmethod
    def of(cls, message: Message) -> "Activity":
        return cls(
            as_utc(message.created_at), cls.preview_of(message.body, message.type), message.direction, message.automatic
        )

    @staticmethod
    def preview_of(body: str, type_: str) -> str:
        return body[:PREVIEW_CHARS] if body else f"[{type_}]"

    def fields(self) -> dict[str, Any]:
        return {
            "last_message_at": self.at,
            "last_message_preview": self.preview,
            "last_message_direction": self.direction,
            "last_message_automatic": self.automatic,
        }

    def shown_by(self, ticket: Ticket) -> bool:
        return as_utc(ticket.last_message_at) >= self.at


async def _log_tail(db: Database, ticket_id: str, version: int) -> list[TicketEvent]:
    """The events after `version` (none when the projection is at the log's end). Each event
    carries the ticket's whole state, so the newest one is all a roll-forward needs; the others
    are for their counts deltas."""
    tail: list[TicketEvent] = []
    while (nxt := await events.get_internal(db, ticket_id, version + 1)) is not None:
        tail.append(nxt)
        version += 1
    return tail


async def _count(db: Database, rolled: list[TicketEvent]) -> None:
    """The counts deltas of events whose writer has not projected them (tickets/counters.py):
    appended before this settle projects them, so a projected version always has its deltas."""
    previous: TicketState | None = None
    for event in rolled:
        await counters.record(db, event, previous_state=previous)
        previous = event.state


# A move younger than this, by its roller's clock, is its writer's to announce (`_announce_left`).
LEFT_TO_WRITER_SECONDS = 1.0


def writer_failed(db: Database, reseller_id: str) -> None:
    """A move's writer failed at or after logging it, and will not announce it: the tenant's screens
    refetch once no roller can still take the move for a live writer's (`_announce_left`), so the
    refetch comes after any roll that left it unannounced, whatever the two hosts' clocks say."""
    feed.resync_soon(db, reseller_id, after=LEFT_TO_WRITER_SECONDS + CLOCK_SKEW_SECONDS)


async def _announce_left(db: Database, before: Ticket | None, after: Ticket, tail: TicketEvent) -> None:
    """A move (or an opening) rolled forward here, not by its writer, is announced once its writer
    had its time: a writer that failed or died after logging it never will, and the click's repeat
    is refused (409). A younger one is its writer's to announce, or to answer with the tenant's
    resync when it fails (`writer_failed`), which comes after this roll."""
    if utcnow() - as_utc(tail.at) < timedelta(seconds=LEFT_TO_WRITER_SECONDS):
        return
    await feed.publish(db, reseller_id=after.reseller_id, type_=f"ticket.{tail.type}", ticket=after, previous=before)


async def settle(
    db: Database, ticket_id: str, *, activity: Activity | None = None, read: Ticket | None = None
) -> Ticket | None:
    """The ticket as its sources say it is, written back until a read of the stored document
    shows it (see the module docstring for why a writer calls this after writing). `activity`:
    the caller's own message, which the document must show (or something newer). `read`: the
    document as the caller's own write answered it (repository.touch_activity), a read made
    after that write, which stands in for the first round's. Returns None for a ticket that has
    no creation event."""
    view: Ticket | None = None
    for _ in range(MAX_SETTLE_ROUNDS):
        doc, read = read or await repository.get_internal(db, ticket_id), None
        if doc is None:
            created = await events.get_internal(db, ticket_id, 1)
            if created is None:
                return None
            # Its creator logged event v1 and died (or is inserting it right now): complete it.
            await _count(db, [created])
            opened = Ticket.model_validate(created.data["ticket"])
            with contextlib.suppress(DuplicateKeyError):
                await repository.insert(db, opened)
                await _announce_left(db, None, opened, created)
            continue
        rolled = await _log_tail(db, ticket_id, doc.version)
        tail = rolled[-1] if rolled else None
        missing = activity if activity is not None and not activity.shown_by(doc) else None
        view = doc
        if tail is not None:  # validated: an event logged before a state field may carry it null
            rolled_to = {**dict(tail.state), "version": tail.version, "updated_at": tail.at}
            view = Ticket.model_validate({**doc.model_dump(by_alias=True), **rolled_to})
        if missing is not None:
            view = view.model_copy(update=missing.fields())
        if tail is None and missing is None:
            return doc
        if tail is not None:
            await _count(db, rolled)
            if await repository.apply_state(
                db, ticket_id, from_version=doc.version, version=tail.version, state=tail.state, at=tail.at
            ):
                await _announce_left(db, doc, view, tail)
        if missing is not None:
            await repository.touch_activity(db, doc, activity=missing)
    log.warning("ticket projection still moving after settling; the sweep will finish it", ticket_id=ticket_id)
    return view
