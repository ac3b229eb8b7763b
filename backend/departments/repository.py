from typing import Any

from backend.core.db import Database
from backend.core.indexes import ASC, DESC, declare
from backend.core.tenancy import TenantScope

COLLECTION = "departments"

declare(
    COLLECTION,
    [("reseller_id", ASC), ("name_key", ASC)],
    name="tenant_name_unique",
    unique=True,
    purpose="one department per name in a tenant",
)
declare(COLLECTION, [("reseller_id", ASC), ("_id", DESC)], name="tenant_id", purpose="department list")


async def get(db: Database, scope: TenantScope, department_id: str) -> dict[str, Any] | None:
    return await scope.get(db[COLLECTION], department_id)


async def insert(db: Database, doc: dict[str, Any]) -> None:
    await db[COLLECTION].insert_one(doc)


async def list_page(
    db: Database, scope: TenantScope, *, before_id: str | None, limit: int, active: bool | None
) -> list[dict[str, Any]]:
    query = {"active": active} if active is not None else {}
    return await scope.page_by_id(db[COLLECTION], query, before_id=before_id, limit=limit)


async def count_active_in(db: Database, scope: TenantScope, ids: list[str]) -> int:
    return await db[COLLECTION].count_documents(scope.filter({"_id": {"$in": ids}, "active": True}))


async def update(
    db: Database, scope: TenantScope, department_id: str, changes: dict[str, Any]
) -> dict[str, Any] | None:
    await db[COLLECTION].update_one(scope.filter({"_id": department_id}), {"$set": changes})
    return await scope.get(db[COLLECTION], department_id)
