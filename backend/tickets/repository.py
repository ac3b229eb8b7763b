"""Queries on `tickets`. The ticket document is a projection of its `ticket_events`."""

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from backend.core import group_commit
from backend.core.conditional import update_if
from backend.core.db import Database
from backend.core.indexes import ASC, DESC, declare
from backend.core.tenancy import TenantScope, readable_page
from backend.tickets.models import Ticket, TicketState
from backend.tickets.states import OPEN_STATES

if TYPE_CHECKING:  # projection.py builds on this module
    from backend.tickets.projection import Activity

COLLECTION = "tickets"
COUNTERS = "counters"

declare(
    COLLECTION,
    [("reseller_id", ASC), ("status", ASC), ("last_message_at", DESC), ("_id", DESC)],
    name="inbox_tenant_status_activity",
    purpose="reseller inbox: a tenant's tickets in one state, newest activity first",
)
declare(
    COLLECTION,
    [("reseller_id", ASC), ("department_id", ASC), ("status", ASC), ("last_message_at", DESC), ("_id", DESC)],
    name="inbox_department_status_activity",
    purpose="agent queue: espera tickets of a department, newest activity first",
)
declare(
    COLLECTION,
    [("reseller_id", ASC), ("agent_id", ASC), ("status", ASC), ("last_message_at", DESC), ("_id", DESC)],
    name="inbox_agent_status_activity",
    purpose="an agent's own tickets in one state, newest activity first",
)
declare(
    COLLECTION,
    [("reseller_id", ASC), ("last_message_at", DESC), ("_id", DESC)],
    name="inbox_tenant_activity",
    purpose="a tenant's tickets in every state (no status filter), newest activity first",
)
declare(
    COLLECTION,
    [("reseller_id", ASC), ("finalized_by", ASC), ("status", ASC), ("last_message_at", DESC), ("_id", DESC)],
    name="inbox_finalized_by_status_activity",
    purpose="the agent's branch for tickets it finalized without holding them",
)
declare(
    COLLECTION,
    [("reseller_id", ASC), ("number", ASC)],
    name="tenant_number_unique",
    unique=True,
    purpose="ticket number unique per tenant",
)
declare(
    COLLECTION,
    [("reseller_id", ASC), ("client_id", ASC), ("created_at", DESC)],
    name="tenant_client_created",
    purpose="a client's ticket history",
)


async def get_internal(db: Database, ticket_id: str) -> Ticket | None:
    """The projection as stored, for projection.settle: users' reads go through tickets.visibility."""
    return Ticket.load(await db[COLLECTION].find_one({"_id": ticket_id}))


async def insert(db: Database, ticket: Ticket) -> None:
    await group_commit.insert_one(db[COLLECTION], ticket.stored())


async def apply_state(
    db: Database, ticket_id: str, *, from_version: int, version: int, state: TicketState, at: datetime
) -> bool:
    """Move the projection to `version`; a no-op (False) when another writer already applied it.
    Callers then settle (projection.py): on FerretDB this write can put back a concurrent activity."""
    update = {"$set": {**dict(state), "version": version, "updated_at": at}}
    return await update_if(db, COLLECTION, ticket_id, {"version": from_version}, update) is not None


async def touch_activity(db: Database, ticket: Ticket, *, activity: "Activity") -> Ticket | None:
    """Moves the ticket's last-message fields forward (never back). `ticket`: as just loaded.
    Returns the document as this write left it (None: a newer activity is shown, nothing
    written), which callers hand to projection.settle as its first read: on FerretDB this write
    can put back an older status, which the settle's read of the event log repairs."""
    guard, shown = {"last_message_at": {"$lte": activity.at}}, {"last_message_at": ticket.last_message_at}
    return Ticket.load(await update_if(db, COLLECTION, ticket.id, guard, {"$set": activity.fields()}, current=shown))


async def _find(db: Database, scope: TenantScope, query: dict[str, Any]) -> list[Ticket]:
    return [Ticket.model_validate(d) for d in await db[COLLECTION].find(scope.filter(query)).to_list(length=None)]


async def open_of_client(db: Database, scope: TenantScope, client_id: str) -> list[Ticket]:
    """A client's open tickets on every channel (a rare look-up: a merge's check; a scan on FerretDB)."""
    return await _find(db, scope, {"client_id": client_id, "status": {"$in": [s.value for s in OPEN_STATES]}})


