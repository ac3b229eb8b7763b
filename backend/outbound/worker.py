"""The outbound worker: sends queued replies, with retries and exponential backoff.

Safe with any number of workers in any number of processes: each attempt is claimed by
inserting `outbox_attempts` "<message_id>:<n>" (unique `_id`), never by a filtered
findAndModify (not atomic on FerretDB). Crash-safe: the queue entry is written before the
message, and the worker walks the queue from its cursor, so a reply stored before a crash is
sent after the restart. An attempt whose process died mid-call is retried once its lease
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
"""

import asyncio
import contextlib
import os
import socket
from datetime import datetime, timedelta
from typing import Any

import httpx

from backend.connections import service as connections
from backend.connections.providers import registry
from backend.connections.providers.base import OutboundMedia, ProviderError, Quote
from backend.core.background import BackgroundLoop
from backend.core.clock import as_utc, utcnow
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.errors import NotFound
from backend.core.ids import new_id
from backend.core.logging import get_logger
from backend.media import service as media
from backend.messages import public as messages
from backend.outbound import repository, service
from backend.tickets import service as tickets
from backend.webhooks import service as webhooks

log = get_logger("outbound")


def backoff_seconds(settings: Settings, attempt: int) -> float:
    """Wait after failed attempt n before attempt n+1."""
    return float(
        min(settings.OUTBOUND_BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), settings.OUTBOUND_BACKOFF_MAX_SECONDS)
    )


