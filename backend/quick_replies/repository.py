"""Queries on `quick_replies`."""

from typing import Any

from backend.core.db import Database
from backend.core.indexes import ASC, declare
from backend.core.tenancy import TenantScope
from backend.quick_replies.models import QuickReply

COLLECTION = "quick_replies"

declare(
    COLLECTION,
    [("reseller_id", ASC), ("owner", ASC), ("shortcut_key", ASC)],
    name="tenant_owner_shortcut_unique",
    unique=True,
    purpose="one active shortcut per owner (the tenant, or one agent); arbitrates concurrent creates",
)


async def get(db: Database, scope: TenantScope, reply_id: str) -> QuickReply | None:
    return QuickReply.load(await scope.get(db[COLLECTION], reply_id))


async def insert(db: Database, reply: QuickReply) -> None:
    await db[COLLECTION].insert_one(reply.stored())


async def list_for(db: Database, scope: TenantScope, *, owners: list[str], active: bool | None) -> list[QuickReply]:
    """Every reply of the given owners in scope, by shortcut. Small by nature (tens)."""
    query = scope.filter({"owner": {"$in": owners}})
    if active is not None:
        query["active"] = active
    replies = [QuickReply.model_validate(d) async for d in db[COLLECTION].find(query)]
    return sorted(replies, key=lambda r: (r.shortcut_key, r.id))


async def update(db: Database, scope: TenantScope, reply_id: str, changes: dict[str, Any]) -> QuickReply | None:
    await db[COLLECTION].update_one(scope.filter({"_id": reply_id}), {"$set": changes})
    return await get(db, scope, reply_id)
