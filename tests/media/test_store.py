"""The media store: one copy per tenant per content, streamed in and out of GridFS."""

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backend.media import repository, service

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "media"


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_store_then_read_back_byte_for_byte(db: Any) -> None:
    data = (FIXTURES / "photo.png").read_bytes()
    record = await service.store_bytes(db, reseller_id="r1", data=data, mime="image/png", name="photo.png")
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    assert record.size == len(data)
    assert await service.read_bytes(db, reseller_id="r1", sha256=record.sha256) == data


async def test_same_content_is_stored_once_per_tenant(db: Any) -> None:
    data = (FIXTURES / "boleto.pdf").read_bytes()
    first = await service.store_bytes(db, reseller_id="r2", data=data, mime="application/pdf", name="a.pdf")
    again = await service.store_bytes(
        db, reseller_id="r2", data=_chunks(data, 100), mime="application/pdf", name="b.pdf"
    )
    other = await service.store_bytes(db, reseller_id="r3", data=data, mime="application/pdf", name="c.pdf")
    assert again.file_id == first.file_id and again.name == "a.pdf"
    assert other.file_id != first.file_id
    files = await db[repository.FILES].find({"metadata.reseller_id": {"$in": ["r2", "r3"]}}).to_list(None)
    assert len(files) == 2


async def test_concurrent_stores_of_new_content_agree_on_one_record(db: Any) -> None:
    data = b"x" * 600_000 + b"race"
    records = await asyncio.gather(
        *(
            service.store_bytes(db, reseller_id="r4", data=_chunks(data, 70_000), mime="x/y", name=None)
            for _ in range(4)
        )
    )
    assert len({r.file_id for r in records}) == 1
    assert await service.read_bytes(db, reseller_id="r4", sha256=records[0].sha256) == data


async def test_ranges_stream_across_chunk_boundaries(db: Any) -> None:
    data = bytes(range(256)) * 4000  # ~1 MB, four GridFS chunks
    record = await service.store_bytes(db, reseller_id="r5", data=data, mime="video/mp4", name="v.mp4")
    for start, end in [(0, 1), (261_000, 262_000), (500_000, len(data)), (len(data) - 1, len(data) + 10)]:
        pieces = [
            p async for p in await service.open_bytes(db, reseller_id="r5", sha256=record.sha256, start=start, end=end)
        ]
        assert b"".join(pieces) == data[start:end]


async def test_too_large_leaves_nothing_behind(db: Any) -> None:
    data = b"z" * 700_000
    with pytest.raises(service.TooLarge):
        await service.store_bytes(
            db, reseller_id="r6", data=_chunks(data, 100_000), mime="x/y", name=None, max_size=500_000
        )
    assert await db[repository.FILES].count_documents({"metadata.reseller_id": "r6"}) == 0
    assert await db[repository.CHUNKS].count_documents({}) == await _chunks_of_files(db)


async def _chunks_of_files(db: Any) -> int:
    files = await db[repository.FILES].find({}).to_list(None)
    return sum(-(-f["length"] // f["chunkSize"]) for f in files)


async def test_the_bucket_is_plain_gridfs_both_ways(db: Any) -> None:
    from gridfs import AsyncGridFSBucket

    data = bytes(range(256)) * 2100  # three chunks
    record = await service.store_bytes(db, reseller_id="r7", data=data, mime="x/y", name="ours.bin")
    bucket = AsyncGridFSBucket(db, bucket_name=repository.BUCKET)
    stream = await bucket.open_download_stream(record.file_id)
    assert await stream.read() == data  # a standard driver reads what we wrote
    theirs = await bucket.upload_from_stream("theirs.bin", data[::-1])
    pieces = [p async for p in repository.read_range(db, theirs, 1000, 600_000)]
    assert b"".join(pieces) == data[::-1][1000:600_000]  # and we read what a driver wrote


async def test_a_received_file_is_stored_from_itself_and_checked_against_its_hash(db: Any, tmp_path: Path) -> None:
    """An upload's spool is written straight to the chunks (no second copy), its bytes hashed on
    the way: a file that no longer matches the sha256 its receiver counted is never named."""
    data = (FIXTURES / "voice.ogg").read_bytes() * 200  # several chunks
    path = tmp_path / "spool"
    path.write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    with path.open("rb") as file:
        received = service.Received(file=file, size=len(data), sha256=sha256)
        record = await service.store_bytes(db, reseller_id="r9", data=received, mime="audio/ogg", name="v.ogg")
    assert record.sha256 == sha256 and record.size == len(data)
    assert await service.read_bytes(db, reseller_id="r9", sha256=sha256) == data

    path.write_bytes(data[:-1] + b"!")  # changed under the store: same size, other bytes
    files_before = await db[repository.FILES].count_documents({})
    with path.open("rb") as file:
        changed = service.Received(file=file, size=len(data), sha256=hashlib.sha256(b"other").hexdigest())
        with pytest.raises(ValueError, match="changed"):
            await service.store_bytes(db, reseller_id="r9", data=changed, mime="audio/ogg", name="v.ogg")
    assert await db[repository.FILES].count_documents({}) == files_before
    assert await service.get_record(db, reseller_id="r9", sha256=changed.sha256) is None
