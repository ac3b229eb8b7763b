"""Concurrent reads of the same document share one database read.

Why: every webhook delivery authenticates against its connection document, so 64 deliveries in
flight for one connection meant 64 identical `_id` reads. A caller that arrives while the same
read is in flight takes that read's answer instead of sending its own. It is not a cache: nothing
is kept once the read returns, and the answer is never older than the moment the caller arrived
minus one round trip — as fresh as the caller's own read would have been had it been sent a
moment earlier.
"""

import asyncio
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from backend.core.runtime import runtime_of


async def find_by_id(collection: AsyncCollection[dict[str, Any]], _id: Any) -> dict[str, Any] | None:
    """`find_one({"_id": _id})`, shared with concurrent callers. Each caller gets its own copy."""
    inflight = runtime_of(collection.database).reads_in_flight
    key = (collection.database.name, collection.name, _id)
    shared = inflight.get(key)
    if shared is None:
        shared = asyncio.get_running_loop().create_future()
        shared.add_done_callback(lambda f: f.cancelled() or f.exception())
        inflight[key] = shared
        try:
            doc = await collection.find_one({"_id": _id})
        except BaseException as exc:
            # Followers must not inherit the leader's cancellation as if it were their own.
            shared.set_exception(
                exc if isinstance(exc, Exception) else PyMongoError(f"shared read interrupted: {type(exc).__name__}")
            )
            raise
        finally:
            if inflight.get(key) is shared:
                del inflight[key]
        shared.set_result(doc)
        return doc
    found = await asyncio.shield(shared)
    return dict(found) if found is not None else None
