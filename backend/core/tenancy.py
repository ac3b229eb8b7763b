"""Tenant scoping, in one form: every repository read of a tenant-owned collection takes a
`TenantScope` and starts from it; reads done for no user are named `*_internal`
(tests/core/test_tenancy_form.py holds every repository to it; docs/ARCHITECTURE.md, Tenancy)."""

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

Role = Literal["admin", "reseller", "agent", "client"]
Doc = dict[str, Any]

# Collections whose documents carry the owning reseller's id. Not here: `resellers` (the tenants
# themselves) and the provider-side logs (webhook_events_raw, outbox*), read by workers only.
_CONVERSATIONS = ("tickets", "messages", "ticket_events", "ticket_tags")
_PEOPLE_AND_SETUP = ("users", "departments", "quick_replies", "whatsapp_connections", "reseller_configs")
TENANT_OWNED = frozenset(_CONVERSATIONS + _PEOPLE_AND_SETUP)


@dataclass(frozen=True)
class TenantScope:
    """The tenants a read may return: one (`reseller_id`, also built from a known tenant for work
    done with no user, e.g. a webhook's connection), or every one (`every`: the admin)."""

    reseller_id: str | None
    every: bool = False

    def owns(self, reseller_id: str | None) -> bool:
        return self.every or reseller_id == self.reseller_id

    def filter(self, query: Doc | None = None) -> Doc:
        return {**(query or {})} if self.every else {**(query or {}), "reseller_id": self.reseller_id}

    async def get(self, collection: AsyncCollection[Doc], doc_id: str) -> Doc | None:
        """By `_id` alone, the tenant checked on the document: `{_id}` is the only filter FerretDB
        hands to its index, so adding the tenant to the query made it scan."""
        doc = await collection.find_one({"_id": doc_id})
        return doc if doc is not None and self.owns(doc.get("reseller_id")) else None

    async def page_by_id(
        self, collection: AsyncCollection[Doc], query: Doc, *, before_id: str | None, limit: int
    ) -> list[Doc]:
        """Newest `_id` first, below `before_id` when given (the id-cursor lists)."""
        scoped = self.filter({**query, "_id": {"$lt": before_id}} if before_id else query)
        return await collection.find(scoped).sort("_id", DESCENDING).limit(limit).to_list(length=limit)

    async def page_by_time(
        self, collection: AsyncCollection[Doc], query: Doc, key: str, *, before: tuple[datetime, str] | None, limit: int
    ) -> list[Doc]:
        """Newest (`key`, `_id`) first, strictly before `before` when given (the time-cursor lists)."""
        scoped = self.filter(query)
        if before is not None:
            at, last_id = before
            scoped = {"$and": [scoped, {"$or": [{key: {"$lt": at}}, {key: at, "_id": {"$lt": last_id}}]}]}
        cursor = collection.find(scoped).sort([(key, DESCENDING), ("_id", DESCENDING)]).limit(limit)
        return await cursor.to_list(length=limit)


@dataclass(frozen=True)
class Actor:
    """The authenticated user a request acts for."""

    id: str
    role: Role
    name: str
    reseller_id: str | None = None
    department_ids: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @cached_property
    def scope(self) -> TenantScope:
        """Built once per request, with the principal: admins see every tenant, the rest their own."""
        return TenantScope(None, every=True) if self.is_admin else TenantScope(self.reseller_id)
