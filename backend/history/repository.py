"""Reads of a client's ticket history: its tickets in one tenant, newest first (index
tickets.tenant_client_created)."""

from datetime import datetime
from typing import Any

from backend.core.db import Database
from backend.core.indexes import DESC
from backend.core.tenancy import TenantScope

TICKETS = "tickets"


async def client_tickets(
    db: Database,
    scope: TenantScope,
    *,
    client_id: str,
    exclude_id: str,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    query: dict[str, Any] = scope.filter({"client_id": client_id, "_id": {"$ne": exclude_id}})
    if before is not None:
        at, last_id = before
        query = {"$and": [query, {"$or": [{"created_at": {"$lt": at}}, {"created_at": at, "_id": {"$lt": last_id}}]}]}
    cursor = db[TICKETS].find(query).sort([("created_at", DESC), ("_id", DESC)]).limit(limit)
    return await cursor.to_list(length=limit)
