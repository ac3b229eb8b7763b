"""Reports: what the team did and how fast, for a period in the reseller's timezone.

The log is the truth (`ticket_events`, `messages`); the figures are read from per-month
aggregates maintained as events happen (reports/aggregates.py says what each event contributes
and why the shape is what it is; backend/core/foldlog.py why each contribution counts exactly
once on FerretDB). A request reads at most 13 month buckets and the live bucket — a couple of
`_id` reads each — and never the history. Satisfaction (average, count, distribution) is the
clients' `rated` events counted per grade on the local day of the rating, for the rated ticket's
department, agent and connection (aggregates.py, Attribution). `scripts/reports_rebuild.py`
recomputes every figure from the log and reports (and with --fix appends corrections for) any difference.

Where the guarantee ends: a ticket event's contribution is recorded before the event is
projected onto the ticket, by its writer or by whoever settles the ticket next (the ticket
counters' points, tickets/projection.py), so a writer that died in between is caught up by the
next settle or the sweep. A message's contribution is recorded once the message is filed; a
process killed between storing a message and recording it leaves the message uncounted until
its retry (a webhook redelivery runs `complete_stored`, which records it) or the rebuild.
"""

import asyncio
import calendar
import math
from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from itertools import repeat
from typing import Any
from zoneinfo import ZoneInfo

from backend.audit import service as events
from backend.core import metrics
from backend.core.clock import as_utc, check_days, utcnow
from backend.core.db import Database
from backend.core.errors import Forbidden, NotFound, Unprocessable
from backend.core.ids import is_valid_id
from backend.core.tenancy import Actor, TenantScope
from backend.messages import public as message_store
from backend.messages.models import Message
from backend.reports import aggregates, repository
from backend.reports.aggregates import Dims
from backend.reports.schemas import (
    AgentReport,
    AgentReportList,
    DayVolume,
    Quantiles,
    ReportFilters,
    ReportSummary,
    Satisfaction,
)
from backend.resellers import service as resellers
from backend.resellers.service import zone as zone  # published: the rebuild's and tests' zones
from backend.tickets.models import Ticket, TicketEvent, TicketState
from backend.users import service as users

# The longest period the reports and the exports cover (exports.service reads it here): a year,
# a leap year's too, so a year-over-year period fits; it spans at most 13 local months, the month
# buckets a request reads (the module's docstring).
MAX_DAYS = 366
NO_FILTERS = ReportFilters()
DEFAULT_DAYS = 30
SORT_BELOW = 20_000  # values: below this a quantile sorts the union, above it searches the runs


async def _tz(db: Database, reseller_id: str) -> tuple[str, ZoneInfo]:
    name = await resellers.timezone_of(db, reseller_id)
    return name, zone(name)


def _epoch_ms(at: datetime) -> int:
    return round(as_utc(at).timestamp() * 1000)


# ---------------------------------------------------------------------------------------------
# Recording (the hooks: tickets and messages call these through their runtime hooks)


async def record_ticket_event(db: Database, event: TicketEvent, previous_state: TicketState | None) -> None:
    """Records what `event` contributes. Called by the event's writer and by every settle that
    rolls a ticket forward over it, before it is projected; safe to repeat."""
    tenant, key = event.reseller_id, f"ev:{event.id}"
    previous = previous_state if previous_state is not None else await events.state_before_internal(db, event)
    first = event if event.version == 1 else await events.get_internal(db, event.ticket_id, 1)
    assert first is not None
    connection = (first.data.get("ticket") or {}).get("channel")
    _, tz = await _tz(db, tenant)
    parts = aggregates.event_parts(event, previous, tz=tz, connection_id=connection, opened_at=first.at)
    change = aggregates.waiting_change(event, previous, connection_id=connection)
    # Entries of different buckets, none waiting for another: appended together, they go out as
    # one insert (core/seqlog.py). Each bucket still gets a ticket's events in version order: the
    # next event is recorded only once this one's entries are all stored.
    await asyncio.gather(
        *(
            repository.record_month(db, tenant, month, key, month_parts)
            for month, month_parts in aggregates.by_month(parts).items()
        ),
        *([repository.record_live(db, tenant, key, change)] if change is not None else []),
    )


