"""Tenant scoping, in one place: every repository query goes through `scoped`."""

from dataclasses import dataclass, field
from typing import Any, Literal

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