class OutboundWorker:
    def __init__(self, db: Database, settings: Settings, http: httpx.AsyncClient) -> None:
        self.db = db
        self.settings = settings
        self.http = http
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"
        self._sem = asyncio.Semaphore(settings.OUTBOUND_CONCURRENCY)
        self._pos = 0
        self._finished: set[int] = set()

    async def run_once(self) -> int:
        """One pass over (part of) the open queue. Returns how many entries it looked at.

        Entries from the cursor on are visited in pages that wrap around, so an entry waiting
        out its backoff never hides the ones behind it. `_finished` remembers entries that need
        nothing more; finished never turns back, so it is a speed hint, not a rule.
        """
        cursor = await repository.get_cursor(self.db)
        last = await repository.head(self.db)
        self._finished = {s for s in self._finished if s > cursor}
        start = max(self._pos, cursor) + 1
        if start > last:
            start = cursor + 1
        seqs = [s for s in range(start, last + 1) if s not in self._finished][: self.settings.OUTBOUND_SCAN_LIMIT]
        entries = [e for s in seqs if (e := await repository.get_entry(self.db, s))]
        chats: dict[str, list[dict[str, Any]]] = {}
        for e in entries:  # entries queued before chats were recorded are a chat of their own
            chats.setdefault(str(e.get("chat") or f"seq:{e['seq']}"), []).append(e)
        for chat in chats.values():
            chat.sort(key=lambda e: int(e.get("chat_seq") or 0))
        for finished in await asyncio.gather(*(self._chat_in_order(chat) for chat in chats.values())):
            self._finished.update(finished)
        self._pos = seqs[-1] if seqs and seqs[-1] < last else cursor
        new_cursor = cursor
        while new_cursor + 1 in self._finished:
            new_cursor += 1
        if new_cursor > cursor:
            await repository.advance_cursor(self.db, new_cursor)
        return len(entries)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("outbound worker started", worker=self.worker_id)
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # the loop must survive a database hiccup
                log.error("outbound pass failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.OUTBOUND_POLL_SECONDS)
        log.info("outbound worker stopped", worker=self.worker_id)

    async def _chat_in_order(self, entries: list[dict[str, Any]]) -> list[int]:
        """One chat's entries of this pass, one after the other; stops at the first that is not
        finished, as everything after it in the chat waits for it anyway."""
        finished: list[int] = []
        for entry in entries:
            if not await self._guarded(entry):
                break
            finished.append(int(entry["seq"]))
        return finished

    async def _waits_for_earlier(self, entry: dict[str, Any], now: datetime) -> bool:
        """Whether an earlier reply of the entry's chat is still pending. Walks back past chat
        positions whose message was never stored (orphans older than the lease); the first stored
        one decides: every reply was attempted only after the one before it finished, so one
        finished reply means all before it are."""
        chat, k = entry.get("chat"), int(entry.get("chat_seq") or 0)
        for j in range(k - 1, 0, -1):
            earlier = await repository.get_chat_entry(self.db, str(chat), j)
            if earlier is None:  # positions are 1..k without holes; nothing to wait for here
                continue
            message = await messages.get_internal(self.db, str(earlier["message_id"]))
            if message is None:
                age = (now - as_utc(earlier["enqueued_at"])).total_seconds()
                if age > self.settings.OUTBOUND_LEASE_SECONDS:
                    continue
                return True  # its request may still be storing it
            return bool(message["status"] == "pending")
        return False

    async def _guarded(self, entry: dict[str, Any]) -> bool:
        async with self._sem:
            try:
                return await self._handle(entry)
            except Exception as exc:
                log.error("outbound entry failed", seq=entry.get("seq"), error=str(exc))
                return False

    async def _handle(self, entry: dict[str, Any]) -> bool:
        """Moves one entry on. Returns True when it needs nothing more (sent, failed, orphan)."""
        now = utcnow()
        message_id = entry["message_id"]
        message = await messages.get_internal(self.db, message_id)
        if message is None:
            # The request died between queueing and storing: the API never acknowledged it.
            age = (now - as_utc(entry["enqueued_at"])).total_seconds()
            return age > self.settings.OUTBOUND_LEASE_SECONDS
        if message["status"] != "pending":
            # Settled before the status moved, unless something else moved it (a receipt for an
            # id the processor bound while this worker died): settle now, or a held phone
            # message would never be stored.
            await self._settle_echoes(message)
            return True
        if await self._waits_for_earlier(entry, now):
            return False
        tried = await repository.attempts(self.db, message_id)
        max_attempts = self.settings.OUTBOUND_MAX_ATTEMPTS
        if tried:
            last = tried[-1]
            if last.get("result") is None:
                if as_utc(last["lease_until"]) > now:
                    return False  # another worker is on it
                echoed = await service.echo_of_unanswered(self.db, last, type_=str(message.get("type") or "text"))
                if echoed is not None:  # its worker died after the provider took it: sent, once
                    await repository.finish_attempt(
                        self.db,
                        last["_id"],
                        {"result": "sent", "provider_message_id": echoed, "answered_by": "echo", "finished_at": now},
                    )
                    await self._sent(message, entry, echoed)
                    return True
                if last["attempt"] >= max_attempts:
                    await self._fail(message, f"attempt {last['attempt']} did not finish (worker died?)")
                    return True
            elif last["result"] == "sent":  # sent, but its worker died before recording it
                await self._sent(message, entry, last["provider_message_id"])
                return True
            elif not last.get("retryable") or last["attempt"] >= max_attempts:
                await self._fail(message, str(last.get("error")))
                return True
            elif as_utc(last["retry_at"]) > now:
                return False
        attempt = len(tried) + 1
        _id = repository.attempt_id(message_id, attempt)
        claim = {
            "_id": _id,
            "message_id": message_id,
            "attempt": attempt,
            "worker": self.worker_id,
            "claimed_at": now,
            "lease_until": now + timedelta(seconds=self.settings.OUTBOUND_LEASE_SECONDS),
            "result": None,
        }
        if not await repository.claim_attempt(self.db, claim):
            return False  # another worker claimed this attempt first
        try:
            provider_message_id = await self._send(message, entry, _id)
        except ProviderError as exc:
            retry_at = utcnow() + timedelta(seconds=backoff_seconds(self.settings, attempt))
            await repository.finish_attempt(
                self.db,
                _id,
                {
                    "result": "error",
                    "error": str(exc),
                    "retryable": exc.retryable,
                    "retry_at": retry_at,
                    "finished_at": utcnow(),
                },
            )
            log.warning("send failed", message_id=message_id, attempt=attempt, error=str(exc), retryable=exc.retryable)
            if not exc.retryable or attempt >= max_attempts:
                await self._fail(message, str(exc))
                return True
            return False
        await repository.finish_attempt(
            self.db, _id, {"result": "sent", "provider_message_id": provider_message_id, "finished_at": utcnow()}
        )
        await self._sent(message, entry, provider_message_id)
        return True

    async def _send(self, message: dict[str, Any], entry: dict[str, Any], attempt_id: str) -> str:
        conn = await connections.get_internal(self.db, str(entry.get("connection_id")))
        if conn is None or not conn.get("active"):
            raise ProviderError("connection missing or inactive", retryable=False)
        ticket = await tickets.get_internal(self.db, message["ticket_id"])
        phone = (ticket or {}).get("client_phone")
        if not phone:
            raise ProviderError("ticket has no client phone", retryable=False)
        provider = registry.build(conn["provider"], self.settings, self.http)
        # Before the call: the provider may post the fromMe echo of this send before answering.
        await repository.mark_sending(
            self.db,
            connection_id=conn["_id"],
            phone=str(phone),
            text=message["body"],
            message_id=message["_id"],
            attempt_id=attempt_id,
        )
        quoted = await self._quote(message)
        stored = message.get("media")
        if stored:
            # Read at each attempt, never kept in the queue: the store holds the one copy.
            try:
                data = await media.read_bytes(self.db, reseller_id=message["reseller_id"], sha256=stored["sha256"])
            except NotFound as exc:  # never stored without its bytes; if it were, say so on the message
                raise ProviderError("the message's file is not in the media store", retryable=False) from exc
            kind = "voice" if stored.get("voice") else str(message.get("type") or "document")
            sent = await provider.send_media(
                instance_name=conn["instance_name"],
                to=str(phone),
                media=OutboundMedia(kind=kind, mime=str(stored["mime"]), name=str(stored.get("name") or ""), data=data),
                caption=message["body"],
                idempotency_key=message["_id"],
                quoted=quoted,
            )
        else:
            sent = await provider.send_text(
                instance_name=conn["instance_name"],
                to=str(phone),
                text=message["body"],
                idempotency_key=message["_id"],
                quoted=quoted,
            )
        return sent.provider_message_id

    async def _quote(self, message: dict[str, Any]) -> Quote | None:
        """The provider's id of the message a reply quotes, once it has one (a client's message
        always; a reply once sent). Without one the reply goes out unquoted rather than not at all."""
        quoted = message.get("quoted")
        if not quoted or not quoted.get("message_id"):
            return None
        target = await messages.get_internal(self.db, str(quoted["message_id"]))
        if target is None or not target.get("provider_message_id"):
            return None
        return Quote(
            provider_message_id=str(target["provider_message_id"]),
            body=str(quoted.get("body") or ""),
            type=str(quoted.get("type") or "text"),
            from_me=target.get("sender_type") != "client",
        )

    async def _settle_echoes(self, message: dict[str, Any]) -> None:
        """fromMe upserts held while the message's attempts were unanswered (outbound/service.py,
        `from_me_verdict`): the one with the id an attempt was answered with (recorded on the
        attempt before this runs) was the echo; every other one was typed on the phone and
        becomes a message of its own now."""
        tried = await repository.attempts(self.db, message["_id"])
        answered = next((str(a["provider_message_id"]) for a in tried if a.get("result") == "sent"), None)
        for attempt in tried:
            for hold in await service.settle_held_echoes(self.db, attempt, answered=answered):
                await webhooks.release_held_echo(
                    self.db,
                    connection_id=str(hold["connection_id"]),
                    provider_message_id=str(hold["provider_message_id"]),
                    raw_id=str(hold["raw_id"]),
                )
                await service.mark_released(self.db, hold)

    async def _sent(self, message: dict[str, Any], entry: dict[str, Any], provider_message_id: str) -> None:
        await service.bind_provider_id(
            self.db,
            connection_id=str(entry["connection_id"]),
            provider_message_id=provider_message_id,
            message_id=message["_id"],
        )
        # Before the status moves: a message no longer pending is never looked at again.
        await self._settle_echoes(message)
        await service.move(self.db, message["_id"], to="sent", extra={"provider_message_id": provider_message_id})
        # Receipts the provider posted before we knew this id (it often answers the send after them).
        await service.apply_parked(
            self.db,
            connection_id=str(entry["connection_id"]),
            provider_message_id=provider_message_id,
            message_id=message["_id"],
        )

    async def _fail(self, message: dict[str, Any], reason: str) -> None:
        await self._settle_echoes(message)
        await service.move(self.db, message["_id"], to="failed", extra={"failure_reason": reason})


async def run_until(db: Database, settings: Settings, stop: asyncio.Event) -> None:
    async with registry.http_client(settings) as http:
        await OutboundWorker(db, settings, http).run(stop)


def background(db: Database, settings: Settings, *, enabled: bool = True) -> BackgroundLoop:
    """The worker inside a backend process's lifespan (OUTBOUND_WORKER_ENABLED)."""
    return BackgroundLoop(
        "outbound-worker", run_until, db, settings, enabled=enabled and settings.OUTBOUND_WORKER_ENABLED
    )