async def record_message(db: Database, message: Message, ticket: Ticket) -> None:
    """Records a stored message (in/out; notes are not messages in or out) and, for the ticket's
    first client message and the first agent reply after it, the first response. The first reply
    is the earliest in the log, whatever order replies are recorded in: an earlier reply recorded
    after a later one displaces it, its entry taking the later one's value back
    (repository.claim_first_reply). Safe to repeat: the claims and the entry are keyed by the
    message, and the first-response histogram is observed only by the call whose claim made the
    reply first (a displaced value stays observed there: a histogram takes nothing back)."""
    if not aggregates.counted(message):
        return
    tenant, ticket_id, message_id = message.reseller_id, message.ticket_id, message.id
    at_ms = _epoch_ms(message.created_at)
    first_response: int | None = None
    observe = False
    _, tz = await _tz(db, tenant)
    taken_back: list[dict[str, Any]] = []
    if message.direction == "in" and message.sender_type == "client":
        await repository.claim_first_in(db, ticket_id, at_ms)
    elif message.direction == "out" and message.sender_type == "agent":
        first_in = await repository.first_in(db, ticket_id) or await _first_in_of_opening(db, ticket)
        if first_in is not None and at_ms >= first_in:
            first, displaced, observe = await repository.claim_first_reply(db, ticket_id, at_ms, message_id)
            if first:
                first_response = at_ms - first_in
            if first and displaced is not None:
                taken_back = await _displaced_first_response(db, displaced, ticket, first_in, tz)
    p = aggregates.message_part(
        message, tz=tz, dims=aggregates.message_dims(message, dict(ticket)), first_response_ms=first_response
    )
    if p is None:
        return
    for month, parts in aggregates.by_month([p, *taken_back]).items():
        await repository.record_month(db, tenant, month, f"msg:{message_id}", parts)
    # Observed by the one call whose claim made the reply first (not by whether its entry counts:
    # the month log leaves claims to its compactor, repository.MONTHS), once its entry is
    # appended: a retried or concurrent record of the same reply finds the claim taken and
    # observes nothing. A process killed between that claim and this line leaves it unobserved.
    if observe and first_response is not None:
        metrics.FIRST_RESPONSE.observe(first_response / 1000)  # README, Metrics


async def _first_in_of_opening(db: Database, ticket: Ticket) -> int | None:
    """The first client message's time of a ticket a client message opened, claimed here when its
    own record has not claimed it yet: that record comes later when its delivery is retried (a
    store write lost), and a reply recorded meanwhile would find no first client message, count
    no first response, and leave the first-reply claim to a later reply. The opening message is
    the ticket's first client message, so the claim is the one its own record makes."""
    if not ticket.opening_message_id:
        return None
    opening = await message_store.get_internal(db, ticket.opening_message_id)
    if opening is None or (opening.direction, opening.sender_type) != ("in", "client"):
        return None
    await repository.claim_first_in(db, ticket.id, _epoch_ms(opening.created_at))
    return await repository.first_in(db, ticket.id)


async def _displaced_first_response(
    db: Database, message_id: str, ticket: Ticket, first_in: int, tz: tzinfo
) -> list[dict[str, Any]]:
    """The part that takes back the first response a later reply was counted with, once an
    earlier reply displaced it. That reply's own entry is recorded first (a no-op when it is),
    so no fold removes a value before the entry adding it is there."""
    displaced = await message_store.get_internal(db, message_id)
    if displaced is None:  # a claim names a stored message; nothing to take back otherwise
        return []
    await record_message(db, displaced, ticket)
    fr = _epoch_ms(displaced.created_at) - first_in
    local = as_utc(displaced.created_at).astimezone(tz)
    return [aggregates.part(local, aggregates.message_dims(displaced, dict(ticket)), fr_del=[fr])]


# ---------------------------------------------------------------------------------------------
# Reading


_COUNTED = frozenset(aggregates.COUNTS)


