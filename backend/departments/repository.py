from typing import Any

from backend.core.conditional import one_writer
from backend.core.db import Database
from backend.core.indexes import ASC, DESC, declare
from backend.core.tenancy import TenantScope
from backend.departments.models import Department

COLLECTION = "departments"

declare(
    COLLECTION,
    [("reseller_id", ASC), ("name_key", ASC)],
    name="tenant_name_unique",
    unique=True,
    purpose="one department per name in a tenant",
)
declare(COLLECTION, [("reseller_id", ASC), ("_id", DESC)], name="tenant_id", purpose="department list")


async def get(db: Database, scope: TenantScope, department_id: str) -> Department | None:
    return Department.load(await scope.get(db[COLLECTION], department_id))


async def insert(db: Database, department: Department) -> None:
    await db[COLLECTION].insert_one(department.stored())


async def list_page(
    db: Database, scope: TenantScope, *, before_id: str | None, limit: int, active: bool | None
) -> list[Department]:
    query = {"active": active} if active is not None else {}
    return await scope.page_by_id(db[COLLECTION], Department, query, before_id=before_id, limit=limit)


async def count_active_in(db: Database, scope: TenantScope, ids: list[str]) -> int:
    return await db[COLLECTION].count_documents(scope.filter({"_id": {"$in": ids}, "active": True}))


async def count_in(db: Database, scope: TenantScope, ids: list[str]) -> int:
    return await db[COLLECTION].count_documents(scope.filter({"_id": {"$in": ids}}))


async def update(db: Database, scope: TenantScope, department_id: str, changes: dict[str, Any]) -> Department | None:
    async with one_writer(db, COLLECTION, department_id):  # two people saving different fields at once
        await db[COLLECTION].update_one(scope.filter({"_id": department_id}), {"$set": changes})
    return await get(db, scope, department_id)
