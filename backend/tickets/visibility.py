"""Who may see which tickets: the query form (lists, counts) and the document form (one ticket)
side by side, so the two can never drift apart."""

from typing import Any

from backend.core.tenancy import Actor, in_tenant, tenant_filter
from backend.tickets.states import Status


def visible_query(actor: Actor) -> dict[str, Any]:
    query = tenant_filter(actor)
    if actor.role == "agent":
        query["$or"] = [
            {"status": Status.ESPERA.value, "department_id": {"$in": list(actor.department_ids)}},
            {"agent_id": actor.id},
            {"finalized_by": actor.id},
        ]
    elif actor.role == "client":
        query["client_id"] = actor.id
    return query


def can_see(actor: Actor, ticket: dict[str, Any]) -> bool:
    if not in_tenant(actor, ticket):
        return False
    if actor.role == "agent":
        return (
            (ticket["status"] == Status.ESPERA.value and ticket["department_id"] in actor.department_ids)
            or ticket.get("agent_id") == actor.id
            or ticket.get("finalized_by") == actor.id
        )
    if actor.role == "client":
        return bool(ticket.get("client_id") == actor.id)
    return True


def can_act_on(actor: Actor, ticket: dict[str, Any]) -> bool:
    """Actions reach a bit further than sight: an agent of the ticket's department gets a 409
    naming the winner when it was assumed a moment earlier, not a 404."""
    if can_see(actor, ticket):
        return True
    return (
        actor.role == "agent"
        and ticket.get("reseller_id") == actor.reseller_id
        and ticket["department_id"] in actor.department_ids
    )
