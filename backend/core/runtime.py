"""This process's mutable state, in one object: every queue, hint, in-flight map and sink that
used to be a module global lives in the `Runtime` of the database client it serves.

Why per client: a process owns one client (the API's lifespan and each worker's entry point make
one), and every function that needs a piece of this state already takes a database or a
collection, so `runtime_of(db)` reaches it with no new parameter through the services. The
lifespan and `core.background` open the runtime with their client (`open_runtime`) and close it
before the client. Two clients in one Python process — a test playing two processes, or two apps
side by side — get two runtimes, exactly as two processes would. A client nobody opened (a script,
a test's raw client) gets one on first use; a runtime goes when its client is collected.

Every piece is process-local by design: only a hint, a batch in memory or a wake-up; every rule is
decided by what the database stores (docs/ARCHITECTURE.md §5). Dropping a runtime loses speed,
never data. Not here yet: backend/core/seqlog.py's hints (being rewritten separately).
"""

import asyncio
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pymongo import AsyncMongoClient

from backend.core.db import Database

if TYPE_CHECKING:  # the pieces' own types; their modules import this one
    from backend.core.group_commit import _Queue as InsertQueue
    from backend.ledger.guard import Evaluation
    from backend.realtime.feed import Sink
    from backend.realtime.records import _Queue as FeedQueue
    from backend.webhooks.signals import Wakeup


@dataclass(eq=False)
class Runtime:
    # core/group_commit: inserts waiting per (database, collection), and the tasks writing them
    # (the loop keeps only weak references to tasks).
    insert_queues: "dict[tuple[str, str], InsertQueue]" = field(default_factory=dict)
    insert_writers: "set[asyncio.Task[None]]" = field(default_factory=set)
    # core/single_flight: the `_id` reads in flight per (database, collection, _id).
    reads_in_flight: "dict[tuple[str, str, Any], asyncio.Future[dict[str, Any] | None]]" = field(default_factory=dict)
    # core/conditional: whether the server pushes filters down (MongoDB) or not (FerretDB).
    filters_push_down: bool | None = None
    # realtime/records: per (database, tenant) the highest feed seq seen stored; the feed's
    # append queue per database and the tasks writing them.
    feed_tails: dict[tuple[str, str], int] = field(default_factory=dict)
    feed_queues: "dict[str, FeedQueue]" = field(default_factory=dict)
    feed_writers: "set[asyncio.Task[None]]" = field(default_factory=set)
    # realtime/feed: who gets this process's stored records (the hub, the Redis bus), per database.
    feed_sinks: "list[tuple[str, Sink]]" = field(default_factory=list)
    # webhooks/signals: the processors to wake when this process stores a delivery.
    webhook_wakeups: "set[Wakeup]" = field(default_factory=set)
    # outbound/repository: per (database, chat) the last chat position seen stored, bounded LRU.
    outbound_chat_heads: OrderedDict[tuple[str, str], int] = field(default_factory=OrderedDict)
    # ledger/steps: the guard step's evaluation, handed to the record step of the same start.
    ledger_evaluations: "dict[str, Evaluation]" = field(default_factory=dict)

    async def close(self) -> None:
        """Lets batches already handed to a writer finish (their callers are waiting on them)."""
        writers = [*self.insert_writers, *self.feed_writers]
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
