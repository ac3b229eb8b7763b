"""`ticket_events`: the append-only log every ticket state change is written to first.

Each event's `_id` is "<ticket_id>:<version>". Inserting version v+1 is how a change claims the
ticket: exactly one writer can insert it (a unique `_id` on every store), so the log, not an
in-memory or read-modify-write check, decides concurrent assumes, transfers and finalizes.
"""

from datetime import datetime

from backend.core import group_commit
from backend.core.db import Database
from backend.core.indexes import ASC, declare
from backend.core.tenancy import TenantScope
from backend.tickets.models import TicketEvent, TicketState

COLLECTION = "ticket_events"

declare(
    COLLECTION,
    [("ticket_id", ASC), ("version", ASC)],
    name="ticket_version_unique",
    unique=True,
    purpose="a ticket's history in order; one event per version",
)
declare(COLLECTION, [("reseller_id", ASC), ("at", ASC)], name="tenant_at", purpose="tenant activity feed")
declare(COLLECTION, [("at", ASC)], name="at", purpose="the projection sweep: every ticket moved recently")


def event_id(ticket_id: str, version: int) -> str:
    return f"{ticket_id}:{version:010d}"


async def insert(db: Database, event: TicketEvent) -> None:
    """Raises DuplicateKeyError when another writer took this version first."""
    await group_commit.insert_one(db[COLLECTION], event.stored())


async def get_internal(db: Database, ticket_id: str, version: int) -> TicketEvent | None:
    doc = await db[COLLECTION].find_one({"_id": event_id(ticket_id, version)})
    return None if doc is None else TicketEvent.trusted(doc)


async def state_before_internal(db: Database, event: TicketEvent) -> TicketState | None:
    """The ticket's state before `event` (None before its creation)."""
    if event.version == 1:
        return None
    before = await get_internal(db, event.ticket_id, event.version - 1)
    assert before is not None, f"event {event.id} follows no event"  # versions have no holes
    return before.state


async def list_for_ticket(
    db: Database, scope: TenantScope, ticket_id: str, *, after_version: int, limit: int
) -> list[TicketEvent]:
    query = scope.filter({"ticket_id": ticket_id, "version": {"$gt": after_version}})
    docs = await db[COLLECTION].find(query).sort("version", ASC).limit(limit).to_list(length=limit)
    return [TicketEvent.trusted(doc) for doc in docs]


async def versions_since_internal(db: Database, since: datetime) -> dict[str, int]:
    """For each ticket with an event at or after `since`: its highest such version (the `at`
    index on MongoDB; a scan on FerretDB). Only those two fields travel."""
    newest: dict[str, int] = {}
    async for doc in db[COLLECTION].find({"at": {"$gte": since}}, {"ticket_id": 1, "version": 1, "_id": 0}):
        newest[doc["ticket_id"]] = max(doc["version"], newest.get(doc["ticket_id"], 0))
    return newest


async def all_for_tenant_internal(db: Database, reseller_id: str) -> dict[str, list[TicketEvent]]:
    """A tenant's whole log, per ticket in version order (the counters and reports checks,
    scripts/ticket_counts.py and reports_rebuild.py): a scan, never on a request path."""
    docs = await db[COLLECTION].find({"reseller_id": reseller_id}).to_list(None)
    chains: dict[str, list[TicketEvent]] = {}
    for doc in sorted(docs, key=lambda d: d["version"]):
        chains.setdefault(doc["ticket_id"], []).append(TicketEvent.trusted(doc))
    return chains
