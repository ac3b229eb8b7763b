from typing import Any

from backend.core.db import Database
from backend.core.indexes import ASC, DESC, declare
from backend.core.tenancy import Actor, get_in_scope, scoped

COLLECTION = "departments"

declare(
    COLLECTION,
    [("reseller_id", ASC), ("name_key", ASC)],
    name="tenant_name_unique",
    unique=True,
    purpose="one department per name in a tenant",
)
declare(COLLECTION, [("reseller_id", ASC), ("_id", DESC)], name="tenant_id", purpose="department list")


async def get(db: Database, actor: Actor, department_id: str) -> dict[str, Any] | None:
    return await get_in_scope(db[COLLECTION], actor, department_id)


async def get_in_tenant(db: Database, reseller_id: str, department_id: str) -> dict[str, Any] | None:
    doc = await db[COLLECTION].find_one({"_id": department_id})
    return doc if doc is not None and doc.get("reseller_id") == reseller_id else None


async def insert(db: Database, doc: dict[str, Any]) -> None:
    await db[COLLECTION].insert_one(doc)


async def list_page(
    db: Database, actor: Actor, *, before_id: str | None, limit: int, active: bool | None
) -> list[dict[str, Any]]:
    query = scoped(actor)
    if active is not None:
        query["active"] = active
    if before_id:
        query["_id"] = {"$lt": before_id}
    return await db[COLLECTION].find(query).sort("_id", DESC).limit(limit).to_list(length=limit)


async def count_active_in(db: Database, reseller_id: str, ids: list[str]) -> int:
    return await db[COLLECTION].count_documents({"_id": {"$in": ids}, "reseller_id": reseller_id, "active": True})


async def update(db: Database, actor: Actor, department_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
    await db[COLLECTION].update_one(scoped(actor, {"_id": department_id}), {"$set": changes})
    return await db[COLLECTION].find_one({"_id": department_id})
