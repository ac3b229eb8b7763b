"""The outbound worker: sends queued replies, with retries and exponential backoff.

Safe with any number of workers in any number of processes: each attempt is claimed in
`outbox_attempts` (backend/core/attempts.py). Crash-safe: the queue entry is written before the
message, and the worker walks the queue from its cursor, so a reply stored before a crash is sent
after the restart. An attempt whose process died mid-call is retried once its lease
expires, unless the provider's fromMe echo of it was held meanwhile (the provider took it: the
echo's id is recorded as the answer, `service.echo_of_unanswered`). Retrying is the one case that
can deliver twice (a send taken but never echoed), as Evolution offers no idempotency key.
Files (media replies) go the same way: their bytes are read from the media store at each attempt.

Order per chat: the client reads the replies in the order the agent wrote them. Only the oldest
unfinished reply of a chat (connection + client number, `outbox_chats`) is ever attempted: a
reply waits while the one before it in its chat is pending — queued, in flight, or waiting out
a backoff — in this worker or any other, since the rule is read from the stored message, not
from a worker's memory. Different chats go concurrently. A reply that fails for good does not
hold its chat: it shows as failed (the agent sees it and can write it again), and the replies
after it go on. A chat position whose message was never stored (the request died) is passed
once older than the lease, like its orphan queue entry.

Pacing: sends to one connection take turns through a leaky bucket (OUTBOUND_RATE_PER_CONNECTION
after a burst of OUTBOUND_BURST_PER_CONNECTION). A reply whose connection has no turn free is left
for a later pass, like one waiting for the reply before it: nothing waits while holding one of
the worker's send slots (a busy number would hold up every other tenant's replies) or an
attempt's lease. The bucket is this worker's: N processes sending may reach N times the rate.

Documents that do not read (damaged by hand, or written by a newer version during a rolling
deploy, which its own processes read): a reply whose message, attempts or earlier chat position
does not read is tried again at each pass for UNREADABLE_GIVE_UP_SECONDS after this worker first
met it (core/attempts.py, `QueueWalk.overdue`), then given up so that it does not hold its chat,
and every later reply to that client, for good (`_give_up`): if still pending, it ends sent when
an attempt was answered sent (the client has it), failed otherwise, and never while an attempt is
in flight. `iaze_given_up_total{worker="outbound"}` counts them.
"""

import asyncio
import contextlib
import functools
import time
from datetime import datetime

import httpx
from aiolimiter import AsyncLimiter
from pydantic import ValidationError

from backend.clients.phones import whatsapp_addresses
from backend.connections import service as connections
from backend.connections.providers import registry
from backend.connections.providers.base import OutboundMedia, ProviderError, Quote, WhatsAppProvider
from backend.core import attempts, metrics
from backend.core.attempts import Verdict
from backend.core.background import BackgroundLoop
from backend.core.clock import as_utc, utcnow
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.errors import NotFound
from backend.core.logging import get_logger
from backend.core.runtime import runtime_of
from backend.core.tuning import SESSION_STATE_FRESH_SECONDS
from backend.media import service as media
from backend.messages import public as messages
from backend.messages.models import Message, MessageMedia
from backend.outbound import repository, service
from backend.outbound.models import PassedEntry, QueueEntry, SendAttempt
from backend.tickets import service as tickets
from backend.webhooks import service as webhooks

log = get_logger("outbound")


def policy_of(settings: Settings) -> attempts.Policy:
    return attempts.Policy(
        max_attempts=settings.OUTBOUND_MAX_ATTEMPTS,
        lease_seconds=settings.OUTBOUND_LEASE_SECONDS,
        backoff_base_seconds=settings.OUTBOUND_BACKOFF_BASE_SECONDS,
        backoff_max_seconds=settings.OUTBOUND_BACKOFF_MAX_SECONDS,
        poll_seconds=settings.OUTBOUND_POLL_SECONDS,
        concurrency=settings.OUTBOUND_CONCURRENCY,
        scan_limit=settings.OUTBOUND_SCAN_LIMIT,
        unreadable_give_up_seconds=settings.UNREADABLE_GIVE_UP_SECONDS,
        errors=ProviderError,
    )


