"""The compact, streamed fingerprint of every ticket's identity and state.

One gzip'd text line per ticket, in `_id` order: "<id>\\t<status>\\t<version>\\t<state hash>". Written
and read one line at a time, so memory stays flat at millions of tickets; the database streams the
tickets in `_id` order (the `_id` index on MongoDB), and verify walks both sorted streams together.
"""

import gzip
import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.core.db import Database

HEADER = "# iaze-ticket-fingerprint v1"
PROJECTION = {"status": 1, "version": 1, "agent_id": 1, "department_id": 1}


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    status: str
    version: int
    state: str  # hash of who holds the ticket where: a transfer changes it, a new message does not


def state_hash(doc: dict[str, Any]) -> str:
    raw = f"{doc.get('status')}|{doc.get('agent_id')}|{doc.get('department_id')}"
    return hashlib.blake2b(raw.encode(), digest_size=4).hexdigest()


def entry(doc: dict[str, Any]) -> Entry:
    return Entry(str(doc["_id"]), str(doc.get("status")), int(doc.get("version") or 0), state_hash(doc))


class OutOfOrder(RuntimeError):
    """Ticket ids not strictly increasing: the merge with the live database would be wrong."""


async def stream_tickets(db: Database) -> AsyncIterator[Entry]:
    last: str | None = None
    async for doc in db.tickets.find({}, PROJECTION, batch_size=5000).sort("_id", 1):
        e = entry(doc)
        if last is not None and e.id <= last:
            raise OutOfOrder(f"ticket ids out of order: {last!r} then {e.id!r}")
        last = e.id
        yield e


class Writer:
    """Writes entries and keeps a running sha256 of exactly the bytes written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sha = hashlib.sha256()
        self.count = 0
        self._fh: gzip.GzipFile = gzip.GzipFile(path, "wb", compresslevel=6)
        self._put(HEADER)

    def _put(self, line: str) -> None:
        data = (line + "\n").encode()
        self.sha.update(data)
        self._fh.write(data)

    def add(self, e: Entry) -> None:
        self._put(f"{e.id}\t{e.status}\t{e.version}\t{e.state}")
        self.count += 1

    def close(self) -> str:
        self._fh.close()
        return self.sha.hexdigest()


def read(path: Path, expected_sha256: str | None = None) -> Iterator[Entry]:
    """Yields the entries; raises ValueError at the end when the content's sha256 is not the one
    the snapshot recorded (a truncated or edited fingerprint must not pass as clean)."""
    sha = hashlib.sha256()
    with gzip.open(path, "rb") as fh:
        first = fh.readline()
        sha.update(first)
        if first.decode().rstrip("\n") != HEADER:
            raise ValueError(f"{path} is not a ticket fingerprint")
        for raw in fh:
            sha.update(raw)
            tid, status, version, state = raw.decode().rstrip("\n").split("\t")
            yield Entry(tid, status, int(version), state)
    if expected_sha256 is not None and sha.hexdigest() != expected_sha256:
        raise ValueError(f"{path} does not match the snapshot's checksum (edited or truncated)")
