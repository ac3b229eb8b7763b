"""Who receives a feed record: THE audience rule for realtime delivery.

A record keeps the ticket's visibility-relevant fields after the change (`audience.after`) and
before it (`audience.before`). A user receives the record when it may see the ticket on either
side of the change — so an agent is told when a ticket enters its view and when it leaves it
(assumed by someone else, transferred away). Ticket visibility itself is the REST rule
(tickets.visibility.can_see), so lists and the live feed can never disagree.
"""

from typing import Any

from backend.core.tenancy import Actor
from backend.tickets.visibility import can_see

AUDIENCE_FIELDS = ("status", "department_id", "agent_id", "finalized_by", "client_id")


def snapshot(reseller_id: str, ticket: dict[str, Any] | None) -> dict[str, Any] | None:
    if ticket is None:
        return None
    return {"reseller_id": reseller_id, **{f: ticket.get(f) for f in AUDIENCE_FIELDS}}


def may_receive(actor: Actor, record: dict[str, Any]) -> bool:
    if actor.is_admin or actor.reseller_id != record.get("reseller_id"):
        return False  # never another tenant; admins have no tenant feed
    audience = record.get("audience") or {}
    sides = [s for s in (audience.get("after"), audience.get("before")) if s is not None]
    if not sides:
        # Not about a ticket (e.g. connection status): tenant-level news, for the reseller only.
        return actor.role == "reseller"
    return any(can_see(actor, side) for side in sides)
