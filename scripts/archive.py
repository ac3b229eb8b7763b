"""The mongodump archive format (what `mongodump --archive --gzip` writes), read and written here.

Layout (mongo-tools' archive spec): a little-endian int32 magic number; a header document
{concurrent_collections, version "0.1", server_version, tool_version}; one metadata document per
collection {db, collection, metadata (canonical Extended JSON of options/indexes/uuid/type), size,
type}; the terminator 0xFFFFFFFF; then any number of namespace segments — a header document
{db, collection, EOF: false, CRC: 0}, one or more BSON documents, the terminator — and, once per
namespace, an EOF header {db, collection, EOF: true, CRC: CRC-64/ECMA of all its documents} and the
terminator. With --gzip the whole stream is one gzip member. Documents are carried as raw BSON
bytes end to end, so no type is ever reinterpreted.
"""

import gzip
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import bson
from bson.int64 import Int64
from bson.json_util import CANONICAL_JSON_OPTIONS, dumps, loads
from fastcrc import crc64

MAGIC = 0x8199E26D
MAGIC_BYTES = struct.pack("<I", MAGIC)
TERMINATOR = b"\xff\xff\xff\xff"
FORMAT_VERSION = "0.1"
SEGMENT_DOCS = 1000  # documents per namespace segment; readers must accept any split
_INT64_SIGN = 1 << 63


class ArchiveError(ValueError):
    """Not a mongodump archive, or a damaged one (bad magic, truncated, CRC mismatch)."""


def crc_update(crc: int | None, data: bytes) -> int:
    return int(crc64.xz(data, crc))


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= _INT64_SIGN else value


@dataclass
class CollectionMeta:
    db: str
    collection: str
    metadata: str  # canonical Extended JSON, as mongodump writes it
    size: int = 0
    type: str = "collection"

    @property
    def parsed(self) -> dict[str, Any]:
        value = loads(self.metadata) if self.metadata else {}
        return value if isinstance(value, dict) else {}

    @property
    def indexes(self) -> list[dict[str, Any]]:
        return list(self.parsed.get("indexes") or [])

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.parsed.get("options") or {})


def metadata_json(collection: str, *, options: dict[str, Any], indexes: list[dict[str, Any]], uuid: str | None) -> str:
    meta: dict[str, Any] = {"indexes": indexes, "collectionName": collection, "type": "collection"}
    if options:
        meta["options"] = options
    if uuid:
        meta["uuid"] = uuid
    return dumps(meta, json_options=CANONICAL_JSON_OPTIONS)


class Writer:
    """Streams an archive to a binary file object. Call prelude() once, then namespace() per collection."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh

    def prelude(self, *, server_version: str, tool_version: str, collections: list[CollectionMeta]) -> None:
        self._fh.write(MAGIC_BYTES)
        header = {
            "concurrent_collections": 1,
            "version": FORMAT_VERSION,
            "server_version": server_version,
            "tool_version": tool_version,
        }
        self._fh.write(bson.encode(header))
        for c in collections:
            doc = {
                "db": c.db,
                "collection": c.collection,
                "metadata": c.metadata,
                "size": Int64(c.size),
                "type": c.type,
            }
            self._fh.write(bson.encode(doc))
        self._fh.write(TERMINATOR)

    def _ns_header(self, db: str, collection: str, *, eof: bool, crc: int) -> None:
        self._fh.write(bson.encode({"db": db, "collection": collection, "EOF": eof, "CRC": Int64(_signed64(crc))}))

    def namespace(self, db: str, collection: str) -> "Namespace":
        return Namespace(self, db, collection)

    def write_all(self, db: str, collection: str, docs: Iterable[bytes]) -> int:
        ns = self.namespace(db, collection)
        for raw in docs:
            ns.add(raw)
        return ns.close()


class Namespace:
    """One collection's documents, split into segments, closed by its EOF header and CRC."""

    def __init__(self, writer: Writer, db: str, collection: str) -> None:
        self._w = writer
        self.db = db
        self.collection = collection
        self.count = 0
        self._crc: int | None = None
        self._in_segment = 0

    def add(self, raw: bytes) -> None:
        fh = self._w._fh
        if self._in_segment == 0:
            self._w._ns_header(self.db, self.collection, eof=False, crc=0)
        fh.write(raw)
        self._crc = crc_update(self._crc, raw)
        self.count += 1
        self._in_segment += 1
        if self._in_segment == SEGMENT_DOCS:
            fh.write(TERMINATOR)
            self._in_segment = 0

    def close(self) -> int:
        if self._in_segment:
            self._w._fh.write(TERMINATOR)
        self._w._ns_header(self.db, self.collection, eof=True, crc=self._crc if self._crc is not None else 0)
        self._w._fh.write(TERMINATOR)
        return self.count


