"""The inbound media fetch: stores the bytes of received media messages, after the message.

A media message is stored at once with `media.status` "pending" and a fetch entry queued
(backend/webhooks/service.py); this loop, in every backend process (MEDIA_FETCH_ENABLED), walks
the queue and claims each attempt in `media_fetch_attempts` like the outbound worker (both by
`_id`: backend/core/attempts.py), so any number of workers in any number of processes make each
attempt once. The bytes come from the stored webhook delivery when Evolution sent them inline,
else from the provider (given the message's content from that delivery, when there is one); a
provider failure is retried with exponential backoff; a permanent one (or the last attempt)
sets "failed" with the reason, and the retry action (media.service.retry_fetch) queues a new
round. The webhook lane never waits for any of it.

Crash windows: an attempt whose process died is taken over once its lease ends. Bytes stored
before the message's status moved are found by the next attempt as the same content (one copy
per tenant per sha256), so a repeat costs a fetch, never a second copy.
"""

import asyncio
import contextlib
import functools
import re
from typing import Any

import httpx
from pydantic import ValidationError

from backend.connections import service as connections
from backend.connections.providers import registry
from backend.connections.providers.base import FetchedMedia, ProviderError
from backend.connections.providers.evolution import decode_base64
from backend.core import attempts, metrics
from backend.core.background import BackgroundLoop
from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.logging import get_logger
from backend.core.runtime import runtime_of
from backend.media import repository, service
from backend.media.models import FetchAttempt, FetchEntry, MediaRecord
from backend.messages import public as message_store
from backend.messages import service as messages
from backend.messages.models import Message, MessageMedia
from backend.webhooks import service as webhooks

log = get_logger("media")
ERROR_MAX_CHARS = 500


def policy_of(settings: Settings) -> attempts.Policy:
    return attempts.Policy(
        max_attempts=settings.MEDIA_FETCH_MAX_ATTEMPTS,
        lease_seconds=settings.MEDIA_FETCH_LEASE_SECONDS,
        backoff_base_seconds=settings.MEDIA_FETCH_BACKOFF_BASE_SECONDS,
        backoff_max_seconds=settings.MEDIA_FETCH_BACKOFF_MAX_SECONDS,
        poll_seconds=settings.MEDIA_FETCH_POLL_SECONDS,
        concurrency=settings.MEDIA_FETCH_CONCURRENCY,
        scan_limit=settings.MEDIA_FETCH_SCAN_LIMIT,
        unreadable_give_up_seconds=settings.UNREADABLE_GIVE_UP_SECONDS,
        errors=ProviderError,
        error_max_chars=ERROR_MAX_CHARS,
    )


