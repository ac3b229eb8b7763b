"""The only writes a migration needs, shaped so they cannot lose data: a field is added where it
is missing, never overwritten, and a reshape writes a NEW field next to the one it reads."""

from collections.abc import Callable
from typing import Any

from backend.core.db import Database


async def add_field(db: Database, collection: str, field: str, compute: Callable[[dict[str, Any]], Any]) -> int:
    """Sets `field` on documents that lack it, to compute(doc). Returns how many it set.

    Each write is by `_id` and still guarded by `$exists: false`, so a concurrent run (or a real
    write by the application) that set the field first wins and is left alone.
    """
    changed = 0
    async for doc in db[collection].find({field: {"$exists": False}}):
        result = await db[collection].update_one(
            {"_id": doc["_id"], field: {"$exists": False}}, {"$set": {field: compute(doc)}}
        )
        changed += result.modified_count
    return changed


async def reshape_field(
    db: Database, collection: str, source: str, target: str, transform: Callable[[Any], Any]
) -> int:
    """Writes transform(doc[source]) into `target`, keeping `source` as it was."""
    if source == target:
        raise ValueError("a reshape writes a new field; it never replaces the one it reads")
    return await add_field(db, collection, target, lambda doc: transform(doc.get(source)) if source in doc else None)
