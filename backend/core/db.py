"""The MongoDB client: one per process, durable write concern for everything."""

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError
from pymongo.monitoring import CommandListener
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from backend.core.config import Settings
from backend.core.errors import Conflict

Database = AsyncDatabase[dict[str, Any]]


def make_client(
    settings: Settings, *, command_listeners: Sequence[CommandListener] = ()
) -> AsyncMongoClient[dict[str, Any]]:
    """`command_listeners`: PyMongo command monitoring (bench/ingest_bench.py counts the commands
    an inbound message costs with the very client the backend uses)."""
    # w=majority + j=true: an acknowledged write survives the crash of the node that took it
    # (DOMAIN.md persistence rule 3). Reads use majority so they never see a write that a
    # failover could roll back; on a single process that also gives read-your-own-writes.
    return AsyncMongoClient(
        settings.mongo_url,
        tz_aware=True,
        w="majority",
        journal=True,
        readConcernLevel="majority",
        serverSelectionTimeoutMS=settings.MONGO_TIMEOUT_MS,
        connectTimeoutMS=settings.MONGO_TIMEOUT_MS,
        socketTimeoutMS=settings.MONGO_SOCKET_TIMEOUT_MS or None,
        appname=f"iaze-backend/{settings.APP_VERSION}",
        event_listeners=list(command_listeners),
    )


def durable_database(client: AsyncMongoClient[dict[str, Any]], name: str) -> Database:
    return client.get_database(
        name,
        write_concern=WriteConcern(w="majority", j=True),
        read_concern=ReadConcern("majority"),
    )


def is_duplicate_key(exc: PyMongoError) -> bool:
    """A unique-index violation. MongoDB always says so with DuplicateKeyError (code 11000);
    FerretDB v1 does on inserts, but on updates passes SQLite's error through as InternalError."""
    return isinstance(exc, DuplicateKeyError) or "UNIQUE constraint failed" in str(exc)


@contextlib.contextmanager
def unique_or_conflict(detail: str) -> Iterator[None]:
    """The write inside taking a unique key already taken (an insert, or an update on FerretDB)
    answers 409 with `detail`."""
    try:
        yield
    except PyMongoError as exc:
        if not is_duplicate_key(exc):
            raise
        raise Conflict(detail) from exc


def is_ferretdb(build_info: Mapping[str, Any]) -> bool:
    """FerretDB answers buildInfo with a `ferretdbVersion` next to the MongoDB version it emulates."""
    return "ferretdbVersion" in build_info
