"""Where domain changes are announced for realtime delivery.

Services call `publish` right after a change is durable (its ticket_events entry or message is
stored). `publish` stores one record in the per-tenant sequenced feed (records.py), then hands it
to this process's hub and to the Redis bus. It never raises (unless `required`: a caller whose
retry announces again): the domain write already happened, so a realtime failure is logged and
counted (iaze_realtime_errors_total), and the tenant's open screens are told to refetch (a
`resync` frame, through every process's hub), since no event will ever show that change.

Crash window: the feed record is written immediately after the domain write, in the same request.
If the process dies between the two, that one change is in the database (ticket, ticket_events,
messages) but has no feed record. Work that is retried closes the window itself: a webhook
delivery whose attempt died is processed again, and the retry announces what it finds already
stored (messages, receipts, connection states; at-least-once, clients apply by id). A change made
by an API request whose process died is not announced; the data is not lost and shows on the
next list refetch (every client refetches on `resync` and on a fresh connect), and the next
change to the same ticket carries its full current state. The feed is a notification log, never
the source of truth.
"""

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from pymongo.errors import PyMongoError

from backend.core.clock import utcnow
from backend.core.db import Database
from backend.core.logging import get_logger
from backend.core.runtime import runtime_of
from backend.messages.models import Message
from backend.messages.schemas import MessageRead
from backend.realtime import metrics, records
from backend.realtime.audience import snapshot
from backend.tickets.models import Ticket
from backend.tickets.schemas import TicketRead

log = get_logger("realtime.feed")

RESYNC_COALESCE_SECONDS = 1.0  # lost records of one tenant answered by one resync (`resync_soon`)

EVENT_TYPES = frozenset(
    {
        "ticket.created",
        "ticket.assumed",
        "ticket.transferred",
        "ticket.finalized",
        "ticket.routed",  # the client's answer to the department menu (backend/automation)
        "ticket.rated",  # the client's 1-5 rating of its finalized ticket
        "message.created",
        "ticket.read",  # one user's own: its unread count of a ticket changed (backend/unread)
        "message.status",
        "connection.status",
        "scheduled.settled",  # a scheduled message was sent, canceled or failed (backend/scheduled)
    }
)


class Sink(Protocol):
    """Something in this process that wants every stored record (the hub, the Redis bus)."""

    def announce(self, record: dict[str, Any]) -> None: ...

    def access_changed(self, reseller_id: str, user_id: str | None) -> None: ...

    def resync(self, reseller_id: str) -> None: ...


def register_sink(db: Database, sink: Sink) -> None:
    runtime_of(db).feed_sinks.append((db.name, sink))


def unregister_sink(db: Database, sink: Sink) -> None:
    sinks = runtime_of(db).feed_sinks
    sinks[:] = [(name, s) for name, s in sinks if s is not sink]


def _connection_json(connection: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in connection.items() if k not in ("_id", "secret", "token", "secret_token")}
    if "_id" in connection:
        out["id"] = str(connection["_id"])
    return out


def build(
    *,
    reseller_id: str,
    type_: str,
    ticket: Ticket | None,
    previous: Ticket | None,
    message: Message | None,
    connection: dict[str, Any] | None,
    data: dict[str, Any] | None,
    reader_id: str | None = None,
    unread_count: int | None = None,
) -> dict[str, Any]:
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown realtime event type {type_!r}")
    return {
        "type": type_,
        "at": utcnow(),
        "ticket": _ticket_json(ticket, unread_count) if ticket is not None else None,
        "message": MessageRead.of_message(message).model_dump(mode="json") if message is not None else None,
        "connection": _connection_json(connection) if connection is not None else None,
        "data": data,
        # What the audience rule needs, frozen at the moment of the change (audience.py).
        "audience": {
            "after": snapshot(reseller_id, ticket, reader_id=reader_id),
            "before": snapshot(reseller_id, previous, reader_id=reader_id),
        },
    }