@dataclass
class _Acc:
    counts: Counter[str] = field(default_factory=Counter)
    fr: list["array[int]"] = field(default_factory=list)  # sorted runs, one per cell
    rs: list["array[int]"] = field(default_factory=list)
    days: dict[str, Counter[str]] = field(default_factory=dict)
    hours_opened: list[int] = field(default_factory=lambda: [0] * 24)
    hours_in: list[int] = field(default_factory=lambda: [0] * 24)
    by_day: bool = True  # the agents table shows no days: it skips their counters

    def add(self, day: str, cell: Mapping[str, Any]) -> None:
        # One pass over the cell's own fields (a cell holds a few of the counts): a year's
        # agents table adds thousands of cells.
        counts = self.counts
        per_day = self.days.setdefault(day, Counter()) if self.by_day else None
        for name, value in cell.items():
            if name in _COUNTED:
                n = int(value)
                if n:
                    counts[name] += n
                    if per_day is not None:
                        per_day[name] += n
            elif name == "fr" or name == "rs":
                if value:
                    (self.fr if name == "fr" else self.rs).append(aggregates.unpack(value))
            elif name == "ho" or name == "hi":
                hours = self.hours_opened if name == "ho" else self.hours_in
                for hour, n in (value or {}).items():
                    hours[int(hour)] += int(n)


def kth(runs: list["array[int]"], k: int) -> int:
    """The k-th smallest (0-based) value of the union of sorted runs, exactly: a binary search
    over the values counting, per run, those at or below a candidate (a bisect per run) — no
    merge, no sort of the union."""
    lo, hi = min(r[0] for r in runs), max(r[-1] for r in runs)
    while lo < hi:
        mid = (lo + hi) // 2
        if sum(map(bisect_right, runs, repeat(mid, len(runs)))) >= k + 1:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _after(runs: list["array[int]"], k: int, below: int) -> int:
    """The k-th smallest value given that the (k-1)-th is `below`: `below` again when more
    than k values are at or below it, else the smallest value above it (no second search)."""
    at_or_below = [bisect_right(r, below) for r in runs]
    if sum(at_or_below) >= k + 1:
        return below
    return min(r[i] for r, i in zip(runs, at_or_below, strict=True) if i < len(r))


