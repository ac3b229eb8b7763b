"""The archive writer/reader against the mongodump archive spec, byte for byte, without a server."""

import gzip
import io
import struct
from datetime import UTC, datetime

import bson
import pytest
from bson.int64 import Int64

from scripts import archive, retention


def _spec_bytes(docs: list[bytes]) -> bytes:
    """An archive assembled by hand from the spec's grammar, independently of archive.Writer."""
    meta = archive.metadata_json("c", options={}, indexes=[{"v": 2, "key": {"_id": 1}, "name": "_id_"}], uuid=None)
    crc = 0
    if docs:
        crc = archive.crc_update(None, b"".join(docs))
    signed = crc - (1 << 64) if crc >= 1 << 63 else crc
    parts = [
        bytes([0x6D, 0xE2, 0x99, 0x81]),  # 0x8199e26d little-endian
        bson.encode({"concurrent_collections": 1, "version": "0.1", "server_version": "7.0.0", "tool_version": "t"}),
        bson.encode({"db": "d", "collection": "c", "metadata": meta, "size": Int64(0), "type": "collection"}),
        b"\xff\xff\xff\xff",
    ]
    if docs:
        parts += [bson.encode({"db": "d", "collection": "c", "EOF": False, "CRC": Int64(0)}), *docs, b"\xff" * 4]
    parts += [bson.encode({"db": "d", "collection": "c", "EOF": True, "CRC": Int64(signed)}), b"\xff" * 4]
    return b"".join(parts)


def _written(docs: list[bytes]) -> bytes:
    buf = io.BytesIO()
    w = archive.Writer(buf)
    meta = archive.metadata_json("c", options={}, indexes=[{"v": 2, "key": {"_id": 1}, "name": "_id_"}], uuid=None)
    w.prelude(server_version="7.0.0", tool_version="t", collections=[archive.CollectionMeta("d", "c", meta)])
    w.write_all("d", "c", docs)
    return buf.getvalue()


def test_crc_is_crc64_ecma_as_go_computes_it() -> None:
    # Go's crc64.Checksum("123456789", crc64.MakeTable(crc64.ECMA)) — the catalogue check value.
    assert archive.crc_update(None, b"123456789") == 0x995DC9BBDF1939FA
    assert archive.crc_update(archive.crc_update(None, b"1234"), b"56789") == 0x995DC9BBDF1939FA


@pytest.mark.parametrize("n", [0, 1, 3])
def test_writer_matches_the_spec_byte_for_byte(n: int) -> None:
    docs = [bson.encode({"_id": f"t{i}", "status": "espera", "at": datetime(2025, 1, 1, tzinfo=UTC)}) for i in range(n)]
    assert _written(docs) == _spec_bytes(docs)


def test_roundtrip_across_segments_keeps_raw_bytes() -> None:
    n = archive.SEGMENT_DOCS * 2 + 5
    docs = [bson.encode({"_id": i, "body": "olá " * (i % 7), "n": Int64(i)}) for i in range(n)]
    events = list(archive.read(io.BytesIO(_written(docs))))
    prelude = events[0]
    assert isinstance(prelude, archive.Prelude)
    assert prelude.header["version"] == "0.1" and prelude.collections[0].indexes[0]["name"] == "_id_"
    assert [e.raw for e in events if isinstance(e, archive.Document)] == docs
    assert events[-1] == archive.NamespaceEnd("d", "c", len(docs))


def test_damaged_archives_are_refused() -> None:
    docs = [bson.encode({"_id": i}) for i in range(3)]
    good = _written(docs)
    with pytest.raises(archive.ArchiveError, match="bad magic"):
        list(archive.read(io.BytesIO(b"\x00" + good[1:])))
    with pytest.raises(archive.ArchiveError, match=r"truncated|ends before"):
        list(archive.read(io.BytesIO(good[:-30])))
    flipped = bytearray(good)
    flipped[good.index(docs[1]) + 8] ^= 0xFF  # a bit flip inside a document's int value
    with pytest.raises(archive.ArchiveError, match="CRC mismatch"):
        list(archive.read(io.BytesIO(bytes(flipped))))


def test_count_documents_reads_a_gzip_archive(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "a.archive.gz"
    path.write_bytes(gzip.compress(_written([bson.encode({"_id": i}) for i in range(7)])))
    assert archive.count_documents(str(path)) == {"c": 7}


def test_retention_keeps_newest_daily_and_weekly() -> None:
    def at(day: int, hour: int) -> datetime:
        return datetime(2025, 3, day, hour, tzinfo=UTC)

    # Two backups a day for 20 days (2025-03-01 .. 03-20).
    backups = [(at(d, h), f"{d:02d}-{h:02d}") for d in range(1, 21) for h in (3, 15)]
    keep, delete = retention.plan(backups, keep_daily=3, keep_weekly=2)
    assert keep[0] == "20-15"  # newest first
    assert {"20-15", "19-15", "18-15"} <= set(keep)  # newest of each of the last 3 days
    assert "16-15" in keep  # newest of the previous ISO week (Mon 10 .. Sun 16)
    assert len(keep) == 4 and len(delete) == 36 and not set(keep) & set(delete)
    keep, delete = retention.plan(backups, keep_daily=0, keep_weekly=0)
    assert keep == ["20-15"]  # the newest survives whatever the settings say
    assert retention.plan([], keep_daily=1, keep_weekly=1) == ([], [])


def test_header_magic_value() -> None:
    assert struct.unpack("<I", archive.MAGIC_BYTES)[0] == 0x8199E26D
