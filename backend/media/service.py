"""Storing and reading media bytes, one copy per tenant per content.

What other domains call (outbound sending, uploads, the inbound fetch): `store_bytes` takes bytes,
a `Received` file (written from that file, no second copy) or an async iterator of pieces
(received whole into a spool file first: memory up to SPOOL_IN_MEMORY_BYTES, then disk); the same
content stored twice by one tenant returns the first record (its mime and name are the first
storer's: keep your own on your document); more than `max_size` bytes raise `TooLarge` and leave
nothing behind. `open_bytes` streams the bytes (or a slice), `NotFound` when the tenant holds no
such content; `read_bytes` is all of it at once (the outbound sender's base64, never a download).

Inbound media (the rest of this module and backend/media/worker.py): a media message is stored at
once with `media.status` "pending" and a fetch queued (`enqueue_fetch`); the worker stores the
bytes and moves it to "ready", or "failed" with `error`; `retry_fetch` queues it again.

Every byte written is hashed on its way to the chunks and compared with the sha256 the record will
carry before the `files` document names them (a file that changed under us is refused, its chunks
left unnamed).

Crash windows: a streamed store is received whole (spooled) before anything is written; then the
chunks, the GridFS `files` document after the last chunk, the record last. A crash before the
`files` document leaves chunks no file names; before the record, a file no message points to; the
next store of that content writes a fresh copy. Two concurrent stores of new identical content
both write their bytes; the record's unique `_id` picks one, the loser's file stays unreferenced
(never deleted: the application deletes nothing).
"""

import asyncio
import hashlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from pydantic import BaseModel
from pymongo.errors import PyMongoError

from backend.clients.phones import remote_jid
from backend.core.clock import utcnow
from backend.core.db import Database, is_duplicate_key
from backend.core.errors import AppError, Conflict, NotFound
from backend.core.ids import is_valid_id, new_id
from backend.core.runtime import runtime_of
from backend.core.tenancy import Actor
from backend.core.tuning import MEDIA_HANDED
from backend.history import service as history
from backend.media import repository
from backend.media.models import FetchBody, Measure, MediaRecord
from backend.messages import public as message_store
from backend.messages import service as messages
from backend.messages.models import Message, MessageMedia
from backend.messages.schemas import MessageRead
from backend.tickets import service as tickets

DEFAULT_MIME = "application/octet-stream"
SPOOL_IN_MEMORY_BYTES = 8 * 1024 * 1024  # a streamed store is held in memory up to this, then on disk


class TooLarge(AppError):
    status_code = 413


@dataclass(frozen=True)
class Received:
    """Content its receiver already holds whole (an upload's spool file), with the size and
    sha256 it counted as the bytes came in: stored from that file, without a second copy."""

    file: BinaryIO
    size: int
    sha256: str


async def _chunks(data: bytes | BinaryIO, *, sha256: str, size: int) -> AsyncIterator[bytes]:
    """The content in GridFS-sized chunks, from memory or from a file, hashed as they go: past
    the last one, anything but `size` bytes of `sha256` raises before the file is named."""
    if isinstance(data, bytes):  # hashed from this very object a moment ago
        for i in range(0, len(data), repository.CHUNK_SIZE):
            yield data[i : i + repository.CHUNK_SIZE]
        return
    digest, seen = hashlib.sha256(), 0
    await asyncio.to_thread(data.seek, 0)
    while piece := await asyncio.to_thread(data.read, repository.CHUNK_SIZE):
        digest.update(piece)
        seen += len(piece)
        yield piece
    if seen != size or digest.hexdigest() != sha256:
        raise ValueError(f"the content changed while it was stored ({seen} of {size} bytes read)")


