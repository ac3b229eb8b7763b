"""In-process fan-out: per tenant, deliver feed records to this process's sockets in seq order.

Records reach the hub from this process's own publishes and from the Redis bus (other processes).
Either may arrive out of order or not at all; what the hub delivers is decided by seq alone: one
pump task per tenant dispatches delivered+1, delivered+2, ... reading any record it has not been
handed from the database (an `_id` lookup), and a periodic tail check finds records whose notice
was lost. So a missed or late pub/sub message costs latency, never a gap.
"""

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from backend.core.db import Database
from backend.core.logging import get_logger
from backend.core.schemas import iso_ms
from backend.core.tenancy import Actor
from backend.core.tuning import CATCH_UP_BATCH, MISSING_RETRIES, NOTICE_GRACE_SECONDS, QUIET_POLL_FACTOR
from backend.core.tuning import FEED_LINGER_SECONDS as LINGER_SECONDS
from backend.core.tuning import REPLAY_PER_TENANT as RECENT_PER_TENANT
from backend.realtime import metrics, records
from backend.realtime.audience import Side, allows, compact

log = get_logger("realtime.hub")

SLOW_CONSUMER_CODE = 4408


# What the hub holds per feed record: (seq, frame, tenant, after, before) — the frame is the
# JSON text sent to clients, serialized once for every socket; the rest is the record's audience
# (audience.compact). Flat tuples of ints, strings and None on purpose, so the collector stops
# tracking them (backend/core/tuning.py, "Tuple tracking").
Entry = tuple[int, str, str | None, Side | None, Side | None]


# Put in a socket's queue (ahead of nothing: in order with its events) to make its session
# re-read the user now; compared by identity.
RECHECK: Entry = (0, "", None, None, None)
# Likewise, to make it tell its client to refetch: a change was stored that the feed could not
# record (realtime/feed.py `publish`), so no event will ever show it.
RESYNC: Entry = (0, "resync", None, None, None)


# The events whose record's `data` the screens need (the others' is for the feed's readers only):
# the schedule as settled; a client message's inbound number and the number a reader's count
# covers (backend/unread: a screen counts a message once, and not when a read counted it already).
FRAMED_DATA = frozenset({"scheduled.settled", "message.created", "ticket.read"})


def frame_of(record: dict[str, Any]) -> str:
    at = record.get("at")
    if isinstance(at, str):  # from the bus: the same instant, whichever process serializes it
        at = datetime.fromisoformat(at)
    return json.dumps(
        {
            "type": "event",
            "seq": record["seq"],
            "event": record["type"],
            "at": iso_ms(at) if isinstance(at, datetime) else at,
            "ticket": record.get("ticket"),
            "message": record.get("message"),
            "connection": record.get("connection"),
            **({"data": record.get("data")} if record["type"] in FRAMED_DATA else {}),
        },
        separators=(",", ":"),
        default=str,
    )


def entry_of(record: dict[str, Any]) -> Entry:
    """A record as it is held and delivered. One that does not read (a field missing or of another
    shape: an operator's slip, or a newer version's record mid-deploy) is logged and becomes an
    entry no socket receives: its tenant's feed goes on past it, where raising here would stall
    every socket of the tenant on it (the pump retries a failed drain at the same seq)."""
    seq = int(record["seq"])
    try:
        return (seq, frame_of(record), *compact(record))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        log.error("realtime record unreadable; delivered to no one", seq=seq, error=repr(exc))
        return (seq, "", None, None, None)


class Inbox:
    """A socket's queue: the part of asyncio.Queue a session uses (one reader, `put_nowait`
    raising QueueFull, `get`), in one deque. An asyncio.Queue is four deques and an Event, ~3 KB
    per idle socket; with thousands of sockets per process that was a tenth of their memory."""

    __slots__ = ("_items", "_maxsize", "_waiter")

    def __init__(self, maxsize: int) -> None:
        self._items: deque[Entry] = deque()
        self._maxsize = maxsize
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, entry: Entry) -> None:
        if len(self._items) >= self._maxsize:
            raise asyncio.QueueFull
        self._items.append(entry)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Entry:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()


