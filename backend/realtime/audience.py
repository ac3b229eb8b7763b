"""Who receives a feed record: THE audience rule for realtime delivery.

A record keeps the ticket's visibility-relevant fields after the change (`audience.after`) and
before it (`audience.before`). A user receives the record when it may see the ticket on either
side of the change — so an agent is told when a ticket enters its view and when it leaves it
(assumed by someone else, transferred away). Ticket visibility itself is the REST rule
(tickets.visibility.can_see), so lists and the live feed can never disagree.
"""

from typing import Any

from backend.core.tenancy import Actor
from backend.tickets.models import Ticket
from backend.tickets.visibility import Seen, can_see

AUDIENCE_FIELDS = ("status", "department_id", "agent_id", "finalized_by", "client_id")
# `reader_id`: set on a record meant for one user only (its own `ticket.read`, with its unread count).
SIDE_KEYS = ("reseller_id", *AUDIENCE_FIELDS, "reader_id")

# A record's audience in compact form, (tenant, after, before), each side the SIDE_KEYS values:
# tuples of strings and None, which the collector stops tracking (core/tuning.py, "Tuple tracking").
Side = tuple[Any, ...]
Audience = tuple[str | None, Side | None, Side | None]


def snapshot(reseller_id: str, ticket: Ticket | None, *, reader_id: str | None = None) -> dict[str, Any] | None:
    if ticket is None:
        return None
    side = {"reseller_id": reseller_id, **{f: getattr(ticket, f) for f in AUDIENCE_FIELDS}}
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
    return any(_sees(actor, side) for side in sides)


def _sees(actor: Actor, side: Side) -> bool:
    *seen, reader = side  # SIDE_KEYS: the ticket's side, then the reader
    return (reader is None or reader == actor.id) and can_see(actor, Seen(*seen))