def _ticket_json(ticket: Ticket, unread_count: int | None) -> dict[str, Any]:
    """An unread count is one user's: a record shared by everyone who sees the ticket leaves it
    out (screens keep the count they have), and only a reader's own record carries it."""
    read = TicketRead.of(ticket).model_copy(update={"unread_count": unread_count or 0})
    return read.model_dump(mode="json", exclude=None if unread_count is not None else {"unread_count"})


async def publish(
    db: Database,
    *,
    reseller_id: str,
    type_: str,
    ticket: Ticket | None = None,
    previous: Ticket | None = None,
    message: Message | None = None,
    data: dict[str, Any] | None = None,
    connection: dict[str, Any] | None = None,
    reader_id: str | None = None,
    unread_count: int | None = None,
    required: bool = False,
) -> dict[str, Any] | None:
    """Announce a change. `ticket` is the ticket after it; `previous` the ticket before it (for
    transitions), so that whoever loses sight of the ticket is told too. `message` for message
    events; `connection` (a whatsapp connection) for connection.status; `reader_id` for a record
    only that user receives (and only while it sees the ticket), with its `unread_count`. Returns the stored record,
    or None when realtime failed (already logged and counted). `required`: a store error is raised
    instead, for a caller whose retry announces again (a stored message: `complete_stored`)."""
    try:
        body = build(
            reseller_id=reseller_id,
            type_=type_,
            ticket=ticket,
            previous=previous,
            message=message,
            connection=connection,
            data=data,
            reader_id=reader_id,
            unread_count=unread_count,
        )
        record = await records.append(db, reseller_id, body)
    except Exception as exc:
        metrics.ERRORS.labels("feed_write").inc()
        if required and isinstance(exc, PyMongoError):
            raise
        log.error("realtime feed write failed; change is stored but not announced", type=type_, error=str(exc))
        # No event will show it (a transfer, a routed or handed-back ticket reaches its new queue
        # by one): the tenant's open screens, on every process, refetch what they show instead.
        resync_soon(db, reseller_id)
        return None
    metrics.PUBLISHED.labels(type_).inc()
    _to_sinks(db, lambda sink: sink.announce(record), failed="realtime announce failed; the tail poll will deliver it")
    return record


def resync_soon(db: Database, reseller_id: str, *, after: float = 0.0) -> None:
    """The tenant's screens refetch RESYNC_COALESCE_SECONDS from now: every change whose record was
    lost until then is stored by then, so one refetch shows them all, and a store in trouble (when
    such losses come in bursts) meets one refetch per screen a second, not one per lost record.
    `after`: the refetch must come no sooner than that many seconds from now (a ticket move whose
    writer failed, tickets.projection `writer_failed`); a resync due sooner does not answer it,
    and one scheduled for it comes a window later still, so such wants in the next window share it."""
    loop = asyncio.get_running_loop()
    due, key = runtime_of(db).resyncs_due, (db.name, reseller_id)
    if key in due and due[key] >= loop.time() + after:
        return
    delay = after + RESYNC_COALESCE_SECONDS
    at = due[key] = loop.time() + delay

    def send() -> None:
        if due.get(key) == at:
            del due[key]
        _to_sinks(db, lambda sink: sink.resync(reseller_id), failed="resync after a lost feed write not sent")

    loop.call_later(delay, send)


def _to_sinks(db: Database, notify: Callable[[Sink], None], *, failed: str) -> None:
    """`notify` each of this process's sinks of `db`; a sink that fails is logged and counted."""
    for db_name, sink in list(runtime_of(db).feed_sinks):
        if db_name != db.name:
            continue
        try:
            notify(sink)
        except Exception as exc:
            metrics.ERRORS.labels("announce").inc()
            log.warning(failed, error=str(exc))


def access_changed(db: Database, *, reseller_id: str, user_id: str | None = None) -> None:
    """A user's access (active, departments) changed — or, with no user, a whole tenant's (the
    reseller was deactivated): their open sockets, on every process, re-read it now rather than
    at their next periodic check (REALTIME_RECHECK_SECONDS), which stays the safety net for a
    lost notice. Call after the change is stored; never raises."""
    failed = "access change not announced; sockets re-check at their next period"
    _to_sinks(db, lambda sink: sink.access_changed(reseller_id, user_id), failed=failed)
