"""This process's mutable state — every queue, hint, in-flight map and sink that would otherwise
be a module global — in one `Runtime` per database client, reached with `runtime_of(db)`.

Why per client: a process owns one client (made by the lifespan or a worker's entry point, which
open its runtime and close it before the client), and every function needing a piece already has
a database or collection, so no parameter is threaded through the services. Two clients in one
interpreter (tests playing two processes, apps side by side) get two runtimes, as two processes
would; a client nobody opened (a script) gets one on first use. Every piece is a hint, a batch in
memory or a wake-up (or, for the finalize hooks, wiring start-up redoes): losing it costs speed,
never data.
"""

import asyncio
import itertools
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pymongo import AsyncMongoClient

from backend.core.config import SETUP_CACHE_SECONDS_DEFAULT
from backend.core.db import Database

if TYPE_CHECKING:  # the pieces' types; their modules import this one
    from backend.core.group_commit import _Queue as WriteQueue
    from backend.core.seqlog import _Appends as SeqAppends
    from backend.core.seqlog import _Block as SeqBlock
    from backend.ledger.guard import Evaluation
    from backend.messages.models import Message
    from backend.realtime.feed import Sink
    from backend.tickets.models import Ticket, TicketEvent, TicketState
    from backend.webhooks.signals import Wakeup

FinalizeHook = Callable[[Database, "Ticket"], Awaitable[None]]
# (db, event, the ticket's state before it or None when the hook must read it)
EventHook = Callable[[Database, "TicketEvent", "TicketState | None"], Awaitable[None]]
# (db, stored message, the ticket it is filed under)
MessageHook = Callable[[Database, "Message", "Ticket"], Awaitable[None]]
# (db, the finalized ticket, the client message moving on) -> what a ticket opened for it starts
# with (a tickets.LazyOpening)
RacedOpening = Callable[[Database, "Ticket", "Message"], Callable[[], Awaitable[Any]] | None]
LogKey = tuple[str, str, str]  # a seqlog: (database, collection, prefix)


