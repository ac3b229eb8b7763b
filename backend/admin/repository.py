"""Counts across one tenant for the admin overview (the `tenant_created` index on MongoDB; a scan
on FerretDB — an admin's page, never a hot path)."""

from datetime import datetime

from backend.core.db import Database
from backend.core.tenancy import TenantScope

MESSAGES = "messages"


async def count_messages(db: Database, scope: TenantScope, *, start: datetime, end: datetime, direction: str) -> int:
    query = scope.filter({"created_at": {"$gte": start, "$lt": end}, "direction": direction})
    return await db[MESSAGES].count_documents(query)