async def store_bytes(
    db: Database,
    *,
    reseller_id: str,
    data: bytes | Received | AsyncIterator[bytes],
    mime: str,
    name: str | None,
    duration: Measure = None,
    width: Measure = None,
    height: Measure = None,
    max_size: int | None = None,
) -> MediaRecord:
    spool: tempfile.SpooledTemporaryFile[bytes] | None = None
    content: bytes | BinaryIO
    try:
        if isinstance(data, bytes | bytearray | memoryview):
            content = raw = bytes(data)
            size, sha256 = len(raw), hashlib.sha256(raw).hexdigest()
        elif isinstance(data, Received):
            content, size, sha256 = data.file, data.size, data.sha256
        else:
            # Received whole before anything is written: an upload cut midway, or over its limit,
            # leaves nothing in the store, and content the tenant holds already is never written.
            spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115
            content = spool  # type: ignore[assignment]  # a SpooledTemporaryFile is a binary file
            digest, size = hashlib.sha256(), 0
            async for piece in data:
                size += len(piece)
                if max_size is not None and size > max_size:
                    raise TooLarge(f"the file is larger than {max_size} bytes")
                digest.update(piece)
                await asyncio.to_thread(spool.write, piece)
            sha256 = digest.hexdigest()
        if max_size is not None and size > max_size:
            raise TooLarge(f"the file is larger than {max_size} bytes")
        found = await repository.get_internal(db, reseller_id, sha256)
        if found is not None:
            return found
        file_id = new_id()
        metadata = {"reseller_id": reseller_id, "mime": mime, "sha256": sha256}
        chunks = _chunks(content, sha256=sha256, size=size)
        await repository.write_file(db, file_id, name or "", metadata, chunks, size)
    finally:
        if spool is not None:
            spool.close()
    record = MediaRecord(
        id=repository.record_id(reseller_id, sha256),
        reseller_id=reseller_id,
        sha256=sha256,
        size=size,
        mime=mime or DEFAULT_MIME,
        name=name or "",
        file_id=file_id,
        created_at=utcnow(),
        duration=duration,
        width=width,
        height=height,
    )
    try:
        await repository.insert(db, record)
    except PyMongoError as exc:
        if not is_duplicate_key(exc):
            raise
        found = await repository.get_internal(db, reseller_id, sha256)
        if found is None:
            raise
        return found
    return record


async def get_record(db: Database, *, reseller_id: str, sha256: str) -> MediaRecord | None:
    return await repository.get_internal(db, reseller_id, sha256)


async def open_bytes(
    db: Database, *, reseller_id: str, sha256: str, start: int = 0, end: int | None = None
) -> AsyncIterator[bytes]:
    record = await repository.get_internal(db, reseller_id, sha256)
    if record is None:
        raise NotFound("media not found")
    stop = record.size if end is None else min(end, record.size)
    return repository.read_range(db, record.file_id, max(start, 0), stop)


async def read_bytes(db: Database, *, reseller_id: str, sha256: str) -> bytes:
    return b"".join([piece async for piece in await open_bytes(db, reseller_id=reseller_id, sha256=sha256)])


async def enqueue_fetch(
    db: Database,
    *,
    message: Message,
    connection_id: str,
    provider_message_id: str,
    phone: str,
    from_me: bool,
    raw_id: str | None,
    round_: int | None = None,
) -> None:
    """Queues the fetch of a stored media message's bytes (for its media's current round unless
    `round_` says another). `raw_id`: the stored webhook delivery of the message, which may carry
    them inline (Evolution's webhook base64) and else gives the provider the message's content;
    None: the provider is asked by the message's key alone."""
    await repository.enqueue_fetch(
        db,
        FetchBody(
            message_id=message.id,
            reseller_id=message.reseller_id,
            round=(message.media or MessageMedia()).round if round_ is None else round_,
            connection_id=connection_id,
            provider_message_id=provider_message_id,
            remote_jid=remote_jid(phone),
            from_me=from_me,
            raw_id=raw_id,
            enqueued_at=utcnow(),
        ),
    )
    if round_ is None:  # a retry wakes the fetchers itself, once the status moved to pending
        _hand_over(db, message)
        _wake(db)


def _hand_over(db: Database, message: Message) -> None:
    """The message as its intake stored it, for this process's fetcher's first look instead of a
    read (there is a fetcher to take it: one is waiting to be woken). Safe however long it waits:
    only the fetcher itself moves a pending round on (the retry action needs a failed one, and
    queues its own round, never handed), and its status write is conditioned on the ticket the
    copy names: a move since makes the write read the message again (MongoDB) or answer the
    message where it is now (FerretDB; messages.service.set_media)."""
    rt = runtime_of(db)
    if not rt.media_fetch_wakeups:
        return
    handed = rt.media_fetch_handed
    handed[(db.name, message.id)] = message
    while len(handed) > MEDIA_HANDED:
        handed.popitem(last=False)


def handed_over(db: Database, message_id: str, round_: int) -> Message | None:
    """The copy `_hand_over` kept, given once (later looks read the message), for the fetch round
    it was queued for: one left behind (another process's fetcher took its entry) is no answer
    for a later round."""
    message = runtime_of(db).media_fetch_handed.pop((db.name, message_id), None)
    return message if message is not None and (message.media or MessageMedia()).round == round_ else None


def _wake(db: Database) -> None:
    """This process's fetch loops look at the queue now rather than at their next poll."""
    for event in runtime_of(db).media_fetch_wakeups:
        event.set()


def needs_fetch(message: Message) -> bool:
    return message.media is not None and message.media.status == "pending"


