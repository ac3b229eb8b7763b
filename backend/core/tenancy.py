"""Tenant scoping, in one place: every repository read of a tenant-owned collection takes a
`TenantScope` and starts from it (`scope.filter(...)` for queries, `scope.get(...)` by `_id`).
Reads that act for no user (workers, the sweep, migrations, scripts) are named `*_internal`;
tests/core/test_tenancy_form.py holds every repository to that rule."""

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from pymongo.asynchronous.collection import AsyncCollection

Role = Literal["admin", "reseller", "agent", "client"]

# Collections whose documents carry the owning reseller's id. Not here: `resellers` (the tenants
# themselves, the admin's), and the provider-side logs (webhook_events_raw, outbox*), which only
# the workers and operator scripts read.
TENANT_OWNED = frozenset(
    {
        "reseller_configs",
        "tickets",
        "messages",
        "users",
        "departments",
        "whatsapp_connections",
        "quick_replies",
        "ticket_tags",
        "ticket_events",
    }
)


@dataclass(frozen=True)
class TenantScope:
    """The tenants a read may return: one (`reseller_id`), or every one (`every`, the admin)."""

    reseller_id: str | None
    every: bool = False

    @classmethod
    def tenant(cls, reseller_id: str) -> "TenantScope":
        """One tenant's scope, for work done on a tenant's behalf with no user (a webhook, a worker)."""
        return cls(reseller_id)

    def filter(self, query: dict[str, Any] | None = None) -> dict[str, Any]:
        return {**(query or {})} if self.every else {**(query or {}), "reseller_id": self.reseller_id}

    def owns(self, reseller_id: str | None) -> bool:
        return self.every or reseller_id == self.reseller_id

    def allows(self, doc: dict[str, Any]) -> bool:
        return self.owns(doc.get("reseller_id"))

    async def get(self, collection: AsyncCollection[dict[str, Any]], doc_id: str) -> dict[str, Any] | None:
        """One document by `_id` alone, the tenant checked here rather than in the filter: `{_id}`
        is the only filter FerretDB hands to its index, so adding the tenant made it scan."""
        doc = await collection.find_one({"_id": doc_id})
        return doc if doc is not None and self.allows(doc) else None


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
        """Built once per request, with the actor: admins see every tenant, the rest their own."""
        return TenantScope(None, every=True) if self.is_admin else TenantScope(self.reseller_id)
