"""Queries on `resellers` (the tenants) and `reseller_configs` (one per tenant, keyed by its id)."""

from typing import Any

from backend.core.db import Database
from backend.core.indexes import DESC
from backend.core.tenancy import TenantScope

COLLECTION = "resellers"
CONFIGS = "reseller_configs"


async def get(db: Database, reseller_id: str) -> dict[str, Any] | None:
    return await db[COLLECTION].find_one({"_id": reseller_id})


async def insert(db: Database, doc: dict[str, Any]) -> None:
    await db[COLLECTION].insert_one(doc)


async def list_page(db: Database, *, before_id: str | None, limit: int) -> list[dict[str, Any]]:
    query: dict[str, Any] = {"_id": {"$lt": before_id}} if before_id else {}
    return await db[COLLECTION].find(query).sort("_id", DESC).limit(limit).to_list(length=limit)


async def update(db: Database, reseller_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
    await db[COLLECTION].update_one({"_id": reseller_id}, {"$set": changes})
    return await get(db, reseller_id)


async def insert_config(db: Database, doc: dict[str, Any]) -> None:
    await db[CONFIGS].insert_one(doc)


async def get_config(db: Database, scope: TenantScope, reseller_id: str) -> dict[str, Any] | None:
    return await scope.get(db[CONFIGS], reseller_id)


async def update_config(
    db: Database, scope: TenantScope, reseller_id: str, changes: dict[str, Any]
) -> dict[str, Any] | None:
    await db[CONFIGS].update_one({"_id": reseller_id}, {"$set": changes})
    return await get_config(db, scope, reseller_id)
