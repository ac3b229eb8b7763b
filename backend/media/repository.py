"""Queries on the media store: a GridFS bucket for the bytes, `media` for the records.

The bucket (`media.files` + `media.chunks`) is PyMongo's standard GridFS layout, so mongodump,
mongofiles and any driver read it. A record's `_id` is `{reseller_id}:{sha256}`: one copy per
tenant per content, arbitrated by the atomic unique `_id` insert (FerretDB's updates are not
atomic, its unique `_id` inserts are) and read by `_id` alone, the one filter FerretDB pushes down.
Nothing here deletes: the application never removes media.
"""

from collections.abc import AsyncIterator
from typing import Any

from gridfs import AsyncGridFSBucket
from gridfs.asynchronous.grid_file import AsyncGridIn
from gridfs.errors import NoFile

from backend.core.db import Database
from backend.core.tenancy import TenantScope

COLLECTION = "media"
BUCKET = "media"
FILES = f"{BUCKET}.files"
CHUNKS = f"{BUCKET}.chunks"
# 255 KiB, GridFS's default: one chunk is one document well below the 16 MB limit.
CHUNK_SIZE = 255 * 1024


def record_id(reseller_id: str, sha256: str) -> str:
    return f"{reseller_id}:{sha256}"


def _bucket(db: Database) -> AsyncGridFSBucket:
    return AsyncGridFSBucket(db, bucket_name=BUCKET, chunk_size_bytes=CHUNK_SIZE)


async def get(db: Database, scope: TenantScope, reseller_id: str, sha256: str) -> dict[str, Any] | None:
    return await scope.get(db[COLLECTION], record_id(reseller_id, sha256))


async def get_internal(db: Database, reseller_id: str, sha256: str) -> dict[str, Any] | None:
    return await db[COLLECTION].find_one({"_id": record_id(reseller_id, sha256)})


async def insert(db: Database, doc: dict[str, Any]) -> None:
    """Raises DuplicateKeyError when the tenant holds this content already."""
    await db[COLLECTION].insert_one(doc)


def open_upload(db: Database, file_id: str, name: str, metadata: dict[str, Any]) -> AsyncGridIn:
    """A GridFS file being written: chunks go out as they fill, the `files` document only on
    `close()`, so a write cut midway is never a readable file (`abort()` takes its chunks back)."""
    return _bucket(db).open_upload_stream_with_id(file_id, name, metadata=metadata)


async def read_range(db: Database, file_id: str, start: int, end: int) -> AsyncIterator[bytes]:
    """Bytes `start`..`end` (exclusive) of a stored file, chunk by chunk: never the whole file in memory."""
    try:
        stream = await _bucket(db).open_download_stream(file_id)
    except NoFile:
        return
    try:
        if start:
            await stream.seek(start)
        left = end - start
        while left > 0:
            piece = await stream.readchunk()
            if not piece:
                return
            piece = piece[:left]
            left -= len(piece)
            yield piece
    finally:
        await stream.close()