async def visible_message_or_404(db: Database, actor: Actor, *, message_id: str) -> Message:
    """A message of a ticket the caller can see (the thread's rule); 404 for anything else,
    another tenant's included."""
    message = await message_store.get_internal(db, message_id) if is_valid_id(message_id) else None
    if message is None or not actor.scope.owns(message.reseller_id):
        raise NotFound("message not found")
    await tickets.get_visible_or_404(db, actor, ticket_id=message.ticket_id)
    if message.direction == "note" and actor.role == "client":
        raise NotFound("message not found")
    return message


async def retry_fetch(db: Database, actor: Actor, *, message_id: str) -> MessageRead:
    """Queues a failed fetch again (a new round: attempts counted afresh). The entry is queued
    before the status moves, so a crash in between leaves it failed, never pending with no fetch."""
    message = await visible_message_or_404(db, actor, message_id=message_id)
    media = message.media
    if media is None:
        raise NotFound("the message has no media")
    legacy = media.status not in ("pending", "ready", "failed")
    if not legacy and media.status != "failed":
        raise Conflict({"message": "only a failed media fetch can be retried", "status": media.status})
    if not message.connection_id or not message.provider_message_id:
        raise Conflict({"message": "the media did not come from a provider", "status": "failed"})
    ticket = await tickets.get_internal(db, message.ticket_id)
    round_ = media.round + 1
    await enqueue_fetch(
        db,
        message=message,
        connection_id=message.connection_id,
        provider_message_id=message.provider_message_id,
        phone=ticket.client_address if ticket is not None else "",
        from_me=message.direction == "out",
        raw_id=None,
        round_=round_,
    )
    changes: dict[str, Any] = {"status": "pending", "round": round_, "error": None}
    if legacy:  # the provider's fields, in the shape the fetch fills in
        changes.update(mime=(media.mimetype or "").split(";")[0].strip(), name=media.fileName or "")
    updated = await messages.set_media(db, message.id, changes, message=message)
    _wake(db)
    return MessageRead.of_message(updated or message)


async def readable_message_or_404(db: Database, actor: Actor, *, message_id: str) -> Message:
    """A message the caller can read: in a ticket it sees, or in one its client's history shows
    it (backend/history), so whoever sees a history message sees its media; 404 otherwise."""
    message = await message_store.get_internal(db, message_id) if is_valid_id(message_id) else None
    if message is None or not actor.scope.owns(message.reseller_id):
        raise NotFound("message not found")
    ticket = await tickets.load(db, message.ticket_id)
    if ticket is None or not await history.readable(db, actor, ticket):
        raise NotFound("message not found")
    if message.direction == "note" and actor.role == "client":
        raise NotFound("message not found")
    return message


async def servable(db: Database, actor: Actor, *, message_id: str) -> tuple[MessageMedia, str, MediaRecord]:
    """(the message's media as stored on it, the message's type, the media record) for a download."""
    message = await readable_message_or_404(db, actor, message_id=message_id)
    media = message.media
    if media is None:
        raise NotFound("the message has no media")
    if media.status != "ready" or not media.sha256:
        raise Conflict({"message": "the media is not stored yet", "status": media.status or "failed"})
    record = await repository.get_internal(db, message.reseller_id, media.sha256)
    if record is None:
        raise NotFound("media not found")
    return media, message.type or "", record


class MediaRef(BaseModel):
    """A media record as a deploy snapshot names it (JSON): which bytes to read back."""

    reseller_id: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Checked:
    """Stored media read back: each record's bytes hashed again against its sha256."""

    records: int
    bytes: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


async def check_stored(db: Database, *, records: list[MediaRef] | None = None) -> Checked:
    """Reads every media record's bytes (or those of `records`),
    streamed, and compares their sha256 and size with the record (backup verify, deploy check)."""
    wanted = records if records is not None else await sample(db, limit=None)
    problems: list[str] = []
    total = 0
    for want in wanted:
        reseller_id, sha256 = want.reseller_id, want.sha256
        found = await repository.get_internal(db, reseller_id, sha256)
        if found is None:
            problems.append(f"media {reseller_id}:{sha256}: record missing")
            continue
        digest, size = hashlib.sha256(), 0
        async for piece in repository.read_range(db, found.file_id, 0, found.size):
            digest.update(piece)
            size += len(piece)
        total += size
        if size != found.size or digest.hexdigest() != sha256:
            problems.append(f"media {reseller_id}:{sha256}: bytes differ ({size} of {found.size} read)")
    return Checked(records=len(wanted), bytes=total, problems=problems)


async def sample(db: Database, *, limit: int | None) -> list[MediaRef]:
    """Up to `limit` media records (the deploy check's snapshot)."""
    found = await repository.records_internal(db, limit=limit)
    return [MediaRef.model_validate(r, from_attributes=True) for r in found]