@dataclass(eq=False)
class Subscriber:
    actor: Actor
    queue: Inbox
    cursor: int  # highest tenant seq already handled for this socket (sent or not for it)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    detached: asyncio.Event = field(default_factory=asyncio.Event)
    stop_code: int = 1000

    def stop(self, code: int) -> None:
        """Asks the socket's session to close with `code` (4408 slow consumer, 1001 shutdown)."""
        if not self.stopped.is_set():
            self.stop_code = code
            self.stopped.set()

    def recheck(self) -> None:
        """Asks the session to re-read its user (access changed). A full queue is a socket about
        to be closed as too slow: nothing to ask then."""
        with suppress(asyncio.QueueFull):
            self.queue.put_nowait(RECHECK)

    def resync(self) -> None:
        """Asks the session to tell its client to refetch (a full queue: the socket is about to be
        closed, and its client refetches when it connects again)."""
        with suppress(asyncio.QueueFull):
            self.queue.put_nowait(RESYNC)

    def offer(self, entry: Entry) -> bool:
        """Queues the entry if it is new and meant for this user; False once the queue is full."""
        seq, _, tenant, after, before = entry
        if seq <= self.cursor:
            return True
        self.cursor = seq
        if not allows(self.actor, tenant, after, before):
            return True
        try:
            self.queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.stop(SLOW_CONSUMER_CODE)
            return False
        return True


@dataclass(eq=False)
class TenantFeed:
    reseller_id: str
    subs: set[Subscriber] = field(default_factory=set)
    pending: int = 0  # attachers waiting for `ready`; keeps the feed from being dropped under them
    delivered: int = 0  # every seq <= delivered was dispatched to this process's sockets
    known: int = 0  # highest seq known to be stored
    recent: dict[int, Entry] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    read_tail: bool = False  # the next wake reads the stored tail, as a poll would (Hub.poke_all)
    ready: asyncio.Future[None] | None = None
    pump: asyncio.Task[None] | None = None
    linger: asyncio.TimerHandle | None = None  # set while the tenant has no socket here
    # Replay reads in flight, shared by every socket replaying the same gap at the same time.
    fetching: dict[int, asyncio.Future[Entry]] = field(default_factory=dict)

    def cancel(self) -> None:
        """Stops what runs for the feed: its linger timer, its start, its pump."""
        for running in (self.linger, self.ready, self.pump):
            if running is not None:
                running.cancel()


