"""Tenant scoping, in one place: every repository query goes through `scoped`."""

from dataclasses import dataclass, field
from typing import Any, Literal

from pymongo.asynchronous.collection import AsyncCollection

Role = Literal["admin", "reseller", "agent", "client"]


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


def tenant_filter(actor: Actor) -> dict[str, Any]:
    """Admins see every tenant; everyone else only their own reseller's documents."""
    if actor.is_admin:
        return {}
    return {"reseller_id": actor.reseller_id}


def scoped(actor: Actor, query: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**(query or {}), **tenant_filter(actor)}


def in_tenant(actor: Actor, doc: dict[str, Any]) -> bool:
    return actor.is_admin or doc.get("reseller_id") == actor.reseller_id


async def get_in_scope(collection: AsyncCollection[dict[str, Any]], actor: Actor, doc_id: str) -> dict[str, Any] | None:
    """One document by `_id` alone, tenant checked here rather than in the filter: `{_id}` is the
    only filter FerretDB hands to its index, so adding the tenant to the query made it scan."""
    doc = await collection.find_one({"_id": doc_id})
    return doc if doc is not None and in_tenant(actor, doc) else None
