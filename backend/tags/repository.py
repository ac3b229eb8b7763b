"""Queries on `ticket_tags`: a ticket's tags kept beside the ticket, not in it. The ticket
document is the event log's projection, and on FerretDB every update writes the whole document
back, so a tag write there could undo a concurrent projection write (or be undone by one)."""

import asyncio
from typing import Any

from backend.core.db import Database
from backend.core.indexes import ASC, declare
from backend.core.tenancy import TenantScope

COLLECTION = "ticket_tags"

declare(COLLECTION, [("reseller_id", ASC), ("tags", ASC)], name="tenant_tags", purpose="tickets with a tag")


async def put(db: Database, *, ticket_id: str, reseller_id: str, tags: list[str], changes: dict[str, Any]) -> None:
    await db[COLLECTION].update_one(
        {"_id": ticket_id},
        {"$set": {"tags": tags, **changes}, "$setOnInsert": {"reseller_id": reseller_id}},
        upsert=True,
    )


async def tags_of(db: Database, scope: TenantScope, ticket_ids: list[str]) -> dict[str, list[str]]:
    """One `_id` look-up per ticket: the one query FerretDB serves from an index."""
    ids = list(dict.fromkeys(ticket_ids))
    projection = {"tags": 1, "reseller_id": 1}
    docs = await asyncio.gather(*(db[COLLECTION].find_one({"_id": i}, projection=projection) for i in ids))
    return {i: list(d["tags"]) for i, d in zip(ids, docs, strict=True) if d and d.get("tags") and scope.allows(d)}


async def ticket_ids_with(db: Database, scope: TenantScope, tag: str, *, limit: int) -> list[str]:
    docs = await db[COLLECTION].find(scope.filter({"tags": tag}), projection={"_id": 1}).to_list(limit)
    return [d["_id"] for d in docs]


async def distinct_tags(db: Database, scope: TenantScope) -> list[str]:
    return [str(t) for t in await db[COLLECTION].distinct("tags", scope.filter())]
