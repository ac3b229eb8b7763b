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
# `reader_id`: set on a record meant for one user only (its own `ticket.read`, with its unread count).
SIDE_KEYS = ("reseller_id", *AUDIENCE_FIELDS, "reader_id")

# A record's audience in compact form, (tenant, after, before), each side the SIDE_KEYS values:
# tuples of strings and None, which the collector stops tracking (core/tuning.py, "Tuple tracking").
Side = tuple[Any, ...]
Audience = tuple[str | None, Side | None, Side | None]


def snapshot(reseller_id: str, ticket: dict[str, Any] | None, *, reader_id: str | None = None) -> dict[str, Any] | None:
    if ticket is None:
        return None
    side = {"reseller_id": reseller_id, **{f: ticket.get(f) for f in AUDIENCE_FIELDS}}
    return {**side, "reader_id": reader_id} if reader_id is not None else side


def compact(record: dict[str, Any]) -> Audience:
    audience = record.get("audience") or {}
    return record.get("reseller_id"), _side(audience.get("after")), _side(audience.get("before"))


def _side(side: dict[str, Any] | None) -> Side | None:
    return None if side is None else tuple([side.get(k) for k in SIDE_KEYS])


def may_receive(actor: Actor, record: dict[str, Any]) -> bool:
    return allows(actor, *compact(record))


def allows(actor: Actor, tenant: str | None, after: Side | None, before: Side | None) -> bool:
    if actor.is_admin or not actor.scope.owns(tenant):
        return False  # never another tenant; admins have no tenant feed
    sides = [s for s in (after, before) if s is not None]
    if not sides:
        # Not about a ticket (e.g. connection status): tenant-level news, for the reseller only.
        return actor.role == "reseller"
    return any(_sees(actor, dict(zip(SIDE_KEYS, side, strict=True))) for side in sides)


def _sees(actor: Actor, side: dict[str, Any]) -> bool:
    reader = side.get("reader_id")
    return (reader is None or reader == actor.id) and can_see(actor, side)
