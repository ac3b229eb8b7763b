"""Queries on the media store: a GridFS bucket for the bytes, `media` for the records, and the
inbound fetch queue.

The bucket (`media.files` + `media.chunks`) is PyMongo's standard GridFS layout, so mongodump,
mongofiles and any driver read it. A record's `_id` is `{reseller_id}:{sha256}`: one copy per
tenant per content, arbitrated by the atomic unique `_id` insert (FerretDB's updates are not
atomic, its unique `_id` inserts are) and read by `_id` alone, the one filter FerretDB pushes down.

The fetch queue, read by `_id` alone like the outbound queue (backend/outbound/repository.py):
- `media_fetches`: entry n is `_id` "f:<n>" (backend/core/seqlog.py, plain append, no holes),
  one per message whose bytes are to be fetched (and one more per retry action), walked from a
  cursor in `media_fetch_state`; the walk in the process that queued an entry uses the copy it
  stored instead of reading it back (`keeps_appends`: entries never change).
- `media_fetch_attempts`: attempt k of message m is `_id` "<m>:<k>"; inserting it is the claim
  that lets exactly one worker of any process make that attempt (backend/core/attempts.py).
Nothing here deletes: the application never removes media, entries or attempts.
"""

from collections.abc import AsyncIterator
from typing import Any

from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile

from backend.core import group_commit
from backend.core.attempts import AttemptLedger
from backend.core.clock import utcnow
from backend.core.db import Database
from backend.core.indexes import ASC, declare
from backend.core.seqlog import SeqLog
from backend.media.models import FetchAttempt, FetchBody, MediaRecord

COLLECTION = "media"
BUCKET = "media"
FILES = f"{BUCKET}.files"
CHUNKS = f"{BUCKET}.chunks"
FETCHES = "media_fetches"
FETCH_STATE = "media_fetch_state"
FETCH_ATTEMPTS = "media_fetch_attempts"
# Every collection the media keep, for the deploy ledger, deploy_check and backup verify.
COLLECTIONS = (COLLECTION, FILES, CHUNKS)
# The indexes GridFS drivers create on a bucket's first write, declared so that start-up and
# mongo-init make them too, with the same names (a driver finding them skips its own).
declare(
    CHUNKS,
    [("files_id", ASC), ("n", ASC)],
    name="files_id_1_n_1",
    unique=True,
    purpose="GridFS: a file's chunks in order; one chunk per position",
)
declare(FILES, [("filename", ASC), ("uploadDate", ASC)], name="filename_1_uploadDate_1", purpose="GridFS")
# 255 KiB, GridFS's default: one chunk is one document well below the 16 MB limit.
CHUNK_SIZE = 255 * 1024
CHUNK_BATCH_BYTES = 4 * 1024 * 1024  # chunks per insert command: a few MB
# Marks files whose chunks this module wrote, with `_id` "<file_id>:<n>" (see `write_file`).
CHUNK_IDS = "file_id:n"


def record_id(reseller_id: str, sha256: str) -> str:
    return f"{reseller_id}:{sha256}"


def _bucket(db: Database) -> AsyncGridFSBucket:
    return AsyncGridFSBucket(db, bucket_name=BUCKET, chunk_size_bytes=CHUNK_SIZE)


async def get_internal(db: Database, reseller_id: str, sha256: str) -> MediaRecord | None:
    return MediaRecord.load(await db[COLLECTION].find_one({"_id": record_id(reseller_id, sha256)}))


async def insert(db: Database, record: MediaRecord) -> None:
    """Raises DuplicateKeyError when the tenant holds this content already. Group-committed with
    other fetches' records, as the file documents below."""
    await group_commit.insert_one(db[COLLECTION], record.stored())


def chunk_id(file_id: str, n: int) -> str:
    return f"{file_id}:{n}"


async def write_file(
    db: Database, file_id: str, name: str, metadata: dict[str, Any], chunks: AsyncIterator[bytes], length: int
) -> None:
    """Writes a GridFS file: its chunks (each CHUNK_SIZE bytes but the last), then its `files`
    document, so a write cut midway is never a readable file. Chunk `_id`s are "<file_id>:<n>"
    rather than driver-made ObjectIds: any GridFS reader still finds them by `files_id` and `n`,
    and ours reads each by `_id`, the one query FerretDB does not answer by scanning every chunk
    of every file."""
    batch: list[dict[str, Any]] = []
    batch_bytes, n = 0, 0
    async for data in chunks:
        batch.append({"_id": chunk_id(file_id, n), "files_id": file_id, "n": n, "data": data})
        batch_bytes += len(data)
        n += 1
        if batch_bytes >= CHUNK_BATCH_BYTES:
            await db[CHUNKS].insert_many(batch)
            batch, batch_bytes = [], 0
    if batch:
        await db[CHUNKS].insert_many(batch)
    await group_commit.insert_one(
        db[FILES],
        {
            "_id": file_id,
            "length": length,
            "chunkSize": CHUNK_SIZE,
            "uploadDate": utcnow(),
            "filename": name,
            "metadata": {**metadata, "chunk_ids": CHUNK_IDS},
        },
    )


async def read_range(db: Database, file_id: str, start: int, end: int) -> AsyncIterator[bytes]:
    """Bytes `start`..`end` (exclusive) of a stored file, chunk by chunk: never the whole file in
    memory. Stops early at a missing chunk (the caller sees fewer bytes than asked)."""
    meta = await db[FILES].find_one({"_id": file_id})
    if meta is None:
        return
    if (meta.get("metadata") or {}).get("chunk_ids") != CHUNK_IDS:
        async for piece in _read_range_by_driver(db, file_id, start, end):  # a file another writer made
            yield piece
        return
    size = int(meta["chunkSize"])
    n, offset, pos = start // size, start % size, start
    while pos < end:
        chunk = await db[CHUNKS].find_one({"_id": chunk_id(file_id, n)})
        if chunk is None:
            return
        piece = bytes(chunk["data"])[offset : offset + (end - pos)]
        if not piece:
            return
        pos += len(piece)
        n, offset = n + 1, 0
        yield piece


async def _read_range_by_driver(db: Database, file_id: str, start: int, end: int) -> AsyncIterator[bytes]:
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


fetches = SeqLog(FETCHES, "f:", state_collection=FETCH_STATE, cursor_id="cursor", keeps_appends=True)


async def enqueue_fetch(db: Database, body: FetchBody) -> int:
    seq, _ = await fetches.append(db, body.model_dump())
    return seq


fetch_attempts = AttemptLedger(FETCH_ATTEMPTS, what="media fetch", model=FetchAttempt)


async def records_internal(db: Database, *, limit: int | None = None) -> list[MediaRecord]:
    """Media records by `_id` (operator checks: backup verify, deploy check)."""
    cursor = db[COLLECTION].find({}).sort("_id", 1)
    if limit is not None:
        cursor = cursor.limit(limit)
    return [MediaRecord.model_validate(doc) async for doc in cursor]
