"""The inbound media fetch: stores the bytes of received media messages, after the message.

A media message is stored at once with `media.status` "pending" and a fetch entry queued
(backend/webhooks/service.py); this loop, in every backend process (MEDIA_FETCH_ENABLED), walks
the queue from its cursor like the outbound worker walks its own: every read is by `_id`, and each
attempt is claimed by inserting `media_fetch_attempts` "<message_id>:<n>" (unique `_id`), so any
number of workers in any number of processes make each attempt once. The bytes come from the
stored webhook delivery when Evolution sent them inline, else from the provider; a provider
failure is retried with exponential backoff; a permanent one (or the last attempt) sets "failed"
with the reason, and the retry action (media.service.retry_fetch) queues a new round. The webhook
lane never waits for any of it.

Crash windows: an attempt whose process died is taken over once its lease ends. Bytes stored
before the message's status moved are found by the next attempt as the same content (one copy
per tenant per sha256), so a repeat costs a fetch, never a second copy.
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
from backend.connections.providers.base import FetchedMedia, ProviderError
from backend.connections.providers.evolution import decode_base64
from backend.core.background import BackgroundLoop
from backend.core.clock import as_utc, utcnow
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.ids import new_id
from backend.core.logging import get_logger
from backend.core.runtime import runtime_of
from backend.media import repository, service
from backend.messages import public as message_store
from backend.messages import service as messages
from backend.webhooks import service as webhooks

log = get_logger("media")
ERROR_MAX_CHARS = 500


def backoff_seconds(settings: Settings, attempt: int) -> float:
    """Wait after failed attempt n (of a round) before attempt n+1."""
    base, cap = settings.MEDIA_FETCH_BACKOFF_BASE_SECONDS, settings.MEDIA_FETCH_BACKOFF_MAX_SECONDS
    return float(min(base * 2 ** (attempt - 1), cap))


class MediaFetcher:
    def __init__(self, db: Database, settings: Settings, http: httpx.AsyncClient) -> None:
        self.db = db
        self.settings = settings
        self.http = http
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"
        self._sem = asyncio.Semaphore(settings.MEDIA_FETCH_CONCURRENCY)
        self._finished: set[int] = set()
        self._pos = 0

    async def run_once(self) -> int:
        """One pass over (part of) the open queue; returns how many entries it looked at. Pages
        wrap around from the cursor, so an entry waiting out its backoff never hides the rest."""
        cursor = await repository.fetches_cursor(self.db)
        last = await repository.fetches_head(self.db)
        self._finished = {s for s in self._finished if s > cursor}
        start = max(self._pos, cursor) + 1
        if start > last:
            start = cursor + 1
        seqs = [s for s in range(start, last + 1) if s not in self._finished][: self.settings.MEDIA_FETCH_SCAN_LIMIT]
        entries = [e for s in seqs if (e := await repository.get_fetch(self.db, s))]
        done = await asyncio.gather(*(self._guarded(e) for e in entries))
        self._finished.update(int(e["seq"]) for e, finished in zip(entries, done, strict=True) if finished)
        self._pos = seqs[-1] if seqs and seqs[-1] < last else cursor
        new_cursor = cursor
        while new_cursor + 1 in self._finished:
            new_cursor += 1
        if new_cursor > cursor:
            await repository.advance_fetches_cursor(self.db, new_cursor)
        return len(entries)

    async def run(self, stop: asyncio.Event) -> None:
        wakeup = asyncio.Event()
        runtime_of(self.db).media_fetch_wakeups.add(wakeup)
        log.info("media fetcher started", worker=self.worker_id)
        try:
            while not stop.is_set():
                wakeup.clear()
                try:
                    await self.run_once()
                except Exception as exc:  # the loop must survive a database hiccup
                    log.error("media fetch pass failed", error=str(exc))
                stopping = asyncio.ensure_future(stop.wait())
                woken = asyncio.ensure_future(wakeup.wait())
                await asyncio.wait(
                    {stopping, woken},
                    timeout=self.settings.MEDIA_FETCH_POLL_SECONDS,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for waiter in (stopping, woken):
                    waiter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiter
        finally:
            runtime_of(self.db).media_fetch_wakeups.discard(wakeup)
        log.info("media fetcher stopped", worker=self.worker_id)

    async def _guarded(self, entry: dict[str, Any]) -> bool:
        async with self._sem:
            try:
                return await self.handle(entry)
            except Exception as exc:
                log.error("media fetch entry failed", seq=entry.get("seq"), error=str(exc))
                return False

    def _expired(self, since: datetime, now: datetime) -> bool:
        return (now - as_utc(since)).total_seconds() > self.settings.MEDIA_FETCH_LEASE_SECONDS

    async def handle(self, entry: dict[str, Any]) -> bool:
        """Moves one entry on. Returns True when it needs nothing more."""
        now = utcnow()
        message_id = str(entry["message_id"])
        message = await message_store.get_internal(self.db, message_id)
        if message is None:  # queued by a delivery whose message is not stored (yet)
            return self._expired(entry["enqueued_at"], now)
        media = message.get("media") or {}
        round_ = int(media.get("round") or 0)
        if media.get("status") == "ready" or int(entry.get("round") or 0) < round_:
            return True  # done, or superseded by a retry's own entry
        if int(entry.get("round") or 0) > round_:
            # A retry queued this before moving the status: wait for it (or for its lease, if it died).
            return self._expired(entry["enqueued_at"], now)
        if media.get("status") != "pending":
            return True  # failed: only the retry action queues it again
        tried = await repository.fetch_attempts(self.db, message_id)
        mine = [a for a in tried if int(a.get("round") or 0) == round_]
        max_attempts = self.settings.MEDIA_FETCH_MAX_ATTEMPTS
        if mine:
            last = mine[-1]
            if last.get("result") is None:
                if as_utc(last["lease_until"]) > now:
                    return False  # another worker is on it
                if len(mine) >= max_attempts:
                    await self._fail(message_id, f"attempt {len(mine)} did not finish (worker died?)")
                    return True
            elif last["result"] == "stored":  # its worker died before moving the status
                record = await service.get_record(self.db, reseller_id=message["reseller_id"], sha256=last["sha256"])
                if record is not None:
                    await self._ready(message_id, record)
                    return True
            elif not last.get("retryable") or len(mine) >= max_attempts:
                await self._fail(message_id, str(last.get("error")))
                return True
            elif as_utc(last["retry_at"]) > now:
                return False
        attempt = len(tried) + 1
        _id = repository.attempt_id(message_id, attempt)
        claim = {
            "_id": _id,
            "message_id": message_id,
            "attempt": attempt,
            "round": round_,
            "worker": self.worker_id,
            "claimed_at": now,
            "lease_until": now + timedelta(seconds=self.settings.MEDIA_FETCH_LEASE_SECONDS),
            "result": None,
        }
        if not await repository.claim_fetch_attempt(self.db, claim):
            return False  # another worker claimed this attempt first
        try:
            fetched = await self._bytes(entry)
            record = await service.store_bytes(
                self.db,
                reseller_id=str(message["reseller_id"]),
                data=fetched.data,
                mime=str(media.get("mime") or fetched.mime or service.DEFAULT_MIME),
                name=str(media.get("name") or fetched.name or ""),
                duration=media.get("duration"),
                width=media.get("width"),
                height=media.get("height"),
            )
        except ProviderError as exc:
            error = str(exc)[:ERROR_MAX_CHARS]
            retry_at = utcnow() + timedelta(seconds=backoff_seconds(self.settings, len(mine) + 1))
            changes = {"result": "error", "error": error, "retryable": exc.retryable, "retry_at": retry_at}
            await repository.finish_fetch_attempt(self.db, _id, {**changes, "finished_at": utcnow()})
            log.warning("media fetch failed", message_id=message_id, attempt=attempt, error=error)
            if not exc.retryable or len(mine) + 1 >= max_attempts:
                await self._fail(message_id, error)
                return True
            return False
        changes = {"result": "stored", "sha256": record["sha256"], "finished_at": utcnow()}
        await repository.finish_fetch_attempt(self.db, _id, changes)
        await self._ready(message_id, record)
        return True

    async def _bytes(self, entry: dict[str, Any]) -> FetchedMedia:
        if entry.get("raw_id"):
            inline = await webhooks.inline_media(
                self.db, raw_id=str(entry["raw_id"]), provider_message_id=str(entry["provider_message_id"])
            )
            if inline is not None:
                try:
                    return FetchedMedia(data=decode_base64(inline), mime="", name="")
                except ValueError:
                    pass  # unreadable inline bytes: the provider may still have them
        conn = await connections.get_internal(self.db, str(entry["connection_id"]))
        if conn is None or not conn.get("active"):
            raise ProviderError("connection missing or inactive", retryable=False)
        provider = registry.build(conn["provider"], self.settings, self.http)
        return await provider.fetch_media(
            instance_name=conn["instance_name"],
            provider_message_id=str(entry["provider_message_id"]),
            remote_jid=str(entry["remote_jid"]),
            from_me=bool(entry.get("from_me")),
        )

    async def _ready(self, message_id: str, record: dict[str, Any]) -> None:
        changes = {"status": "ready", "sha256": record["sha256"], "size": record["size"], "error": None}
        if not (await message_store.get_internal(self.db, message_id) or {}).get("media", {}).get("mime"):
            changes["mime"] = record["mime"]
        await messages.set_media(self.db, message_id, changes)

    async def _fail(self, message_id: str, reason: str) -> None:
        await messages.set_media(self.db, message_id, {"status": "failed", "error": reason[:ERROR_MAX_CHARS]})


async def run_until(db: Database, settings: Settings, stop: asyncio.Event) -> None:
    async with registry.http_client(settings) as http:
        await MediaFetcher(db, settings, http).run(stop)


def background(db: Database, settings: Settings, *, enabled: bool = True) -> BackgroundLoop:
    """The fetcher inside a backend process's lifespan (MEDIA_FETCH_ENABLED)."""
    return BackgroundLoop("media-fetcher", run_until, db, settings, enabled=enabled and settings.MEDIA_FETCH_ENABLED)
