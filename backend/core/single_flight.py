"""`_id` reads shared by concurrent callers and, for the documents nearly every message reads
(a tenant's config, a connection), answered for a few seconds from this process's copy.

Why: every webhook delivery authenticates against its connection document and every message's
processing reads its tenant's config, though both change a few times a month. A caller that
arrives while the same read is in flight takes that read's answer instead of sending its own
(as fresh as its own read sent a moment earlier). A caller asking for `cached` may also take an
answer read up to SETUP_CACHE_SECONDS ago (the runtime's `cache_seconds`).

How fresh a cached answer is:
- In this process, a write is seen at once: every repository write of a cached collection calls
  `forget` once the write returned. `forget` also moves the runtime's cache epoch, so a read sent
  before the write and answered after it does not keep its (older) answer, and drops the key's
  read in flight, so a caller arriving after the write sends a new one.
- Another process's write is seen here at most `cache_seconds` after it returned (an answer's age
  is counted from when its read was sent). What that allows is the caller's to say: each one
  states it where it reads (`connections.repository.get_cached_internal`, `resellers.service.config_internal`).
- A missing document is kept only for callers that say so (`keep_missing`: a tenant's config,
  whose absence reads as the defaults); a connection created elsewhere is found at its first read.
Each caller gets its own top-level copy (callers load it into a model; nested values are shared).
"""

import asyncio
import time
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from backend.core.runtime import Runtime, runtime_of

KEPT = 4096  # documents kept per process at most (configs and connections: a few per tenant)


def _key(collection: AsyncCollection[dict[str, Any]], _id: Any) -> tuple[str, str, Any]:
    return (collection.database.name, collection.name, _id)


async def find_by_id(
    collection: AsyncCollection[dict[str, Any]], _id: Any, *, cached: bool = False, keep_missing: bool = False
) -> dict[str, Any] | None:
    """`find_one({"_id": _id})`, shared with concurrent callers; with `cached`, answered from an
    answer this process read less than `cache_seconds` ago when it has one (with `keep_missing`,
    "no such document" too)."""
    rt, key = runtime_of(collection.database), _key(collection, _id)
    if cached:
        found = rt.documents.get(key)
        if found is not None and time.monotonic() - found[0] < rt.cache_seconds and (keep_missing or found[1]):
            return dict(found[1]) if found[1] else None
    shared = rt.reads_in_flight.get(key)
    if shared is None:
        return await _lead(rt, collection, key)
    doc = await asyncio.shield(shared)
    return dict(doc) if doc is not None else None


def kept(collection: AsyncCollection[dict[str, Any]], _id: Any) -> dict[str, Any] | None:
    """This process's copy of document `_id` when it was read less than `cache_seconds` ago;
    None (and no read) otherwise."""
    rt = runtime_of(collection.database)
    found = rt.documents.get(_key(collection, _id))
    if found is None or not found[1] or time.monotonic() - found[0] >= rt.cache_seconds:
        return None
    return dict(found[1])


async def _lead(
    rt: Runtime, collection: AsyncCollection[dict[str, Any]], key: tuple[str, str, Any]
) -> dict[str, Any] | None:
    shared = asyncio.get_running_loop().create_future()
    shared.add_done_callback(lambda f: f.cancelled() or f.exception())
    rt.reads_in_flight[key] = shared
    sent, epoch = time.monotonic(), rt.cache_epoch
    try:
        doc = await collection.find_one({"_id": key[2]})
    except BaseException as exc:
        # Followers must not inherit the leader's cancellation as if it were their own.
        shared.set_exception(
            exc if isinstance(exc, Exception) else PyMongoError(f"shared read interrupted: {type(exc).__name__}")
        )
        raise
    finally:
        if rt.reads_in_flight.get(key) is shared:
            del rt.reads_in_flight[key]
    shared.set_result(doc)
    if rt.cache_epoch == epoch and rt.cache_seconds > 0:  # a miss as {}: only `keep_missing` takes it
        rt.documents.pop(key, None)
        rt.documents[key] = (sent, doc if doc is not None else {})
        while len(rt.documents) > KEPT:
            rt.documents.popitem(last=False)
    return dict(doc) if doc is not None else None


def forget(collection: AsyncCollection[dict[str, Any]], _id: Any) -> None:
    """After a write of document `_id`: this process's next read of it goes to the store."""
    rt, key = runtime_of(collection.database), _key(collection, _id)
    rt.cache_epoch += 1
    rt.documents.pop(key, None)
    rt.reads_in_flight.pop(key, None)
