"""`webhook_events_raw`: every authenticated delivery, exactly as it arrived, with its outcome.
Appended before processing and never removed; only the outcome fields change."""

from typing import Any

from backend.core.db import Database
from backend.core.indexes import ASC, declare

COLLECTION = "webhook_events_raw"

declare(
    COLLECTION,
    [("status", ASC), ("_id", ASC)],
    name="status_id",
    purpose="failed events for scripts/reprocess_webhooks.py",
)


async def insert(db: Database, doc: dict[str, Any]) -> None:
    await db[COLLECTION].insert_one(doc)


async def get(db: Database, raw_id: str) -> dict[str, Any] | None:
    return await db[COLLECTION].find_one({"_id": raw_id})


async def mark(db: Database, raw_id: str, changes: dict[str, Any], *, inc_attempts: bool = True) -> None:
    update: dict[str, Any] = {"$set": changes}
    if inc_attempts:
        update["$inc"] = {"attempts": 1}
    await db[COLLECTION].update_one({"_id": raw_id}, update)


async def list_by_status(
    db: Database, status: str, *, connection_id: str | None, after_id: str | None, limit: int
) -> list[dict[str, Any]]:
    """Operator tooling only (a scan on FerretDB; indexed on MongoDB)."""
    query: dict[str, Any] = {"status": status}
    if connection_id:
        query["connection_id"] = connection_id
    if after_id:
        query["_id"] = {"$gt": after_id}
    return await db[COLLECTION].find(query).sort("_id", ASC).limit(limit).to_list(length=limit)