class OutboundWorker:
    def __init__(self, db: Database, settings: Settings, http: httpx.AsyncClient) -> None:
        self.db = db
        self.settings = settings
        self.http = http
        self.policy = policy_of(settings)
        self.walk = attempts.QueueWalk(
            repository.queue,
            QueueEntry,
            self.policy,
            what="outbound",
            give_up=self._give_up,
        )
        # A passed reply's own entry is finished: its look in the passed log gives it up too.
        self.passed_walk = attempts.QueueWalk(
            repository.passed_log, PassedEntry, self.policy, what="outbound passed", give_up=self._give_up
        )
        self._next_recheck = 0.0  # time.monotonic() of the next walk of the passed log
        self.paces: dict[str, AsyncLimiter] = {}  # per connection id (module docstring, Pacing)
        self.sessions: dict[str, float] = {}  # connection id -> when its session was last seen open

    async def _turn(self, connection_id: str) -> bool:
        """Takes a send of the connection's pace, or says none is free now (module docstring)."""
        rate, burst = self.settings.OUTBOUND_RATE_PER_CONNECTION, self.settings.OUTBOUND_BURST_PER_CONNECTION
        if rate <= 0:
            return True
        pace = self.paces.get(connection_id)
        if pace is None:
            pace = self.paces[connection_id] = AsyncLimiter(burst, burst / rate)
        if not pace.has_capacity():
            return False
        await pace.acquire()  # free: returns at once
        return True

    async def _session_open(self, conn: connections.Connection, provider: WhatsAppProvider) -> None:
        """Asks the provider whether the connection's session is open (at most once per
        SESSION_STATE_FRESH_SECONDS per connection) before a send: the store can still say open
        while the close that the provider posted is being recorded (its write failed, retried
        with backoff), and a send handed to a closed session is answered with an id and never
        delivered — shown as sent. A session not open is recorded as the provider says
        (connections.record_status: the store and the screens follow) and the send is retried
        like one on a disconnected connection. A provider that cannot tell (down, garbled, slow)
        leaves the send to answer for itself, as it did before this question was asked."""
        now = time.monotonic()
        if now - self.sessions.get(conn.id, -SESSION_STATE_FRESH_SECONDS) < SESSION_STATE_FRESH_SECONDS:
            return
        try:
            state = await provider.connection_state(instance_name=conn.instance_name)
        except ProviderError:
            return
        if state == "open":
            self.sessions[conn.id] = now
            return
        self.sessions.pop(conn.id, None)
        current = await connections.get_internal(self.db, conn.id) or conn
        await connections.record_status(self.db, current, status=state, qr_code=current.qr_code)
        raise ProviderError("connection not connected", retryable=True)

    async def run_once(self, poll: bool = True) -> int:
        """One pass over (part of) the open queue (core/attempts.py `QueueWalk`); chats go
        concurrently. A poll also walks the passed log once a lease (`_recheck_passed`)."""
        looked = await self.walk.run_once(self.db, self._visit, poll=poll)
        if poll and time.monotonic() >= self._next_recheck:
            self._next_recheck = time.monotonic() + self.policy.lease_seconds
            await self.passed_walk.run_once(self.db, self._recheck_passed)
        return looked

    async def _recheck_passed(self, entries: list[PassedEntry]) -> list[int]:
        done = await asyncio.gather(*(self.passed_walk.guarded(self._recheck_one, e) for e in entries))
        return [e.seq for e, finished in zip(entries, done, strict=True) if finished]

    async def _recheck_one(self, entry: PassedEntry) -> bool:
        """A message passed as never stored, looked for again: one stored after all, still pending
        and given up on is queued again. This is what sends it when its writer died between its
        insert and its own look for the mark (`service.queue_again_if_passed`), and no repeat of
        the request or later reply of its chat came to do it. Not stored, it is looked for until
        OUTBOUND_LATE_STORE_SECONDS after the pass; stored, until it is no longer pending or is
        queued again. True when it needs no more looks."""
        message = await messages.get_internal(self.db, entry.message_id)
        if message is None:
            late = (utcnow() - as_utc(entry.passed_at)).total_seconds()
            if late <= self.settings.OUTBOUND_LATE_STORE_SECONDS:
                return False
            # Its request failed before its insert (its sender was told) or the insert was lost:
            # the ticket is what an operator asking "where did that reply go" looks up.
            log.info(
                "passed message never stored; no longer looked for",
                message_id=entry.message_id,
                ticket_id=entry.ticket_id,
            )
            return True
        if message.status != "pending":
            return True
        if not await service.gave_up(self.db, message.id):
            # Its entry is live (the pass's last look found it), or the pass has not bound its
            # give-up yet: looked at again until it is sent or failed, or given up.
            return False
        ticket = await tickets.load(self.db, message.ticket_id)
        if ticket is None:
            log.error("passed message's ticket not found", message_id=message.id, ticket_id=message.ticket_id)
            return True
        await service.queue_again_if_passed(self.db, message, ticket)
        return True

    async def _visit(self, entries: list[QueueEntry]) -> list[int]:
        chats: dict[str, list[QueueEntry]] = {}
        for e in entries:  # entries queued before chats were recorded are a chat of their own
            chats.setdefault(e.chat or f"seq:{e.seq}", []).append(e)
        for chat in chats.values():
            chat.sort(key=lambda e: e.chat_seq)
        return [seq for done in await asyncio.gather(*map(self._chat_in_order, chats.values())) for seq in done]

    async def run(self, stop: asyncio.Event) -> None:
        await self.walk.run(stop, self.run_once, runtime_of(self.db).outbound_wakeups)

    async def _chat_in_order(self, entries: list[QueueEntry]) -> list[int]:
        """One chat's entries of this pass, one after the other; stops at the first that is not
        finished, as everything after it in the chat waits for it anyway."""
        finished: list[int] = []
        for entry in entries:
            if not await self.walk.guarded(self._handle, entry):
                break
            finished.append(entry.seq)
        return finished

    async def _waits_for_earlier(self, entry: QueueEntry, now: datetime) -> bool:
        """Whether an earlier reply of the entry's chat is still pending. Walks back past chat
        positions whose message was never stored (orphans older than the lease) and past the
        reply's own earlier positions; the first other stored one decides: every reply was
        attempted only after the one before it finished, so one finished reply means all before
        it are."""
        for j in range(entry.chat_seq - 1, 0, -1):
            try:
                earlier = await repository.get_chat_entry(self.db, str(entry.chat), j)
            except ValidationError as exc:  # which reply it holds is unknown: waited for, then passed
                if self.walk.overdue(repository.chat_entry_id(str(entry.chat), j), exc):
                    continue
                return True
            if earlier is None:  # positions are 1..k without holes; nothing to wait for here
                continue
            if earlier.message_id == entry.message_id:
                # This reply's own earlier position: a request whose answer was lost after taking
                # it, repeated with the same key (messages.keyed_reply_id). It waits for no one.
                continue
            try:
                message = await messages.get_internal(self.db, earlier.message_id)
            except ValidationError as exc:  # its own entry is given up once overdue (`QueueWalk`)
                if self.walk.overdue(earlier.message_id, exc):
                    continue
                return True
            if message is None:
                if self.policy.outlived(earlier.enqueued_at, now):
                    continue
                return True  # its request may still be storing it
            pending = message.status == "pending"
            if (
                pending
                and not earlier.again
                and self.policy.outlived(message.created_at, now)
                and await service.gave_up(self.db, message.id)
            ):
                # Stored after this, its first entry, was passed as never stored: it goes with a
                # new entry, behind this reply (queued now if its writer did not live to), rather
                # than holding the chat for good. At that new place (`again`) it is waited for.
                ticket = await tickets.load(self.db, message.ticket_id)
                if ticket is not None and await service.queue_again_if_passed(self.db, message, ticket):
                    continue
            return pending
        return False

    async def _give_up(self, message_id: object) -> bool:
        """A reply that a stored document it needs does not read (module docstring): ended, if
        it is still pending, and its screens told if it reads. Ended as sent when an attempt was
        answered sent (its settling met the document): it was delivered, and shown failed it
        would be written again. Not yet (False) while an attempt is in flight: it may be taken."""
        if not isinstance(message_id, str):  # nothing to end: the entry itself names no message
            log.error("outbound entry given up without a message to end", message_id=repr(message_id))
            return True
        sent_as, now = None, utcnow()
        for tried in await repository.attempts.stored_internal(self.db, message_id):
            lease = tried.get("lease_until")
            if tried.get("result") is None and isinstance(lease, datetime) and as_utc(lease) > now:
                return False
            if tried.get("result") == "sent" and isinstance(tried.get("provider_message_id"), str):
                sent_as = tried["provider_message_id"]
        reason = "a stored document this reply needs does not read"
        if await messages.give_up_internal(self.db, message_id, reason=reason, sent_as=sent_as):
            log.error("outbound reply given up", message_id=message_id, error=reason, sent_as=sent_as)
            metrics.GIVEN_UP.labels(worker="outbound").inc()
        # Announced whether or not this call moved it: a give-up whose announcement failed is
        # tried again at the next pass, which finds the status moved already.
        with contextlib.suppress(ValidationError):
            if (ended := await messages.get_internal(self.db, message_id)) is not None and ended.status != "pending":
                await service.announce_status(self.db, ended)
        return True

    async def _handle(self, entry: QueueEntry) -> bool:
        """Moves one entry on. Returns True when it needs nothing more (sent, failed, orphan)."""
        now = utcnow()
        message_id = entry.message_id
        message = await messages.get_internal(self.db, message_id)
        if message is None:
            # The request died between queueing and storing (the API never acknowledged it), or
            # its insert is stalled: past a lease, passed — a late insert is queued again.
            return self.policy.outlived(entry.enqueued_at, now) and await service.pass_unstored(
                self.db, message_id=message_id, ticket_id=entry.ticket_id
            )
        if message.status != "pending":
            # Settled before the status moved, unless something else moved it (a receipt for an
            # id the processor bound while this worker died): settle now, or a held phone
            # message would never be stored.
            await self._settle_echoes(message)
            # The move may be stored with its answer lost (a store error after it, or this worker
            # died there): what follows it is done again, each step safe to repeat. The status as
            # stored is announced first, so that a receipt applied after it is announced later.
            await service.announce_status(self.db, message)
            if message.provider_message_id is not None:
                await service.apply_parked(
                    self.db,
                    connection_id=str(entry.connection_id),
                    provider_message_id=message.provider_message_id,
                    message_id=message.id,
                )
            return True
        if await self._waits_for_earlier(entry, now):
            return False
        if not await self._turn(str(entry.connection_id)):
            return False  # the connection's pace is spent: a later pass (or wake) takes it

        async def echoed(attempt: SendAttempt) -> Verdict | None:
            """Its worker died after the provider took it, if the echo was held meanwhile: sent, once."""
            echo = await service.echo_of_unanswered(self.db, attempt, type_=message.type or "text")
            return None if echo is None else {"result": "sent", "provider_message_id": echo, "answered_by": "echo"}

        async def sent(attempt: SendAttempt) -> bool:  # a success is final, even if its worker died
            await self._sent(message, entry, str(attempt.provider_message_id))
            return True

        return await repository.attempts.step(
            self.db,
            message_id,
            policy=self.policy,
            worker=self.walk.worker,
            act=functools.partial(self._send, message, entry),
            settle=sent,
            fail=functools.partial(self._fail, message),
            answered=echoed,
        )

    async def _send(self, message: Message, entry: QueueEntry, attempt_id: str) -> Verdict:
        conn = await connections.get_internal(self.db, str(entry.connection_id))
        if conn is None or not conn.active:
            raise ProviderError("connection missing or inactive", retryable=False)
        if connections.blocked(conn) is not None:
            # Evolution answers a send on a closed session with an id (PENDING) and never delivers
            # it: handed over now it would show as sent without having left. Retried with the
            # usual backoff instead — it goes out if the phone reconnects meanwhile, and ends
            # failed with this reason after the last attempt.
            raise ProviderError("connection not connected", retryable=True)
        ticket = await tickets.get_internal(self.db, message.ticket_id)
        if ticket is None or not ticket.client_address:
            raise ProviderError("ticket has no client phone", retryable=False)
        phone = ticket.client_address  # the number, else the LID WhatsApp named the client by
        provider = registry.build(conn.provider, self.settings, self.http)
        await self._session_open(conn, provider)
        # Before the call: the provider may post the fromMe echo of this send before answering,
        # naming the chat by its number or by its LID alone.
        for address in whatsapp_addresses(ticket.client_phone, ticket.client_lid):
            await repository.mark_sending(
                self.db,
                connection_id=conn.id,
                phone=address,
                text=message.body,
                message_id=message.id,
                attempt_id=attempt_id,
            )
        if message.annotates:  # an agent's reaction, deletion or edit (messages.react, .revoke, .edit)
            target = await messages.get_internal(self.db, message.annotates)
            if target is None or not target.provider_message_id:
                raise ProviderError("the message it changes is not WhatsApp's", retryable=False)
            pid, from_me = target.provider_message_id, target.direction == "out"
            if message.type == "edit":
                sent = await provider.edit_text(
                    instance_name=conn.instance_name, to=phone, provider_message_id=pid, text=message.body
                )
            elif message.type == "revoke":
                sent = await provider.delete_for_everyone(
                    instance_name=conn.instance_name, to=phone, provider_message_id=pid, from_me=from_me
                )
            else:
                sent = await provider.send_reaction(
                    instance_name=conn.instance_name,
                    to=phone,
                    provider_message_id=pid,
                    from_me=from_me,
                    emoji=message.body,
                )
            return {"result": "sent", "provider_message_id": sent.provider_message_id}
        quoted = await self._quote(message)
        stored = message.media
        if stored is not None:
            # Read at each attempt, never kept in the queue: the store holds the one copy.
            try:
                data = await media.read_bytes(self.db, reseller_id=message.reseller_id, sha256=str(stored.sha256))
            except NotFound as exc:  # never stored without its bytes; if it were, say so on the message
                raise ProviderError("the message's file is not in the media store", retryable=False) from exc
            kind = "voice" if stored.voice else message.type or "document"
            sent = await provider.send_media(
                instance_name=conn.instance_name,
                to=str(phone),
                media=OutboundMedia(kind=kind, mime=stored.mime, name=stored.name, data=data),
                caption=message.body,
                idempotency_key=message.id,
                quoted=quoted,
            )
        else:
            sent = await provider.send_text(
                instance_name=conn.instance_name,
                to=str(phone),
                text=message.body,
                idempotency_key=message.id,
                quoted=quoted,
            )
        return {"result": "sent", "provider_message_id": sent.provider_message_id}

    async def _quote(self, message: Message) -> Quote | None:
        """The provider's id of the message a reply quotes, once it has one (a client's message
        always; a reply once sent). Without one the reply goes out unquoted rather than not at all."""
        quoted = message.quoted
        if quoted is None or not quoted.message_id:
            return None
        try:
            target = await messages.get_internal(self.db, quoted.message_id)
        except ValidationError as exc:  # another message's slip must not hold this reply
            log.error("quoted message unreadable; sent unquoted", message_id=quoted.message_id, error=str(exc))
            return None
        if target is None or not target.provider_message_id:
            return None
        media = target.media or MessageMedia()
        return Quote(
            provider_message_id=target.provider_message_id,
            body=quoted.body,
            type=quoted.type or "text",
            from_me=target.sender_type != "client",
            mime=media.mime or media.mimetype or "",
            name=media.name or media.fileName or "",
            voice=media.voice,
        )

    async def _settle_echoes(self, message: Message) -> None:
        """fromMe upserts held while the message's attempts were unanswered (outbound/service.py,
        `from_me_verdict`): the one with the id an attempt was answered with (recorded on the
        attempt before this runs) was the echo; every other one was typed on the phone and
        becomes a message of its own now."""
        tried = await repository.attempts.list(self.db, message.id)
        answered = next((a.provider_message_id for a in tried if a.result == "sent"), None)
        for attempt in tried:
            for hold in await service.settle_held_echoes(self.db, attempt, answered=answered):
                await webhooks.release_held_echo(
                    self.db,
                    connection_id=hold.connection_id,
                    provider_message_id=hold.provider_message_id,
                    raw_id=hold.raw_id,
                    own_message_id=hold.own_message_id,
                )
                await repository.resolve_hold(self.db, hold.id, "released")

    async def _sent(self, message: Message, entry: QueueEntry, provider_message_id: str) -> None:
        await service.bind_provider_id(
            self.db,
            connection_id=str(entry.connection_id),
            provider_message_id=provider_message_id,
            message_id=message.id,
        )
        # Before the status moves: a message no longer pending is never looked at again.
        await self._settle_echoes(message)
        await service.move(self.db, message.id, to="sent", extra={"provider_message_id": provider_message_id})
        # Receipts the provider posted before we knew this id (it often answers the send after them).
        await service.apply_parked(
            self.db,
            connection_id=str(entry.connection_id),
            provider_message_id=provider_message_id,
            message_id=message.id,
        )

    async def _fail(self, message: Message, reason: str) -> None:
        await self._settle_echoes(message)
        await service.move(self.db, message.id, to="failed", extra={"failure_reason": reason})


async def run_until(db: Database, settings: Settings, stop: asyncio.Event) -> None:
    async with registry.http_client(settings) as http:
        await OutboundWorker(db, settings, http).run(stop)


def background(db: Database, settings: Settings, *, enabled: bool = True) -> BackgroundLoop:
    """The worker inside a backend process's lifespan (OUTBOUND_WORKER_ENABLED)."""
    return BackgroundLoop(
        "outbound-worker", run_until, db, settings, enabled=enabled and settings.OUTBOUND_WORKER_ENABLED
    )
