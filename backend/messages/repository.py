"""Queries on `messages`: append-only; a message is never updated except for its delivery status."""

from datetime import datetime
from typing import Any

from backend.core import group_commit
from backend.core.db import Database
from backend.core.indexes import ASC, declare

COLLECTION = "messages"

declare(
    COLLECTION,
    [("ticket_id", ASC), ("created_at", ASC), ("_id", ASC)],
    name="ticket_created",
    purpose="a ticket's thread in chronological order",
)
declare(COLLECTION, [("reseller_id", ASC), ("created_at", ASC)], name="tenant_created", purpose="tenant exports")


async def insert(db: Database, doc: dict[str, Any]) -> None:
    """Raises DuplicateKeyError when a message with this `_id` is stored already (idempotent writes)."""
    await group_commit.insert_one(db[COLLECTION], doc)


async def get(db: Database, message_id: str) -> dict[str, Any] | None:
    return await db[COLLECTION].find_one({"_id": message_id})


async def list_for_ticket(
    db: Database, ticket_id: str, *, after: tuple[datetime, str] | None, limit: int
) -> list[dict[str, Any]]:
    query: dict[str, Any] = {"ticket_id": ticket_id}
    if after is not None:
        at, last_id = after
        query = {"$and": [query, {"$or": [{"created_at": {"$gt": at}}, {"created_at": at, "_id": {"$gt": last_id}}]}]}
    cursor = db[COLLECTION].find(query).sort([("created_at", ASC), ("_id", ASC)]).limit(limit)
    return await cursor.to_list(length=limit)
