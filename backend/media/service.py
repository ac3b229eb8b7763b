"""Storing and reading media bytes, one copy per tenant per content.

The stable API other domains call (outbound sending, uploads, the inbound fetch):

- `store_bytes(db, *, reseller_id, data, mime, name, duration=None, width=None, height=None,
  max_size=None) -> dict` — stores `data` (bytes, or an async iterator of byte pieces, streamed:
  never held whole) and returns the media record:
  `{"id", "reseller_id", "sha256", "size", "mime", "name", "file_id", "created_at"}` plus
  `duration`/`width`/`height` when known. The same content stored twice by one tenant returns
  the first record (its mime and name are the first storer's; keep your own on your document).
  `max_size`: more bytes than that raise `TooLarge` and leave nothing behind.
- `get_record(db, *, reseller_id, sha256) -> dict | None`.
- `open_bytes(db, *, reseller_id, sha256, start=0, end=None) -> AsyncIterator[bytes]` — the
  stored bytes (or the `start`..`end` slice, end exclusive), chunk by chunk. `NotFound` when the
  tenant holds no such content.
- `read_bytes(db, *, reseller_id, sha256) -> bytes` — all of it at once (the outbound sender's
  base64; fine for WhatsApp-sized files, never used to serve downloads).

Crash windows: the bytes are written first (GridFS writes its `files` document after the last
chunk), the record last. A crash before the record leaves an unreferenced GridFS file that no
message points to, and the next store of that content writes a fresh copy. Two concurrent stores
of new identical content both write their bytes; the record's unique `_id` picks one, the loser's
file stays unreferenced (never deleted: the application deletes nothing).
"""

import hashlib
from collections.abc import AsyncIterator
from typing import Any

from pymongo.errors import PyMongoError

from backend.core.clock import utcnow
from backend.core.db import Database, is_duplicate_key
from backend.core.errors import AppError, NotFound
from backend.core.ids import new_id
from backend.media import repository

DEFAULT_MIME = "application/octet-stream"


class TooLarge(AppError):
    status_code = 413


async def _pieces(data: bytes | AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if isinstance(data, bytes | bytearray | memoryview):
        yield bytes(data)
        return
    async for piece in data:
        if piece:
            yield piece


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    record = {k: v for k, v in doc.items() if k != "_id"}
    record["id"] = doc["_id"]
    return record


async def store_bytes(
    db: Database,
    *,
    reseller_id: str,
    data: bytes | AsyncIterator[bytes],
    mime: str,
    name: str | None,
    duration: float | None = None,
    width: int | None = None,
    height: int | None = None,
    max_size: int | None = None,
) -> dict[str, Any]:
    if isinstance(data, bytes | bytearray | memoryview):
        # Known content: a tenant that holds it already costs one `_id` read, no write.
        found = await repository.get_internal(db, reseller_id, hashlib.sha256(data).hexdigest())
        if found is not None:
            return _public(found)
        if max_size is not None and len(data) > max_size:
            raise TooLarge(f"the file is larger than {max_size} bytes")
    file_id = new_id()
    digest = hashlib.sha256()
    size = 0
    upload = repository.open_upload(db, file_id, name or "", {"reseller_id": reseller_id, "mime": mime})
    try:
        async for piece in _pieces(data):
            size += len(piece)
            if max_size is not None and size > max_size:
                raise TooLarge(f"the file is larger than {max_size} bytes")
            digest.update(piece)
            await upload.write(piece)
        sha256 = digest.hexdigest()
        found = await repository.get_internal(db, reseller_id, sha256)
        if found is not None:
            await upload.abort()  # our unfinished copy of content the tenant holds already
            return _public(found)
        await upload.close()
    except BaseException:
        if not upload.closed:
            await upload.abort()
        raise
    doc: dict[str, Any] = {
        "_id": repository.record_id(reseller_id, sha256),
        "reseller_id": reseller_id,
        "sha256": sha256,
        "size": size,
        "mime": mime or DEFAULT_MIME,
        "name": name or "",
        "file_id": file_id,
        "created_at": utcnow(),
    }
    for key, value in (("duration", duration), ("width", width), ("height", height)):
        if value is not None:
            doc[key] = value
    try:
        await repository.insert(db, doc)
    except PyMongoError as exc:
        if not is_duplicate_key(exc):
            raise
        found = await repository.get_internal(db, reseller_id, sha256)
        if found is None:
            raise
        return _public(found)
    return _public(doc)


async def get_record(db: Database, *, reseller_id: str, sha256: str) -> dict[str, Any] | None:
    found = await repository.get_internal(db, reseller_id, sha256)
    return _public(found) if found is not None else None


async def open_bytes(
    db: Database, *, reseller_id: str, sha256: str, start: int = 0, end: int | None = None
) -> AsyncIterator[bytes]:
    record = await repository.get_internal(db, reseller_id, sha256)
    if record is None:
        raise NotFound("media not found")
    stop = record["size"] if end is None else min(end, record["size"])
    return repository.read_range(db, record["file_id"], max(start, 0), stop)


async def read_bytes(db: Database, *, reseller_id: str, sha256: str) -> bytes:
    return b"".join([piece async for piece in await open_bytes(db, reseller_id=reseller_id, sha256=sha256)])