async def for_client_on_channel(db: Database, scope: TenantScope, client_id: str, channel: str) -> list[Ticket]:
    """A client's tickets on one channel, oldest slot first (a rare look-up: clients from before
    the per-channel slot hint, see tickets.service)."""
    found = await _find(db, scope, {"client_id": client_id, "channel": channel})
    return sorted(found, key=lambda t: t.open_slot)


async def reopened_from(db: Database, scope: TenantScope, ticket: Ticket) -> list[Ticket]:
    """The tickets "Reabrir" opened pointing back to `ticket`, earliest slot first: the same client
    and channel (index tenant_client_created), born with `reopened_from_ticket_id` (tickets.links)."""
    query = {"client_id": ticket.client_id, "channel": ticket.channel, "reopened_from_ticket_id": ticket.id}
    return sorted(await _find(db, scope, query), key=lambda t: (t.open_slot, t.id))


@dataclass(frozen=True)
class HeldPage:
    """One page of `held_by`: the tickets that read, how many documents did not (logged and passed
    over: core.tenancy.readable_page), and where the next page starts (the last ticket), None once
    the page was not full: nothing after it."""

    tickets: list[Ticket]
    passed_over: int
    next_after: str | None


async def held_by(
    db: Database, scope: TenantScope, agent_id: str, *, status: str, after_id: str | None, limit: int
) -> HeldPage:
    """The tickets `agent_id` holds in `status`, by `_id` after `after_id` (index
    inbox_agent_status_activity: a person holds a handful of tickets, not thousands)."""

    async def read(last: dict[str, Any] | None, n: int) -> list[dict[str, Any]]:
        start = after_id if last is None else last["_id"]
        query = {"agent_id": agent_id, "status": status, **({"_id": {"$gt": start}} if start else {})}
        return await db[COLLECTION].find(scope.filter(query)).sort("_id", ASC).limit(n).to_list(length=n)

    bad: list[str] = []
    held = await readable_page(read, Ticket, limit, what="ticket", unreadable=bad)
    return HeldPage(held, len(bad), held[-1].id if len(held) == limit else None)


async def list_page(
    db: Database, scope: TenantScope, query: dict[str, Any], *, after: tuple[datetime, str] | None, limit: int
) -> list[Ticket]:
    """`query`: what is finer than the tenant (tickets.visibility, the inbox filters). Up to
    `limit` tickets, newest activity first, strictly before `after`. One that does not read is
    passed over (`TenantScope.page_by_time`) rather than failing the inbox of everyone who sees it."""
    return await scope.page_by_time(db[COLLECTION], Ticket, query, "last_message_at", before=after, limit=limit)


async def count(db: Database, scope: TenantScope, query: dict[str, Any]) -> int:
    return await db[COLLECTION].count_documents(scope.filter(query))


async def next_number(db: Database, reseller_id: str) -> int:
    """A candidate number; callers claim it through a unique key, since $inc is not atomic on FerretDB."""
    key, bump = {"_id": f"ticket-number:{reseller_id}"}, {"$inc": {"seq": 1}}
    try:
        doc = await db[COUNTERS].find_one_and_update(key, bump, upsert=True, return_document=ReturnDocument.AFTER)
    except DuplicateKeyError:  # two first tickets of a tenant both upserted the missing counter: it exists now
        doc = await db[COUNTERS].find_one_and_update(key, bump, upsert=True, return_document=ReturnDocument.AFTER)
    assert doc is not None
    return int(doc["seq"])


async def raise_counter(db: Database, reseller_id: str, number: int) -> None:
    """Keep the counter at or past a number claimed by probing, so later candidates start there.
    Only a hint: a lost update here costs a later creator a few extra probes, never a duplicate."""
    await db[COUNTERS].update_one({"_id": f"ticket-number:{reseller_id}"}, {"$max": {"seq": number}})


async def client_tickets(
    db: Database,
    scope: TenantScope,
    *,
    client_ids: list[str],
    exclude_id: str,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[Ticket]:
    """A client's tickets (with those of the clients merged into it) in the scope but
    `exclude_id`, newest first (index tenant_client_created)."""
    query = {"client_id": {"$in": client_ids}, "_id": {"$ne": exclude_id}}
    return await scope.page_by_time(db[COLLECTION], Ticket, query, "created_at", before=before, limit=limit)
