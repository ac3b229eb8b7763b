"""Queries on `whatsapp_connections`. Looked up by `_id` on the hot path (every webhook)."""

from typing import Any

from backend.connections.models import Connection
from backend.core import single_flight
from backend.core.db import Database
from backend.core.indexes import ASC, DESC, declare
from backend.core.tenancy import TenantScope

COLLECTION = "whatsapp_connections"

declare(COLLECTION, [("reseller_id", ASC), ("_id", DESC)], name="tenant_id", purpose="a tenant's connections")


async def get_internal(db: Database, connection_id: str) -> Connection | None:
    """For webhooks and the worker, which act for the provider, not for a user."""
    return Connection.load(await db[COLLECTION].find_one({"_id": connection_id}))


async def get_shared_internal(db: Database, connection_id: str) -> Connection | None:
    """`get_internal`, sharing the read with concurrent callers (webhook bursts, backend/core/single_flight.py)."""
    return Connection.load(await single_flight.find_by_id(db[COLLECTION], connection_id))


async def get(db: Database, scope: TenantScope, connection_id: str) -> Connection | None:
    return Connection.load(await scope.get(db[COLLECTION], connection_id))


async def insert(db: Database, connection: Connection) -> None:
    await db[COLLECTION].insert_one(connection.stored())


async def list_page(db: Database, scope: TenantScope, *, before_id: str | None, limit: int) -> list[Connection]:
    docs = await scope.page_by_id(db[COLLECTION], {}, before_id=before_id, limit=limit)
    return [Connection.model_validate(d) for d in docs]


async def update(db: Database, scope: TenantScope, connection_id: str, changes: dict[str, Any]) -> Connection:
    """Sets `changes` on a connection of `scope` (read before; never deleted) and reads it back."""
    await db[COLLECTION].update_one({"_id": connection_id}, {"$set": changes})
    updated = await get(db, scope, connection_id)
    assert updated is not None
    return updated