@dataclass(eq=False)
class Runtime:
    # Names this process (this client) where a stored document must tell processes apart: the
    # block announcements of core/seqlog.
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    # core/group_commit: inserts waiting per (database, collection); the tasks writing them (held
    # here: the loop keeps only weak references to tasks).
    insert_queues: "dict[tuple[str, str], WriteQueue]" = field(default_factory=dict)
    insert_writers: "set[asyncio.Task[None]]" = field(default_factory=set)
    # core/group_commit: the same for updates by `_id`.
    update_queues: "dict[tuple[str, str], WriteQueue]" = field(default_factory=dict)
    update_writers: "set[asyncio.Task[None]]" = field(default_factory=set)
    # core/seqlog, per log: the highest entry seen stored, the highest number this process handed
    # out, the highest block whose marker it knows stored, the block it owns, one block decision
    # at a time; ticks order an append's arrival against the marker reads.
    seqlog_heads: dict[LogKey, int] = field(default_factory=dict)
    seqlog_reserved: dict[LogKey, int] = field(default_factory=dict)
    seqlog_marked: dict[LogKey, int] = field(default_factory=dict)
    seqlog_blocks: "dict[LogKey, SeqBlock]" = field(default_factory=dict)
    seqlog_locks: dict[LogKey, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = field(default_factory=dict)
    seqlog_ticks: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    # core/seqlog: plain appends waiting per (database, collection); the tasks writing them.
    seqlog_appends: "dict[tuple[str, str], SeqAppends]" = field(default_factory=dict)
    seqlog_writers: "set[asyncio.Task[None]]" = field(default_factory=set)
    # core/seqlog, for a log that keeps its appends (a work queue): per (database, collection,
    # prefix, number), the entry this process appended, as stored (BSON), until its walk's cursor
    # passes it (bounded LRU: tuning.QUEUE_KEPT).
    seqlog_kept: "OrderedDict[tuple[str, str, str, int], bytes]" = field(default_factory=OrderedDict)
    # core/single_flight: the `_id` reads in flight per (database, collection, _id); the answers
    # kept for `cached` readers ({} for a miss), with when their read was sent (bounded LRU), for `cache_seconds`
    # (SETUP_CACHE_SECONDS, set by gates.open_gate); `cache_epoch` moves at every `forget`.
    reads_in_flight: "dict[tuple[str, str, Any], asyncio.Future[dict[str, Any] | None]]" = field(default_factory=dict)
    documents: OrderedDict[tuple[str, str, Any], tuple[float, dict[str, Any]]] = field(default_factory=OrderedDict)
    cache_seconds: float = SETUP_CACHE_SECONDS_DEFAULT
    cache_epoch: int = 0
    # core/conditional: whether the server pushes filters down (MongoDB) or not (FerretDB); per
    # (database, collection, _id) being written by `one_writer`, its lock and how many hold or wait.
    document_writers: dict[tuple[str, str, Any], tuple[asyncio.Lock, list[int]]] = field(default_factory=dict)
    filters_push_down: bool | None = None
    # realtime/feed: who gets this process's stored records (the hub, the Redis bus), per database.
    feed_sinks: "list[tuple[str, Sink]]" = field(default_factory=list)
    # realtime/feed: the (database, tenant) pairs whose resync is due shortly, and when (loop time).
    resyncs_due: dict[tuple[str, str], float] = field(default_factory=dict)
    # webhooks/signals: the processors to wake when this process stores a delivery.
    webhook_wakeups: "set[Wakeup]" = field(default_factory=set)
    # outbound/worker: the send loops to wake when this process stores a queued message.
    outbound_wakeups: set[asyncio.Event] = field(default_factory=set)
    # media/worker: the fetch loops to wake when this process queues a media fetch.
    media_fetch_wakeups: set[asyncio.Event] = field(default_factory=set)
    # media/service: per (database, message) the media message this process stored and queued a
    # fetch for, as stored, until its fetcher's first look at it (bounded LRU: tuning.MEDIA_HANDED).
    media_fetch_handed: "OrderedDict[tuple[str, str], Message]" = field(default_factory=OrderedDict)
    # outbound/repository: per (database, chat) the last chat position seen stored, bounded LRU.
    outbound_chat_heads: OrderedDict[tuple[str, str], int] = field(default_factory=OrderedDict)
    # webhooks/service: per (database, connection, phone) the client the phone key names and the
    # ticket its last message was filed under, bounded LRU (ids only: documents are read fresh).
    ingest_chats: OrderedDict[tuple[str, str, str], tuple[str, str]] = field(default_factory=OrderedDict)
    # webhooks/repository: per (database, `_id`) the waiting entries that do not read which this
    # process has reported (once each, not at every sweep), bounded LRU.
    waiting_unreadable: OrderedDict[tuple[str, str], None] = field(default_factory=OrderedDict)
    # core/attempts: per (database, attempts collection, message) the messages whose attempts
    # this process's workers have looked at, bounded LRU (`AttemptLedger.step`).
    attempts_seen: OrderedDict[tuple[str, str, str], None] = field(default_factory=OrderedDict)
    # unread/service: per (database, ticket) the highest inbound number seen stored, bounded LRU.
    unread_inbound_heads: OrderedDict[tuple[str, str], int] = field(default_factory=OrderedDict)
    # ledger/steps: the guard step's evaluation, handed to the record step of the same start.
    ledger_evaluations: "dict[str, Evaluation]" = field(default_factory=dict)
    # tickets/service: what follows every finalize (backend/gates.py `connect_domains`).
    finalize_hooks: list[FinalizeHook] = field(default_factory=list)
    # tickets/projection: what records every ticket event before it is projected (the reports'
    # aggregates); messages/service: what records every stored message (gates.connect_domains).
    event_hooks: list[EventHook] = field(default_factory=list)
    message_hooks: list[MessageHook] = field(default_factory=list)
    # messages/service: what a ticket opened for a client message that raced a finalize is born
    # with (the automatic messages' markers, backend/automation; gates.connect_domains).
    raced_opening: RacedOpening | None = None
    # core/foldlog: per (database, "<log/bucket>|compact"), its writers' compactions of the
    # bucket, one at a time; tickets/service: per (database, tenant's number key), its
    # ticket-number proposals.
    process_locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    # core/foldlog: per (database, totals collection, totals `_id`), the watermark and tail end a
    # reader last saw (its read hint, bounded by foldlog.HINTS).
    foldlog_hints: dict[tuple[str, str, str], tuple[int, int]] = field(default_factory=dict)
    # core/foldlog: per (database, log/bucket), the entries this process appended lately, as
    # stored (BSON, by number), for the compaction its own append triggers (bounded LRU).
    foldlog_appended: "OrderedDict[tuple[str, str], dict[int, bytes]]" = field(default_factory=OrderedDict)
    # core/foldlog: per (database, totals collection, totals `_id`), the watermark and document
    # (BSON) of the totals this process last wrote or read, for its next compaction of the bucket
    # (logs that `keeps_totals`; bounded LRU, foldlog.TOTALS_KEPT).
    foldlog_totals: OrderedDict[tuple[str, str, str], tuple[int, bytes]] = field(default_factory=OrderedDict)
    # reports/repository: per (database, ticket) whose first client message is claimed, that
    # time when this process claimed it (None: claimed by another), bounded LRU.
    report_first_in: OrderedDict[tuple[str, str], int | None] = field(default_factory=OrderedDict)

    async def close(self) -> None:
        """Lets batches already handed to a writer finish (their callers are waiting on them)."""
        writers = [*self.insert_writers, *self.update_writers, *self.seqlog_writers]
        await asyncio.gather(*writers, return_exceptions=True)
        self.feed_sinks.clear()
        self.webhook_wakeups.clear()


# By identity: clients to the same server compare equal, and each is still its own process's.
_runtimes: dict[int, tuple["weakref.ref[AsyncMongoClient[Any]]", Runtime]] = {}


def open_runtime(client: AsyncMongoClient[Any]) -> Runtime:
    """A fresh runtime for `client` (the lifespan's and each worker's first step)."""
    key = id(client)
    _runtimes[key] = (weakref.ref(client, lambda _: _runtimes.pop(key, None)), Runtime())
    return _runtimes[key][1]


def runtime_of(db: Database) -> Runtime:
    """The one accessor: the runtime of the client `db` belongs to."""
    found = _runtimes.get(id(db.client))
    if found is None or found[0]() is not db.client:
        return open_runtime(db.client)
    return found[1]
