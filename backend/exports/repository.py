"""The reads behind the CSV exports: a tenant's tickets opened, and messages written, in a period,
each walked by one server-side cursor in batches; and, per batch of tickets, what the rows need
from their threads and logs.

One cursor per export, not a keyset query per page: FerretDB pushes down no filter but `_id`
equality and no sort, so each page query would rescan and resort the whole collection (an export
of n rows would cost n / batch scans); one cursor costs one. On MongoDB the `tenant_created`
indexes serve the filter and the order, and the cursor hands out `batch` documents per getMore,
so this process holds one batch at a time whatever the period's size. Where it ends: a client
that stops reading for longer than the server's idle-cursor timeout (10 minutes on MongoDB) gets
the connection closed mid-file, never a silently shortened one.
"""

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, TypeVar

from backend.core.db import Database
from backend.core.indexes import ASC, declare
from backend.core.schemas import StoredModel, readable
from backend.core.tenancy import TenantScope
from backend.exports.models import AssumeMark, MessageRow, TicketRow, fields_of
from backend.messages.models import Message
from backend.reports.schemas import ReportFilters

TICKETS = "tickets"
MESSAGES = "messages"
EVENTS = "ticket_events"
DEPARTMENTS = "departments"
NOTE_DIRECTION = "note"

declare(
    TICKETS,
    [("reseller_id", ASC), ("created_at", ASC)],
    name="tenant_created",
    purpose="exports: a tenant's tickets opened in a period, oldest first",
)

Doc = dict[str, Any]
Row = TypeVar("Row", bound=StoredModel)


async def _batches(
    db: Database, collection: str, query: Doc, row: type[Row], *, batch: int
) -> AsyncIterator[list[Row]]:
    cursor = db[collection].find(query, fields_of(row), batch_size=batch).sort("created_at", ASC)
    page: list[Row] = []
    try:
        async for doc in cursor:
            # One bad document must not end the file mid-stream for everything after it.
            page.extend(readable(row, [doc], what=collection))
            if len(page) == batch:
                yield page
                page = []
        if page:
            yield page
    finally:
        await cursor.close()


# The stored fields each filter reads: a ticket's department, holder and connection (`channel`)
# as they are now; a message's as stamped when it was written (messages.append).
FILTER_FIELDS = {"department_id": "department_id", "agent_id": "agent_id", "connection_id": "channel"}


def _narrowed(query: Doc, filters: ReportFilters) -> Doc:
    """`query` with an equality per filter given."""
    for name, stored in FILTER_FIELDS.items():
        value = getattr(filters, name)
        if value is not None:
            query[stored] = value
    return query


def tickets_opened(
    db: Database, scope: TenantScope, *, start: datetime, end: datetime, filters: ReportFilters, batch: int
) -> AsyncIterator[list[TicketRow]]:
    """The tenant's tickets opened in [start, end) inside the filters, oldest first, `batch` at a time."""
    query = scope.filter(_narrowed({"created_at": {"$gte": start, "$lt": end}}, filters))
    return _batches(db, TICKETS, query, TicketRow, batch=batch)


def messages_written(
    db: Database, scope: TenantScope, *, start: datetime, end: datetime, filters: ReportFilters, batch: int
) -> AsyncIterator[list[MessageRow]]:
    """The tenant's conversation messages written in [start, end) inside the filters, oldest first;
    internal notes are not part of it (staff remarks, never shown to the client)."""
    written = {"created_at": {"$gte": start, "$lt": end}, "direction": {"$ne": NOTE_DIRECTION}}
    query = scope.filter(_narrowed(written, filters))
    return _batches(db, MESSAGES, query, MessageRow, batch=batch)


async def thread_marks(db: Database, scope: TenantScope, ticket_ids: list[str]) -> list[Message]:
    """Who wrote what when in these tickets, those fields only (trusted; no bodies): enough for
    first-response times. The `ticket_created` index on MongoDB; a scan on FerretDB."""
    query = scope.filter({"ticket_id": {"$in": ticket_ids}, "direction": {"$ne": NOTE_DIRECTION}})
    fields = {"ticket_id": 1, "sender_type": 1, "direction": 1, "created_at": 1}
    return [Message.trusted(doc) async for doc in db[MESSAGES].find(query, fields)]


async def assume_events(db: Database, scope: TenantScope, ticket_ids: list[str]) -> list[AssumeMark]:
    """The assume events of these tickets (the `ticket_version_unique` index on MongoDB)."""
    query = scope.filter({"ticket_id": {"$in": ticket_ids}, "data.action": "assume"})
    return readable(AssumeMark, await db[EVENTS].find(query, fields_of(AssumeMark)).to_list(None), what=EVENTS)


async def tickets_by_id(db: Database, scope: TenantScope, ticket_ids: list[str]) -> list[TicketRow]:
    """By `_id` one at a time (the lookup FerretDB pushes down), other tenants' left out."""
    found = [await scope.get(db[TICKETS], ticket_id) for ticket_id in ticket_ids]
    return readable(TicketRow, [doc for doc in found if doc is not None], what=TICKETS)


async def department_names(db: Database, scope: TenantScope) -> dict[str, str]:
    """Every department of the tenant, inactive ones too (old tickets name them)."""
    docs = await db[DEPARTMENTS].find(scope.filter({}), {"name": 1}).to_list(length=None)
    return {str(d["_id"]): str(d.get("name", "")) for d in docs}
