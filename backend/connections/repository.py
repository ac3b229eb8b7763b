"""Queries on `whatsapp_connections`. Looked up by `_id` on the hot path (every webhook)."""

from typing import Any

from backend.core import single_flight
from backend.core.db import Database
from backend.core.indexes import ASC, DESC, declare
from backend.core.tenancy import TenantScope

COLLECTION = "whatsapp_connections"

declare(COLLECTION, [("reseller_id", ASC), ("_id", DESC)], name="tenant_id", purpose="a tenant's connections")


async def get_internal(db: Database, connection_id: str) -> dict[str, Any] | None:
    """For webhooks and the worker, which act for the provider, not for a user."""
    return await db[COLLECTION].find_one({"_id": connection_id})


async def get_shared_internal(db: Database, connection_id: str) -> dict[str, Any] | None:
    """`get_internal`, sharing the read with concurrent callers (webhook bursts, backend/core/single_flight.py)."""
    return await single_flight.find_by_id(db[COLLECTION], connection_id)


async def get(db: Database, scope: TenantScope, connection_id: str) -> dict[str, Any] | None:
    return await scope.get(db[COLLECTION], connection_id)


async def insert(db: Database, doc: dict[str, Any]) -> None:
    await db[COLLECTION].insert_one(doc)


async def list_page(db: Database, scope: TenantScope, *, before_id: str | None, limit: int) -> list[dict[str, Any]]:
    return await scope.page_by_id(db[COLLECTION], {}, before_id=before_id, limit=limit)


async def update(
    db: Database, scope: TenantScope, connection_id: str, changes: dict[str, Any]
) -> dict[str, Any] | None:
    await db[COLLECTION].update_one({"_id": connection_id}, {"$set": changes})
    return await get(db, scope, connection_id)
