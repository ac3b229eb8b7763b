"""Conditional updates of one document by `_id` ("move the ticket only if it is still at
version 3") that stay fast on both stores.

On MongoDB the condition goes into the update's filter: one atomic command, served by the `_id`
index. FerretDB v1 pushes a filter down to SQLite only when it is `{_id: …}` alone; `{_id: …,
version: 3}` makes it read and decode the whole collection (measured: 22 updates/s at 3,000
documents), and it runs a filtered update as read, check, write-by-`_id` anyway, without
atomicity. So on FerretDB we do those same three steps ourselves with `_id`-only commands: the
same semantics, without the scan. Every race that matters is arbitrated elsewhere by a unique
`_id` insert (ticket_events, claims), which is atomic on both stores. What a non-atomic update
can still do on FerretDB — write back fields a concurrent update had just changed — is repaired
by the writer reading the document back (backend/tickets/projection.py `settle`), or, for a
document whose writers all run in one process in the single-process default, prevented by
taking turns there (`one_writer`).
"""

import asyncio
import operator
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import OperationFailure

from backend.core.db import Database, is_ferretdb
from backend.core.runtime import runtime_of

NAMESPACE_NOT_FOUND = 26
_RANGE = {"$lt": operator.lt, "$lte": operator.le, "$gt": operator.gt, "$gte": operator.ge}


@asynccontextmanager
async def one_writer(db: Database, collection: str, _id: Any) -> AsyncIterator[None]:
    """One write of document `_id` at a time in this process. For a document whose writers can
    land together (a connection's settings and its status; a message's move, delivery status and
    media; two people saving different settings): on FerretDB every update reads the document and
    writes it all back, so two at once can undo each other, and a conditional update's check is a
    separate read. Taking turns here closes that between the writers of this process (all of them in the
    single-process default); MongoDB's updates are atomic per document anyway. Held for one
    write only, never across another `one_writer`, so it cannot deadlock."""
    locks, key = runtime_of(db).document_writers, (db.name, collection, _id)
    entry = locks.setdefault(key, (asyncio.Lock(), [0]))
    entry[1][0] += 1
    try:
        async with entry[0]:
            yield
    finally:
        entry[1][0] -= 1
        if not entry[1][0]:  # nobody waits: the map holds only documents being written
            del locks[key]


async def filters_push_down(db: Database) -> bool:
    """False on FerretDB (buildInfo carries `ferretdbVersion`), True on MongoDB. A property of
    the server, so it is asked once per client."""
    runtime = runtime_of(db)
    if runtime.filters_push_down is None:
        runtime.filters_push_down = not is_ferretdb(await db.command("buildInfo"))
    return runtime.filters_push_down


async def update_if(
    db: Database,
    collection: str,
    _id: Any,
    condition: Mapping[str, Any],
    update: Mapping[str, Any],
    *,
    current: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Applies `update` to document `_id` when it matches `condition`. Returns the document as
    the update left it (None: not updated), from the one command that writes (findAndModify): a
    writer that must read the document back after its write (projection.settle) starts from
    this answer. `current`: the document as the caller read it a moment ago; on FerretDB it
    stands in for the read (the check was never atomic there), on MongoDB it is ignored. On
    FerretDB the answer is the document as the server read it for the write, plus the update: a
    read made after every write this caller had awaited before it."""
    after = ReturnDocument.AFTER
    if await filters_push_down(db):
        return await db[collection].find_one_and_update({"_id": _id, **condition}, dict(update), return_document=after)
    doc = current if current is not None else await db[collection].find_one({"_id": _id})
    if doc is None or not matches(doc, condition):
        return None
    return await db[collection].find_one_and_update({"_id": _id}, dict(update), return_document=after)


def matches(doc: Mapping[str, Any], condition: Mapping[str, Any]) -> bool:
    """The small part of the query language conditional updates use: fields (a dotted path into
    sub-documents), equality, $eq/$ne/$lt/$lte/$gt/$gte/$in/$nin. Anything else is a programming
    error, not a mismatch."""
    return all(_field_matches(_at(doc, field), test) for field, test in condition.items())


def _at(doc: Mapping[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _field_matches(value: Any, test: Any) -> bool:
    if not (isinstance(test, Mapping) and test and all(str(k).startswith("$") for k in test)):
        return bool(value == test)
    for op, arg in test.items():
        if op == "$eq":
            ok = value == arg
        elif op == "$ne":
            ok = value != arg
        elif op == "$in":
            ok = value in arg
        elif op == "$nin":
            ok = value not in arg
        elif op in _RANGE:
            ok = _compare(_RANGE[op], value, arg)
        else:
            raise ValueError(f"operator {op} is not supported by conditional.matches")
        if not ok:
            return False
    return True


def _compare(compare: Callable[[Any, Any], Any], value: Any, arg: Any) -> bool:
    if value is None or arg is None:
        return False  # MongoDB's range operators never match across types (missing/null included)
    try:
        return bool(compare(value, arg))
    except TypeError:  # different BSON types: a range operator does not match them
        return False


async def collection_size(db: Database, collection: str) -> int:
    """How many documents a collection holds, from the store's own bookkeeping rather than by
    reading the documents (the deploy ledger counts its guarded collections at every start of
    every instance and worker).

    MongoDB: the collection's metadata count (`count` without a filter, what
    estimated_document_count sends): constant whatever the size. FerretDB v1 would answer that
    by reading and decoding every document; its `$collStats` count instead sums the cells of the
    table's SQLite leaf pages (dbstat), one per row, without decoding a document: still a walk
    over the pages, but ~100x cheaper (docs/BENCHMARKS.md, "Start-up gate"), and the cheapest
    count FerretDB offers. Either can drift from the truth (MongoDB after an unclean shutdown,
    until the next checkpoint), so callers that act on a smaller number confirm it with an exact
    count first.
    """
    if await filters_push_down(db):
        return int(await db[collection].estimated_document_count())
    try:
        stats = await (await db[collection].aggregate([{"$collStats": {"count": {}}}])).to_list(length=1)
    except OperationFailure as exc:
        if exc.code == NAMESPACE_NOT_FOUND:
            return 0
        raise
    return int(stats[0]["count"]) if stats else 0
