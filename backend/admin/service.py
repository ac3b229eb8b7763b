"""The admin overview: per reseller, its tickets by status now (the ticket counters), its messages
in and out over a period of its own local days (the reports' aggregates: a few `_id` reads per
reseller, never a scan of its messages), and its WhatsApp connections' status."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from backend.admin.schemas import AdminOverview, ConnectionSummary, ResellerOverview, TicketsByStatus
from backend.connections import service as connections
from backend.core.clock import check_days
from backend.core.db import Database
from backend.core.pagination import every_item
from backend.core.tenancy import Actor
from backend.reports import service as reports
from backend.resellers import service as resellers
from backend.tickets import counters

PAGE = 200
DEFAULT_DAYS = 7
MAX_DAYS = 366


async def _connections_by_tenant(db: Database, actor: Actor) -> dict[str, list[ConnectionSummary]]:
    out: dict[str, list[ConnectionSummary]] = {}
    for c in await every_item(lambda cursor: connections.list_page(db, actor, cursor=cursor, limit=PAGE)):
        summary = ConnectionSummary(id=c.id, name=c.name, status=c.status, active=c.active, last_error=c.last_error)
        out.setdefault(c.reseller_id, []).append(summary)
    return out


async def overview(db: Database, actor: Actor, *, first: date | None, last: date | None) -> AdminOverview:
    """`first`..`last`: days, both inclusive, each reseller's own; by default the last 7 days
    ending today (UTC's today)."""
    last = last or datetime.now(ZoneInfo("UTC")).date()
    first = first or last - timedelta(days=DEFAULT_DAYS - 1)
    check_days(first, last, max_days=MAX_DAYS)
    links = await _connections_by_tenant(db, actor)
    items: list[ResellerOverview] = []
    for r in await every_item(lambda cursor: resellers.list_page(db, cursor=cursor, limit=PAGE)):
        figures = await reports.summary(db, actor, start=first, end=last, reseller_id=r.id)
        items.append(
            ResellerOverview(
                id=r.id,
                name=r.name,
                active=r.active,
                timezone=figures.timezone,
                tickets=TicketsByStatus(**await counters.tenant_by_status(db, r.id)),
                messages_in=figures.messages_in,
                messages_out=figures.messages_out,
                connections=links.get(r.id, []),
            )
        )
    items.sort(key=lambda i: i.name.lower())
    return AdminOverview(period_from=first, period_to=last, items=items)