@dataclass
class Prelude:
    header: dict[str, Any]
    collections: list[CollectionMeta] = field(default_factory=list)


@dataclass(frozen=True)
class Document:
    db: str
    collection: str
    raw: bytes


@dataclass(frozen=True)
class NamespaceEnd:
    db: str
    collection: str
    count: int


Event = Prelude | Document | NamespaceEnd


def _read_exact(fh: IO[bytes], n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise ArchiveError("archive is truncated")
    return data


def _read_block(fh: IO[bytes], *, allow_eof: bool = False) -> bytes | None:
    """One BSON document's bytes, TERMINATOR for the terminator, None at a clean end of file."""
    size_bytes = fh.read(4)
    if not size_bytes and allow_eof:
        return None
    if len(size_bytes) != 4:
        raise ArchiveError("archive is truncated")
    if size_bytes == TERMINATOR:
        return TERMINATOR
    (size,) = struct.unpack("<i", size_bytes)
    if size < 5 or size > 48 * 1024 * 1024:
        raise ArchiveError(f"bad BSON document size {size}")
    return size_bytes + _read_exact(fh, size - 4)


def read(fh: IO[bytes]) -> Iterator[Event]:
    """Yields the prelude, then every document, then an end marker per namespace (CRC checked)."""
    if fh.read(4) != MAGIC_BYTES:
        raise ArchiveError("not a mongodump archive (bad magic number)")
    first = _read_block(fh)
    if first is None or first == TERMINATOR:
        raise ArchiveError("archive has no header")
    prelude = Prelude(bson.decode(first))
    while (block := _read_block(fh)) != TERMINATOR:
        assert block is not None
        m = bson.decode(block)
        prelude.collections.append(
            CollectionMeta(m["db"], m["collection"], m.get("metadata", ""), int(m.get("size", 0)), m.get("type", ""))
        )
    yield prelude
    crcs: dict[tuple[str, str], int | None] = {}
    counts: dict[tuple[str, str], int] = {}
    while (block := _read_block(fh, allow_eof=True)) is not None:
        if block == TERMINATOR:
            raise ArchiveError("unexpected terminator where a namespace header belongs")
        head = bson.decode(block)
        ns = (head["db"], head["collection"])
        if head.get("EOF"):
            if _read_block(fh) != TERMINATOR:
                raise ArchiveError(f"namespace {ns[0]}.{ns[1]}: EOF header not followed by the terminator")
            crc = crcs.pop(ns, None)
            expected = int(head.get("CRC", 0))
            if crc is not None and _signed64(crc) != expected:
                raise ArchiveError(f"CRC mismatch for namespace {ns[0]}.{ns[1]}")
            yield NamespaceEnd(ns[0], ns[1], counts.pop(ns, 0))
            continue
        while (doc := _read_block(fh)) != TERMINATOR:
            assert doc is not None
            crcs[ns] = crc_update(crcs.get(ns), doc)
            counts[ns] = counts.get(ns, 0) + 1
            yield Document(ns[0], ns[1], doc)
    if crcs:
        raise ArchiveError(f"archive ends before the EOF of {', '.join(f'{d}.{c}' for d, c in crcs)}")


def open_gzip(path: str, mode: str) -> IO[bytes]:
    return gzip.open(path, mode)  # type: ignore[return-value]


def count_documents(path: str) -> dict[str, int]:
    """Documents per collection, reading (and CRC-checking) the whole gzip'd archive."""
    counts: dict[str, int] = {}
    with open_gzip(path, "rb") as fh:
        for event in read(fh):
            if isinstance(event, Prelude):
                counts.update({c.collection: 0 for c in event.collections})
            elif isinstance(event, NamespaceEnd):
                counts[event.collection] = event.count
    return counts
