"""Queries on `quick_replies`."""

from typing import Any

from backend.core.db import Database
from backend.core.indexes import ASC, declare
from backend.core.tenancy import TenantScope

COLLECTION = "quick_replies"

declare(
    COLLECTION,
    [("reseller_id", ASC), ("owner", ASC), ("shortcut_key", ASC)],
    name="tenant_owner_shortcut_unique",
    unique=True,
    purpose="one active shortcut per owner (the tenant, or one agent); arbitrates concurrent creates",
)


async def get(db: Database, scope: TenantScope, reply_id: str) -> dict[str, Any] | None:
    return await scope.get(db[COLLECTION], reply_id)


async def insert(db: Database, doc: dict[str, Any]) -> None:
    await db[COLLECTION].insert_one(doc)


async def list_for(db: Database, scope: TenantScope, *, owners: list[str], active: bool | None) -> list[dict[str, Any]]:
    """Every reply of the given owners in scope, by shortcut. Small by nature (tens)."""
    query = scope.filter({"owner": {"$in": owners}})
    if active is not None:
        query["active"] = active
    docs = await db[COLLECTION].find(query).to_list(length=None)
    return sorted(docs, key=lambda d: (d["shortcut_key"], d["_id"]))


async def update(db: Database, scope: TenantScope, reply_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
    await db[COLLECTION].update_one({"_id": reply_id}, {"$set": changes})
    return await scope.get(db[COLLECTION], reply_id)
