"""Queries on `quick_replies`; tenant scoping through core.tenancy."""

from typing import Any

from backend.core.db import Database
from backend.core.indexes import ASC, declare
from backend.core.tenancy import Actor, get_in_scope, scoped

COLLECTION = "quick_replies"

declare(
    COLLECTION,
    [("reseller_id", ASC), ("owner", ASC), ("shortcut_key", ASC)],
    name="tenant_owner_shortcut_unique",
    unique=True,
    purpose="one active shortcut per owner (the tenant, or one agent); arbitrates concurrent creates",
)


async def get(db: Database, actor: Actor, reply_id: str) -> dict[str, Any] | None:
    return await get_in_scope(db[COLLECTION], actor, reply_id)


async def insert(db: Database, doc: dict[str, Any]) -> None:
    await db[COLLECTION].insert_one(doc)


async def list_for(db: Database, actor: Actor, *, owners: list[str], active: bool | None) -> list[dict[str, Any]]:
    """Every reply of the given owners in the actor's tenant, by shortcut. Small by nature (tens)."""
    query = scoped(actor, {"owner": {"$in": owners}})
    if active is not None:
        query["active"] = active
    docs = await db[COLLECTION].find(query).to_list(length=None)
    return sorted(docs, key=lambda d: (d["shortcut_key"], d["_id"]))


async def update(db: Database, reply_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
    await db[COLLECTION].update_one({"_id": reply_id}, {"$set": changes})
    return await db[COLLECTION].find_one({"_id": reply_id})
