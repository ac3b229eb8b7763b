"""Natural keys (email, client phone, ticket number, ...) stored as `_id`s of one collection.

Why: an `_id` lookup is the one query FerretDB pushes down, so these stay flat as data grows,
and an `_id` is unique on every store, so inserting a key is an atomic claim that arbitrates
races (two writers: exactly one insert succeeds). Keys are never removed.
"""

from pymongo.errors import DuplicateKeyError

from backend.core import group_commit
from backend.core.clock import utcnow
from backend.core.db import Database
from backend.core.retry import read_winner

COLLECTION = "natural_keys"


def key_id(kind: str, *parts: str) -> str:
    return ":".join((kind, *parts))


async def claim(db: Database, kind: str, *parts: str, target: str) -> tuple[str, bool]:
    """Bind the key to `target` unless it is bound already. Returns (bound target, won)."""
    if await bind(db, kind, *parts, target=target):
        return target, True
    _id = key_id(kind, *parts)
    existing = await read_winner(lambda: db[COLLECTION].find_one({"_id": _id}), what=f"key {_id}")
    return str(existing["target"]), False


async def bind(db: Database, kind: str, *parts: str, target: str) -> bool:
    """`claim` without reading the winner, for a caller that needs only the key to exist: True
    when this call bound it."""
    doc = {"_id": key_id(kind, *parts), "target": target, "created_at": utcnow()}
    try:
        await group_commit.insert_one(db[COLLECTION], doc)
        return True
    except DuplicateKeyError:
        return False


async def lookup(db: Database, kind: str, *parts: str) -> str | None:
    doc = await db[COLLECTION].find_one({"_id": key_id(kind, *parts)})
    return str(doc["target"]) if doc else None
