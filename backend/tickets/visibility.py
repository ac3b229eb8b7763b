"""Who may see which tickets, finer than the tenant: the query form (lists, counts) and the
document form (one ticket) side by side, so the two can never drift apart. Both start from the
actor's TenantScope (backend/core/tenancy.py): the repository applies it to the query form."""

from typing import Any, NamedTuple

from backend.core.tenancy import Actor
from backend.tickets.models import Ticket
from backend.tickets.states import Status


class Seen(NamedTuple):  # what sight reads of a ticket, as a feed record keeps it (realtime.audience)
    reseller_id: str | None
    status: str | None
    department_id: str | None
    agent_id: str | None
    finalized_by: str | None
    client_id: str | None


def visible_query(actor: Actor) -> dict[str, Any]:
    """The part of the filter finer than the tenant; tickets.repository adds `actor.scope`."""
    query: dict[str, Any] = {}
    if actor.role == "agent":
        query["$or"] = [
            {"status": Status.ESPERA.value, "department_id": {"$in": list(actor.department_ids)}},
            {"agent_id": actor.id},
            {"finalized_by": actor.id},
        ]
    elif actor.role == "client":
        query["client_id"] = actor.id
    return query


def can_see(actor: Actor, ticket: Ticket | Seen) -> bool:
    if not actor.scope.owns(ticket.reseller_id):
        return False
    if actor.role == "agent":
        return (
            (ticket.status == Status.ESPERA.value and ticket.department_id in actor.department_ids)
            or ticket.agent_id == actor.id
            or ticket.finalized_by == actor.id
        )
    if actor.role == "client":
        return ticket.client_id == actor.id
    return True


def can_act_on(actor: Actor, ticket: Ticket | Seen) -> bool:
    """Actions reach a bit further than sight: an agent of the ticket's department gets a 409
    naming the winner when it was assumed a moment earlier, not a 404."""
    return can_see(actor, ticket) or (
        actor.role == "agent" and actor.scope.owns(ticket.reseller_id) and ticket.department_id in actor.department_ids
    )