class MediaFetcher:
    def __init__(self, db: Database, settings: Settings, http: httpx.AsyncClient) -> None:
        self.db = db
        self.settings = settings
        self.http = http
        self.policy = policy_of(settings)
        self.walk = attempts.QueueWalk(
            repository.fetches,
            FetchEntry,
            self.policy,
            what="media fetch",
            give_up=self._give_up,
        )

    async def run_once(self, poll: bool = True) -> int:
        """One pass over (part of) the open queue (core/attempts.py `QueueWalk`); entries go concurrently."""
        return await self.walk.run_once(self.db, self._visit, poll=poll)

    async def _visit(self, entries: list[FetchEntry]) -> list[int]:
        done = await asyncio.gather(*(self.walk.guarded(self.handle, e) for e in entries))
        return [e.seq for e, finished in zip(entries, done, strict=True) if finished]

    async def run(self, stop: asyncio.Event) -> None:
        wakeups = runtime_of(self.db).media_fetch_wakeups  # set when this process queues a fetch
        await self.walk.run(stop, self.run_once, wakeups)

    async def _give_up(self, message_id: object) -> bool:
        """A fetch that a stored document it needs does not read, given up by the walk
        (`QueueWalk`): shown failed, so that once mended it can be retried. Its screens are told
        when the message reads, also by a repeat (an announcement that failed is tried again)."""
        if not isinstance(message_id, str):  # nothing to end: the entry itself names no message
            log.error("media fetch entry given up without a message to end", message_id=repr(message_id))
            return True
        reason = "a stored document this media needs does not read"
        if await message_store.give_up_internal(self.db, message_id, reason=reason, media=True):
            log.error("media fetch given up", message_id=message_id, error=reason)
            metrics.GIVEN_UP.labels(worker="media").inc()
        with contextlib.suppress(ValidationError):
            ended = await message_store.get_internal(self.db, message_id)
            if ended is not None and ended.media is not None and ended.media.status == "failed":
                await messages.announce_again(self.db, ended)
        return True

    async def handle(self, entry: FetchEntry) -> bool:
        """Moves one entry on. Returns True when it needs nothing more."""
        now = utcnow()
        message_id = entry.message_id
        message = service.handed_over(self.db, message_id, entry.round) or await message_store.get_internal(
            self.db, message_id
        )
        if message is None:  # queued by a delivery whose message is not stored (yet)
            return self.policy.outlived(entry.enqueued_at, now)
        media = message.media or MessageMedia()
        round_ = media.round
        if entry.round < round_:
            return True  # superseded by a retry's own entry
        if media.status == "ready" or (entry.round == round_ and media.status != "pending"):
            # Done, or failed (only the retry action queues it again). The move may be stored with
            # its answer lost (a store error after it, or a worker that died there): the screens
            # are told again, which is safe to repeat.
            if entry.round == round_:
                await messages.announce_again(self.db, message)
            return True
        if entry.round > round_:
            # A retry queued this before moving the status: wait for it (or for its lease, if it died).
            return self.policy.outlived(entry.enqueued_at, now)

        stored: list[MediaRecord] = []  # what this attempt stored, settled without reading it back

        async def fetch(_: str) -> dict[str, Any]:
            try:
                fetched = await self._bytes(entry)
            except ProviderError as exc:
                metrics.MEDIA_FETCH_FAILURES.labels(reason=failure_reason(exc)).inc()
                raise
            record = await service.store_bytes(
                self.db,
                reseller_id=message.reseller_id,
                data=fetched.data,
                mime=media.mime or fetched.mime or service.DEFAULT_MIME,
                name=media.name or fetched.name or "",
                duration=media.duration,
                width=media.width,
                height=media.height,
            )
            stored.append(record)
            return {"result": "stored", "sha256": record.sha256}

        async def ready(attempt: FetchAttempt) -> bool:
            """Stored: the record this attempt's store returned (written, bytes first, before it
            returned), or, when an earlier attempt's worker died before moving the status, the
            record found as the same content."""
            record = next((r for r in stored if r.sha256 == attempt.sha256), None)
            if record is None and attempt.sha256 is not None:
                record = await service.get_record(self.db, reseller_id=message.reseller_id, sha256=attempt.sha256)
            if record is not None:
                await self._ready(message, record)
            return record is not None

        return await repository.fetch_attempts.step(
            self.db,
            message_id,
            policy=self.policy,
            worker=self.walk.worker,
            act=fetch,
            settle=ready,
            fail=functools.partial(self._fail, message),
            round_=round_,
        )

    async def _bytes(self, entry: FetchEntry) -> FetchedMedia:
        """The inline bytes of the message's stored delivery, else the provider's download: given
        the message's content from that delivery when it has it, else its key alone (a message
        from history, a retry, a delivery no longer kept)."""
        delivered = webhooks.DeliveredMedia()
        if entry.raw_id:
            delivered = await webhooks.delivered_media(
                self.db, raw_id=entry.raw_id, provider_message_id=entry.provider_message_id
            )
            if delivered.inline_base64 is not None:
                try:
                    return FetchedMedia(data=decode_base64(delivered.inline_base64), mime="", name="")
                except ValueError:
                    pass  # unreadable inline bytes: the provider may still have them
        # This process's copy (connections.get_cached_internal): provider and instance never change.
        # A connection deactivated in IAZE is fetched from too: it may still be connected at the
        # provider, and its clients' messages are filed as any other's (webhooks.service); if the
        # provider no longer has the instance, the fetch fails with the provider's reason.
        conn = connections.kept_internal(self.db, entry.connection_id)
        if conn is None:
            conn = await connections.get_shared_internal(self.db, entry.connection_id)
        if conn is None:
            raise ProviderError("connection missing", retryable=False)
        provider = registry.build(conn.provider, self.settings, self.http)
        return await provider.fetch_media(
            instance_name=conn.instance_name,
            provider_message_id=entry.provider_message_id,
            remote_jid=entry.remote_jid,
            from_me=entry.from_me,
            content=delivered.content,
        )

    async def _ready(self, message: Message, record: MediaRecord) -> None:
        """`message`: as `handle` read it, the one read of it (set_media's write is conditioned
        on its ticket, and reads it again only after a move); its media's mime cannot have changed
        since, as only the retry action writes one, and never while the fetch is pending."""
        changes = {"status": "ready", "sha256": record.sha256, "size": record.size, "error": None}
        if not (message.media or MessageMedia()).mime:
            changes["mime"] = record.mime
        await messages.set_media(self.db, message.id, changes, message=message)

    async def _fail(self, message: Message, reason: str) -> None:
        changes = {"status": "failed", "error": reason[:ERROR_MAX_CHARS]}
        await messages.set_media(self.db, message.id, changes, message=message)


def failure_reason(exc: ProviderError) -> str:
    """The metric's label (README, Metrics) of a failed download, from the provider's error."""
    text = str(exc)
    if text.startswith("provider timeout"):
        return "timeout"
    answered = re.match(r"provider answered ([45])\d\d", text)
    if answered:
        return f"http_{answered.group(1)}xx"
    return "error" if exc.retryable else "refused"


async def run_until(db: Database, settings: Settings, stop: asyncio.Event) -> None:
    async with registry.http_client(settings) as http:
        await MediaFetcher(db, settings, http).run(stop)


def background(db: Database, settings: Settings, *, enabled: bool = True) -> BackgroundLoop:
    """The fetcher inside a backend process's lifespan (MEDIA_FETCH_ENABLED)."""
    return BackgroundLoop("media-fetcher", run_until, db, settings, enabled=enabled and settings.MEDIA_FETCH_ENABLED)