class Hub:
    def __init__(self, db: Database, *, queue_size: int, poll_seconds: float) -> None:
        self.db = db
        self.queue_size = queue_size
        self.poll_seconds = poll_seconds
        self.tenants: dict[str, TenantFeed] = {}
        self.closing = asyncio.Event()
        # While a bus is connected, a lost notice is noticed at the tenant's next event (its seq
        # is past what we delivered), so the tail poll only serves a tenant's last event before a
        # quiet spell and can be rare; a miss-lookup is a scan on FerretDB. Set by the bus.
        self.bus_connected = False

    # -- input: records and notices -------------------------------------------------------------

    def ingest(self, record: dict[str, Any]) -> None:
        tenant = self.tenants.get(record["reseller_id"])
        if tenant is None:
            return  # nobody here listens to this tenant
        entry = entry_of(record)
        seq = entry[0]
        if seq > tenant.delivered and entry[1]:  # one that did not frame is read from the store instead
            tenant.recent[seq] = entry
        self._known(tenant, seq)

    announce = ingest  # as a feed sink (feed.Sink): this process's own records arrive like the bus's

    def notice(self, reseller_id: str, seq: int) -> None:
        tenant = self.tenants.get(reseller_id)
        if tenant is not None:
            self._known(tenant, seq)

    def access_changed(self, reseller_id: str, user_id: str | None) -> None:
        """A user's (or, with None, every user's of the tenant) access changed: their sockets here
        re-read it before their next frame."""
        tenant = self.tenants.get(reseller_id)
        if tenant is None:
            return
        for sub in list(tenant.subs):
            if user_id is None or sub.actor.id == user_id:
                sub.recheck()

    def resync(self, reseller_id: str) -> None:
        """A change of the tenant was stored and its feed record was not: every socket of the
        tenant here tells its client to refetch what it shows."""
        tenant = self.tenants.get(reseller_id)
        if tenant is None:
            return
        for sub in list(tenant.subs):
            sub.resync()

    def recheck_all(self) -> None:
        """After the bus was down, access changes announced meanwhile were lost with their notices:
        every socket here re-reads its user now rather than at its next periodic re-check."""
        for tenant in self.tenants.values():
            for sub in list(tenant.subs):
                sub.recheck()

    def poke_all(self) -> None:
        """After the bus was down, every tenant checks its tail now rather than at its next poll:
        what was announced while it was away is known to no one here."""
        for tenant in self.tenants.values():
            tenant.read_tail = True
            tenant.wake.set()

    def _known(self, tenant: TenantFeed, seq: int) -> None:
        if seq > tenant.known:
            tenant.known = seq
        tenant.wake.set()

    # -- sockets -------------------------------------------------------------------------------

    async def attach(self, actor: Actor) -> tuple[Subscriber, int]:
        """Registers a socket. Returns it and the tenant seq it starts after: everything later
        reaches its queue; everything up to it is the caller's to replay."""
        assert actor.reseller_id
        tenant = self.tenants.get(actor.reseller_id)
        if tenant is None:
            tenant = TenantFeed(actor.reseller_id)
            self.tenants[actor.reseller_id] = tenant
            tenant.ready = asyncio.ensure_future(self._start(tenant))
        assert tenant.ready is not None
        if tenant.linger is not None:
            tenant.linger.cancel()
            tenant.linger = None
        tenant.pending += 1
        try:
            await asyncio.shield(tenant.ready)
        except BaseException:
            # A failed start (a database hiccup on the first read) must not stay cached: every
            # later socket of the tenant would get the same error until the process restarts.
            # Forget it, so the next attach starts the feed afresh.
            failed = tenant.ready.done() and (tenant.ready.cancelled() or tenant.ready.exception() is not None)
            if failed and self.tenants.get(tenant.reseller_id) is tenant:
                del self.tenants[tenant.reseller_id]
            elif tenant.pending == 1:
                self._linger(tenant)  # this socket gave up waiting and no other is here
            raise
        finally:
            tenant.pending -= 1
        sub = Subscriber(actor, Inbox(self.queue_size), cursor=tenant.delivered)
        tenant.subs.add(sub)
        metrics.CONNECTIONS.inc()
        return sub, tenant.delivered

    def detach(self, sub: Subscriber) -> None:
        assert sub.actor.reseller_id
        tenant = self.tenants.get(sub.actor.reseller_id)
        if tenant is None or sub not in tenant.subs:
            return
        tenant.subs.discard(sub)
        sub.detached.set()
        metrics.CONNECTIONS.dec()
        if tenant.pending == 0:
            self._linger(tenant)

    def _linger(self, tenant: TenantFeed) -> None:
        if not tenant.subs and tenant.linger is None:
            tenant.linger = asyncio.get_running_loop().call_later(LINGER_SECONDS, self._drop_if_idle, tenant)

    def _drop_if_idle(self, tenant: TenantFeed) -> None:
        tenant.linger = None
        if tenant.subs or tenant.pending or self.tenants.get(tenant.reseller_id) is not tenant:
            return
        del self.tenants[tenant.reseller_id]
        tenant.cancel()

    async def replay(self, reseller_id: str, first: int, last: int) -> AsyncIterator[Entry]:
        """Records first..last in order, from memory when still held, else by `_id` lookups —
        one per record however many sockets replay it at once, and kept for the next ones."""
        tenant = self.tenants.get(reseller_id)
        seq = first
        while seq <= last:
            batch = list(range(seq, min(last, seq + CATCH_UP_BATCH - 1) + 1))
            held = {s: tenant.recent[s] for s in batch if tenant is not None and s in tenant.recent}
            missing = [s for s in batch if s not in held]
            found = await asyncio.gather(*(self._fetch(reseller_id, tenant, s) for s in missing))
            held.update(zip(missing, found, strict=True))
            for s in batch:
                yield held[s]
            seq = batch[-1] + 1

    async def _fetch(self, reseller_id: str, tenant: TenantFeed | None, seq: int) -> Entry:
        if tenant is None:
            return await self._read_entry(reseller_id, seq)
        future = tenant.fetching.get(seq)
        if future is None:
            future = tenant.fetching[seq] = asyncio.ensure_future(self._read_entry(reseller_id, seq))

            def settle(done: asyncio.Future[Entry]) -> None:
                tenant.fetching.pop(seq, None)
                if done.cancelled() or done.exception() is not None:
                    return
                # Kept like a delivered record (seq <= delivered, pruned RECENT_PER_TENANT seqs
                # later by the pump), unless older than what the pump will ever prune.
                if tenant.delivered - RECENT_PER_TENANT < seq <= tenant.delivered:
                    tenant.recent.setdefault(seq, done.result())

            future.add_done_callback(settle)
        # Shielded: one replaying socket going away must not cancel the read the others await.
        return await asyncio.shield(future)

    async def _read_entry(self, reseller_id: str, seq: int) -> Entry:
        record = await records.get(self.db, reseller_id, seq)
        if record is None:
            raise RuntimeError(f"feed record {reseller_id}:{seq} missing below the tail")
        return entry_of(record)

    async def close_sockets(self, code: int, *, wait_seconds: float = 2.0) -> None:
        """Tells every open socket to close with `code` and waits (bounded) until they did."""
        subs = [sub for tenant in self.tenants.values() for sub in tenant.subs]
        for sub in subs:
            sub.stop(code)
        if subs:
            waits = [asyncio.ensure_future(sub.detached.wait()) for sub in subs]
            _, pending = await asyncio.wait(waits, timeout=wait_seconds)
            for task in pending:
                task.cancel()

    async def close(self) -> None:
        self.closing.set()
        for tenant in list(self.tenants.values()):
            tenant.cancel()
        self.tenants.clear()

    # -- the per-tenant pump ------------------------------------------------------------------

    async def _start(self, tenant: TenantFeed) -> None:
        head = await records.latest(self.db, tenant.reseller_id)
        tenant.delivered = head
        tenant.known = max(tenant.known, head)
        for seq in [s for s in tenant.recent if s <= head]:
            del tenant.recent[seq]
        tenant.pump = asyncio.create_task(self._pump(tenant), name=f"realtime-pump-{tenant.reseller_id}")

    async def _pump(self, tenant: TenantFeed) -> None:
        while True:
            try:
                poll = self.poll_seconds * QUIET_POLL_FACTOR if self.bus_connected else self.poll_seconds
                try:
                    await asyncio.wait_for(tenant.wake.wait(), poll)
                except TimeoutError:
                    tenant.read_tail = True
                if tenant.read_tail:
                    # Safety net for lost notices: is anything stored past what we delivered?
                    tail = await records.latest(self.db, tenant.reseller_id, start=tenant.delivered)
                    tenant.read_tail = False  # not before: a failed read is tried again at once
                    if tail > tenant.known:
                        metrics.POLL_RECOVERED.inc(tail - tenant.known)
                        tenant.known = tail
                tenant.wake.clear()
                await self._drain(tenant)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database hiccuped: keep the pump alive, retry soon
                metrics.ERRORS.labels("pump").inc()
                log.warning("realtime pump error", tenant=tenant.reseller_id, error=str(exc))
                await asyncio.sleep(min(self.poll_seconds, 1.0))
                tenant.wake.set()

    async def _drain(self, tenant: TenantFeed) -> None:
        misses = 0
        while tenant.delivered < tenant.known:
            seq = tenant.delivered + 1
            entry = tenant.recent.pop(seq, None) or await self._await_notice(tenant, seq)
            if entry is None:
                record = await records.get(self.db, tenant.reseller_id, seq)
                if record is None:
                    # Announced but not readable yet (a notice can outrun a lagging read): wait.
                    misses += 1
                    if misses > MISSING_RETRIES:
                        tenant.known = tenant.delivered  # the poll will find it again
                        return
                    await asyncio.sleep(0.01)
                    continue
                metrics.GAP_READS.inc()
                entry = entry_of(record)
            misses = 0
            self._dispatch(tenant, entry)
            tenant.delivered = seq
            # Keep the last few in memory for replays of short reconnect gaps.
            tenant.recent[seq] = entry
            tenant.recent.pop(seq - RECENT_PER_TENANT, None)

    async def _await_notice(self, tenant: TenantFeed, seq: int) -> Entry | None:
        """Concurrent writers' notices often arrive out of order (n+1 before n): n is then usually
        a few milliseconds away on the bus, and cheaper to wait for than to read back."""
        if not self.bus_connected or not any(s > seq for s in tenant.recent):
            return None  # no later notice in hand: nothing suggests this one is in flight
        loop = asyncio.get_running_loop()
        deadline = loop.time() + NOTICE_GRACE_SECONDS
        while (left := deadline - loop.time()) > 0:
            tenant.wake.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(tenant.wake.wait(), left)
            entry = tenant.recent.pop(seq, None)
            if entry is not None:
                return entry
        tenant.wake.set()  # whatever we cleared is re-examined by the pump
        return None

    def _dispatch(self, tenant: TenantFeed, entry: Entry) -> None:
        metrics.DISPATCHED.inc()
        for sub in list(tenant.subs):
            if not sub.offer(entry):
                metrics.SLOW_CONSUMERS.inc()
                self.detach(sub)


async def cancel_quietly(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError, Exception):
        await task
