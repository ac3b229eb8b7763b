"""Queries on `ticket_tags`: a ticket's tags kept beside the ticket, not in it. The ticket
document is the event log's projection, and on FerretDB every update writes the whole document
back, so a tag write there could undo a concurrent projection write (or be undone by one)."""

import asyncio

from pymongo.errors import DuplicateKeyError

from backend.core.db import Database
from backend.core.indexes import ASC, declare
from backend.core.tenancy import TenantScope
from backend.tags.models import TicketTags

COLLECTION = "ticket_tags"

declare(COLLECTION, [("reseller_id", ASC), ("tags", ASC)], name="tenant_tags", purpose="tickets with a tag")


async def put(db: Database, tagged: TicketTags) -> None:
    try:
        await db[COLLECTION].insert_one(tagged.stored())
    except DuplicateKeyError:  # tagged before: its tags and who changed them set, the tenant kept
        await db[COLLECTION].update_one({"_id": tagged.id}, {"$set": tagged.model_dump(exclude={"id", "reseller_id"})})


async def tags_of(db: Database, scope: TenantScope, ticket_ids: list[str]) -> dict[str, list[str]]:
    """One `_id` look-up per ticket: the one query FerretDB serves from an index."""
    ids = list(dict.fromkeys(ticket_ids))
    found = await asyncio.gather(*(scope.get(db[COLLECTION], i) for i in ids))
    return {t.id: t.tags for t in map(TicketTags.load, found) if t is not None and t.tags}


async def ticket_ids_with(db: Database, scope: TenantScope, tag: str, *, limit: int) -> list[str]:
    docs = await db[COLLECTION].find(scope.filter({"tags": tag}), projection={"_id": 1}).to_list(limit)
    return [d["_id"] for d in docs]


async def distinct_tags(db: Database, scope: TenantScope) -> list[str]:
    return [str(t) for t in await db[COLLECTION].distinct("tags", scope.filter())]
