"""Queries on `scheduled_messages`."""

from datetime import datetime
from typing import Any

from backend.core.db import Database
from backend.core.indexes import ASC, declare
from backend.core.schemas import readable
from backend.core.tenancy import TenantScope, readable_page
from backend.scheduled.models import ScheduledMessage

COLLECTION = "scheduled_messages"
WHAT = "scheduled message"  # how a document that does not read is logged (core.schemas.readable)

declare(
    COLLECTION,
    [("status", ASC), ("send_at", ASC)],
    name="status_send_at",
    purpose="the due pass: what is still scheduled, soonest first",
)
declare(
    COLLECTION,
    [("reseller_id", ASC), ("status", ASC), ("send_at", ASC)],
    name="tenant_status_send_at",
    purpose="a tenant's scheduled messages by status, soonest first (the Agendamentos list)",
)
declare(
    COLLECTION,
    [("reseller_id", ASC), ("ticket_id", ASC), ("send_at", ASC)],
    name="tenant_ticket_send_at",
    purpose="a ticket's scheduled messages",
)


async def insert(db: Database, schedule: ScheduledMessage) -> None:
    await db[COLLECTION].insert_one(schedule.stored())


async def get(db: Database, scope: TenantScope, schedule_id: str) -> ScheduledMessage | None:
    return ScheduledMessage.load(await scope.get(db[COLLECTION], schedule_id))


async def get_internal(db: Database, schedule_id: str) -> ScheduledMessage | None:
    return ScheduledMessage.load(await db[COLLECTION].find_one({"_id": schedule_id}))


async def for_ticket(db: Database, scope: TenantScope, ticket_id: str, *, limit: int) -> list[ScheduledMessage]:
    cursor = db[COLLECTION].find(scope.filter({"ticket_id": ticket_id})).sort([("send_at", 1), ("_id", 1)]).limit(limit)
    # Read by the finalize hook (service.after_finalize): one bad document must not stop the rest.
    return readable(ScheduledMessage, await cursor.to_list(length=limit), what=WHAT)


async def page(
    db: Database, scope: TenantScope, query: dict[str, Any], *, after: tuple[datetime, str] | None, limit: int
) -> list[ScheduledMessage]:
    """Soonest (`send_at`, `_id`) first, strictly after `after` when given (`_soonest_first`)."""
    return await _soonest_first(db, scope.filter(query), after=after, limit=limit)


async def due_internal(
    db: Database, now: datetime, *, after: tuple[datetime, str] | None = None, limit: int
) -> list[ScheduledMessage]:
    """Every tenant's schedules whose time has come and that are still scheduled, soonest first
    (strictly after `after`, a (`send_at`, `_id`) the caller read last, when given), up to `limit`
    of them. A document that does not read as a schedule is logged and passed over (it stays
    "scheduled", so `iaze_scheduled_overdue_seconds` keeps rising until an operator mends it): one
    tenant's bad document must not stop every tenant's due pass, at every pass. The read goes on
    past such documents, so however many there are they do not fill the batch."""
    return await _soonest_first(db, {"status": "scheduled", "send_at": {"$lte": now}}, after=after, limit=limit)


async def _soonest_first(
    db: Database, query: dict[str, Any], *, after: tuple[datetime, str] | None, limit: int
) -> list[ScheduledMessage]:
    """Up to `limit` of `query`'s schedules that read, soonest first, strictly after `after`
    (core.tenancy.readable_page). A slip's `send_at` that is no time sorts before every time, and
    "after" it would reach no time: the read goes on from the times."""

    async def read(last: dict[str, Any] | None, n: int) -> list[dict[str, Any]]:
        start = after if last is None else (last.get("send_at"), last["_id"])
        if start is None:
            bound = query
        elif isinstance(at := start[0], datetime):
            bound = {"$and": [query, _after((at, start[1]))]}
        else:
            bound = {"$and": [query, {"send_at": {"$type": "date"}}]}
        return await db[COLLECTION].find(bound).sort([("send_at", 1), ("_id", 1)]).limit(n).to_list(length=n)

    return await readable_page(read, ScheduledMessage, limit, what=WHAT)


def _after(last: tuple[datetime, str]) -> dict[str, Any]:
    at, last_id = last
    return {"$or": [{"send_at": {"$gt": at}}, {"send_at": at, "_id": {"$gt": last_id}}]}


async def soonest_waiting_internal(db: Database) -> datetime | None:
    """The time of every tenant's soonest schedule still waiting, or None."""
    found = await db[COLLECTION].find_one({"status": "scheduled"}, sort=[("send_at", 1)], projection={"send_at": 1})
    return None if found is None else found["send_at"]


async def settle_internal(db: Database, schedule_id: str, changes: dict[str, Any]) -> None:
    """Writes what the schedule's outcome key decided (service.settle): every writer writes the
    same, so two at once cannot undo each other's outcome."""
    await db[COLLECTION].update_one({"_id": schedule_id}, {"$set": changes})