def quantiles(runs: list["array[int]"]) -> Quantiles:
    """Median (the mean of the two middle values for an even count) and p90 (nearest rank:
    the smallest value with at least 90% of the values at or below it), in seconds."""
    n = sum(len(r) for r in runs)
    if not n:
        return Quantiles()
    runs = [r for r in runs if r]
    if n <= SORT_BELOW:  # a small union sorts faster than the search walks its runs
        runs = [array("q", sorted(v for r in runs for v in r))]
    if n % 2:
        median: float = kth(runs, n // 2)
    else:
        below = kth(runs, n // 2 - 1)
        median = (below + _after(runs, n // 2, below)) / 2
    p90 = kth(runs, max(0, math.ceil(0.9 * n) - 1))
    return Quantiles(median=median / 1000, p90=p90 / 1000)


def _month_days(month: str) -> tuple[date, date]:
    """The first and last day of `month` ("YYYY-MM")."""
    y, m = int(month[:4]), int(month[5:7])
    return date(y, m, 1), date(y, m, calendar.monthrange(y, m)[1])


def _months(start: date, end: date) -> list[str]:
    out, y, m = [], start.year, start.month
    while (y, m) <= (end.year, end.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _collect(
    states: list[dict[str, Any]],
    months: list[str],
    *,
    start: date,
    end: date,
    match: Callable[[Dims], bool],
    group: Callable[[Dims], str | None] | None = None,
    by_day: bool = True,
) -> dict[str | None, _Acc]:
    lo, hi = start.isoformat(), end.isoformat()
    out: dict[str | None, _Acc] = {}
    for month, state in zip(months, states, strict=True):
        for day, dims, cell in aggregates.month_cells(state, match):
            iso = f"{month}-{day}"
            if day == aggregates.WHOLE or lo <= iso <= hi:  # a whole month's cell: read only when inside
                key = group(dims) if group else None
                acc = out.get(key)
                if acc is None:
                    acc = out[key] = _Acc(by_day=by_day)
                acc.add(iso, cell)
    return out


@dataclass(frozen=True)
class Period:
    reseller_id: str
    start: date
    end: date
    timezone: str


async def _tenant_of(db: Database, actor: Actor, reseller_id: str | None) -> str:
    if actor.is_admin:
        if not reseller_id:
            raise Unprocessable("reseller_id is required for the platform admin")
        await resellers.get_or_404(db, reseller_id=reseller_id)
        return reseller_id
    assert actor.reseller_id
    if reseller_id is not None and reseller_id != actor.reseller_id:
        raise NotFound("reseller not found")  # never confirm another tenant exists
    return actor.reseller_id


def check_period(first: date, last: date) -> None:
    """A period of local days `first`..`last` (inclusive) a report or an export may cover (422 otherwise)."""
    check_days(first, last, max_days=MAX_DAYS)


async def period(
    db: Database, actor: Actor, *, start: date | None, end: date | None, reseller_id: str | None = None
) -> Period:
    tenant = await _tenant_of(db, actor, reseller_id)
    name, tz = await _tz(db, tenant)
    today = utcnow().astimezone(tz).date()
    try:
        end = end or (today if start is None else min(today, start + timedelta(days=DEFAULT_DAYS - 1)))
        start = start or end - timedelta(days=DEFAULT_DAYS - 1)
    except OverflowError:  # a period at the edge of the calendar (year 1 or 9999)
        raise Unprocessable("dates out of range") from None
    check_period(start, end)
    return Period(tenant, start, end, name)


def satisfaction(counts: Mapping[str, int]) -> Satisfaction:
    """Average and distribution from the ratings counted per grade (aggregates.RATINGS)."""
    distribution = {name[1:]: int(counts.get(name, 0)) for name in aggregates.RATINGS}
    count = sum(distribution.values())
    total = sum(int(grade) * n for grade, n in distribution.items())
    return Satisfaction(average=round(total / count, 2) if count else None, count=count, distribution=distribution)


def _figures(acc: _Acc | None) -> dict[str, Any]:
    acc = acc or _Acc()
    c = acc.counts
    return {
        "opened": c["o"],
        "assumed": c["a"],
        "transferred": c["t"],
        "finalized": c["f"],
        "messages_in": c["mi"],
        "messages_out": c["mo"],
        "first_response_seconds": quantiles(acc.fr),
        "resolution_seconds": quantiles(acc.rs),
        "satisfaction": satisfaction(c),
    }


def _waiting(live: Mapping[str, Any], match: Callable[[str | None, str | None], bool]) -> dict[str, Any]:
    """waiting_now and oldest_wait_seconds from the live bucket (the tickets in espera now)."""
    since = [as_utc(item["s"]) for item in (live.get("waiting") or {}).values() if match(item.get("d"), item.get("c"))]
    oldest = (utcnow() - min(since)).total_seconds() if since else None
    return {"waiting_now": len(since), "oldest_wait_seconds": round(oldest, 3) if oldest is not None else None}


async def _agent_departments(db: Database, actor: Actor, reseller_id: str, agent_id: str) -> tuple[str, ...]:
    """The departments whose queue counts as the agent's waiting (the actor's own are at hand)."""
    if agent_id == actor.id:
        return actor.department_ids
    agent = await users.get(db, TenantScope(reseller_id), agent_id, roles=("agent",)) if is_valid_id(agent_id) else None
    return tuple(agent.department_ids) if agent else ()


async def _no_departments() -> None:
    return None


def _own(actor: Actor, agent_id: str | None) -> str | None:
    """The agent filter as the actor may ask it: an agent's is always itself (another is 403)."""
    if actor.role != "agent":
        return agent_id
    if agent_id is not None and agent_id != actor.id:
        raise Forbidden("agents see their own figures only")
    return actor.id


def _matcher(department_id: str | None, agent_id: str | None, connection_id: str | None) -> Callable[[Dims], bool]:
    """Whether a cell's dims are inside the filters (a view's dims it does not keep are "*")."""

    def match(dims: Dims) -> bool:
        return (
            (department_id is None or dims[0] == department_id)
            and (agent_id is None or dims[1] == agent_id)
            and (connection_id is None or dims[2] == connection_id)
        )

    return match


def _waits(
    department_id: str | None, connection_id: str | None, depts: tuple[str, ...] | None
) -> Callable[[str | None, str | None], bool]:
    """Whether a waiting ticket (its department, its connection) is inside the filters and, given
    an agent's departments, in that agent's queue."""

    def waits(dept: str | None, conn: str | None) -> bool:
        return (
            (department_id is None or dept == department_id)
            and (connection_id is None or conn == connection_id)
            and (depts is None or dept in depts)
        )

    return waits


async def summary(
    db: Database,
    actor: Actor,
    *,
    start: date | None,
    end: date | None,
    filters: ReportFilters = NO_FILTERS,
    reseller_id: str | None = None,
) -> ReportSummary:
    """The dashboard's figures. An agent gets its own: `agent_id` is itself (another is 403)."""
    department_id, connection_id = filters.department_id, filters.connection_id
    agent_id = _own(actor, filters.agent_id)
    p = await period(db, actor, start=start, end=end, reseller_id=reseller_id)
    months = _months(p.start, p.end)

    view = aggregates.view_for(department_id, agent_id, connection_id)
    match = _matcher(department_id, agent_id, connection_id)

    states, live, depts = await asyncio.gather(  # one round: the agent's departments with the figures
        repository.months(db, p.reseller_id, months, view, match),
        repository.live(db, p.reseller_id),
        _no_departments() if agent_id is None else _agent_departments(db, actor, p.reseller_id, agent_id),
    )
    acc = _collect(states, months, start=p.start, end=p.end, match=match).get(None) or _Acc()

    waits = _waits(department_id, connection_id, depts)

    per_day: list[DayVolume] = []
    for offset in range((p.end - p.start).days + 1):  # no date past `to`: 9999-12-31 has no next day
        day = p.start + timedelta(days=offset)
        c = acc.days.get(day.isoformat(), Counter())
        per_day.append(DayVolume(date=day, opened=c["o"], finalized=c["f"], messages_in=c["mi"], messages_out=c["mo"]))
    return ReportSummary(
        **_figures(acc),
        **_waiting(live, waits),
        period_from=p.start,
        period_to=p.end,
        timezone=p.timezone,
        per_day=per_day,
        per_hour=acc.hours_opened,
        per_hour_messages_in=acc.hours_in,
    )


async def agents(
    db: Database,
    actor: Actor,
    *,
    start: date | None,
    end: date | None,
    filters: ReportFilters = NO_FILTERS,
    reseller_id: str | None = None,
) -> AgentReportList:
    """One row per agent with activity in the period inside the filters (the summary's, checked
    alike); the agent filtered by (an agent: itself, always) has its row even without activity."""
    department_id, connection_id = filters.department_id, filters.connection_id
    only = _own(actor, filters.agent_id)
    p = await period(db, actor, start=start, end=end, reseller_id=reseller_id)
    months = _months(p.start, p.end)
    by_cell = department_id is not None or connection_id is not None
    # A month inside the period is one cell per agent ("agent-month"); the period's ends, a day
    # each ("agent"). Those views keep no department or connection: filtered by either, every
    # month reads the view with every dim ("cells"), as the summary does for two filters.
    whole = [] if by_cell else [m for m in months if p.start <= _month_days(m)[0] and _month_days(m)[1] <= p.end]
    partial = [m for m in months if m not in whole]
    inside = _matcher(department_id, only, connection_id)

    def match(dims: Dims) -> bool:
        return dims[1] is not None and inside(dims)

    whole_states, partial_states, live = await asyncio.gather(
        repository.months(db, p.reseller_id, whole, "agent-month", match),
        repository.months(db, p.reseller_id, partial, "cells" if by_cell else "agent", match),
        repository.live(db, p.reseller_id),
    )
    groups = _collect(
        whole_states + partial_states,
        whole + partial,
        start=p.start,
        end=p.end,
        match=match,
        group=lambda d: d[1],
        by_day=False,
    )
    ids = sorted({str(k) for k in groups if k is not None} | ({only} if only else set()))

    async def row(agent: str) -> AgentReport | None:
        name, depts = await asyncio.gather(  # one round
            users.name_in_tenant(db, p.reseller_id, agent), _agent_departments(db, actor, p.reseller_id, agent)
        )
        if name is None:
            return None
        waiting = _waiting(live, _waits(department_id, connection_id, depts))
        return AgentReport(agent_id=agent, agent_name=name, **_figures(groups.get(agent)), **waiting)

    rows = [r for r in await asyncio.gather(*(row(a) for a in ids)) if r is not None]
    rows.sort(key=lambda r: (r.agent_name.casefold(), r.agent_id))
    return AgentReportList(items=rows)
