"""Reads of a client's ticket history: its tickets in one tenant, newest first (index
tickets.tenant_client_created)."""

from datetime import datetime
from typing import Any

from backend.core.db import Database
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
    query = {"client_id": client_id, "_id": {"$ne": exclude_id}}
    return await scope.page_by_time(db[TICKETS], query, "created_at", before=before, limit=limit)
