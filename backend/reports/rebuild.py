"""The reports recomputed from the log (`ticket_events`, `messages`) and compared with what the
incremental aggregates answer; the repair appends corrections. Used by scripts/reports_rebuild.py
and the tests; it reads whole collections of a tenant, so it is an operator's tool, never a
request's.

The truth applies the same contribution functions (reports/aggregates.py) to the whole log:
every ticket's events in version order (its `rated` event included: the satisfaction counts),
every message once. Where the two can differ:
- an event or message whose contribution was never recorded (a process killed between the write
  and its record, with no settle, sweep or retry since);
- a totals document that is not the fold of its own entries (written by hand, or a bug);
- the reseller changed its timezone (the log is re-bucketed in the timezone configured now);
- a first response decided by a race: two replies (or two client messages) of one ticket stored
  at the same moment, the claim going to the one the log orders second; or a client message
  moved on to a new ticket after a finalize (it stays the first message of the ticket it was
  first filed under).
The repair rewrites a corrupted totals document refolded from its entries (same watermark,
like the ticket counters' repair) and then appends one correction entry per bucket that still
differs (counts, per-hour counts and values added or removed): appends and rewrites, never a
delete. Under live traffic a check can see an event between its two reads; run it again.
"""

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from backend.audit import service as events
from backend.core.clock import as_utc
from backend.core.db import Database
from backend.core.ids import new_id
from backend.messages import public as message_store
from backend.messages.models import Message
from backend.reports import aggregates, repository
from backend.reports.models import LiveChange
from backend.reports.service import zone
from backend.resellers import service as resellers
from backend.tickets.models import TicketState

CellKey = tuple[str, str | None, str | None, str | None]  # day, department, agent, connection


def comparable(state: Mapping[str, Any]) -> dict[CellKey, dict[str, Any]]:
    """A month state keyed by (day, dims) rather than interned indexes, values sorted, zeros
    dropped: two states with the same figures compare equal."""
    out: dict[CellKey, dict[str, Any]] = {}
    for day, dims, cell in aggregates.month_cells(state):
        row: dict[str, Any] = {}
        for name in aggregates.COUNTS:
            if int(cell.get(name, 0)):
                row[name] = int(cell[name])
        for name in aggregates.HOURS:
            hours = {int(h): int(n) for h, n in (cell.get(name) or {}).items() if int(n)}
            if hours:
                row[name] = hours
        for name in aggregates.VALUES:
            values = sorted(aggregates.unpack(cell.get(name)))
            if values:
                row[name] = values
        if row:
            key = (day, *dims)
            previous = out.get(key)
            out[key] = row if previous is None else _merge(previous, row)
    return out


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two cells of one (day, dims) (a state folded from corrections can intern dims twice)."""
    out = dict(a)
    for name in aggregates.COUNTS:
        if name in b:
            out[name] = out.get(name, 0) + b[name]
    for name in aggregates.HOURS:
        if name in b:
            out[name] = dict(Counter(out.get(name, {})) + Counter(b[name]))
    for name in aggregates.VALUES:
        if name in b:
            out[name] = sorted([*out.get(name, []), *b[name]])
    return out


def waiting_of(state: Mapping[str, Any]) -> dict[str, tuple[int, Any, Any]]:
    return {
        ticket: (round(as_utc(item["s"]).timestamp() * 1000), item.get("d"), item.get("c"))
        for ticket, item in (state.get("waiting") or {}).items()
    }


@dataclass
class Audit:
    reseller_id: str
    timezone: str
    truth_months: dict[str, dict[CellKey, dict[str, Any]]]
    current_months: dict[str, dict[CellKey, dict[str, Any]]]
    truth_waiting: dict[str, tuple[int, Any, Any]]
    current_waiting: dict[str, tuple[int, Any, Any]]
    truth_live: dict[str, Any]
    corrupt: list[str] = field(default_factory=list)  # bucket views whose totals are not their entries' fold

    @property
    def month_differences(self) -> dict[str, list[CellKey]]:
        out: dict[str, list[CellKey]] = {}
        for month in sorted(set(self.truth_months) | set(self.current_months)):
            want, have = self.truth_months.get(month, {}), self.current_months.get(month, {})
            keys = sorted((k for k in set(want) | set(have) if want.get(k) != have.get(k)), key=str)
            if keys:
                out[month] = keys
        return out

    @property
    def waiting_differences(self) -> list[str]:
        keys = set(self.truth_waiting) | set(self.current_waiting)
        return sorted(k for k in keys if self.truth_waiting.get(k) != self.current_waiting.get(k))

    @property
    def clean(self) -> bool:
        return not self.month_differences and not self.waiting_differences and not self.corrupt


async def truth(db: Database, reseller_id: str) -> tuple[str, dict[str, dict[str, Any]], dict[str, Any]]:
    """(timezone, month states, live state) folded from the whole log."""
    tz_name = await resellers.timezone_of(db, reseller_id)
    tz = zone(tz_name)
    months: dict[str, dict[str, Any]] = {}
    live: dict[str, Any] = {}
    current: dict[str, dict[str, Any]] = {}  # ticket -> its state now and connection
    for ticket_id, chain in (await events.all_for_tenant_internal(db, reseller_id)).items():
        first = chain[0]
        connection = (first.data.get("ticket") or {}).get("channel")
        previous: TicketState | None = None
        for event in chain:
            parts = aggregates.event_parts(event, previous, tz=tz, connection_id=connection, opened_at=first.at)
            for month, month_parts in aggregates.by_month(parts).items():
                aggregates.fold_month(months.setdefault(month, {}), month_parts)
            change = aggregates.waiting_change(event, previous, connection_id=connection)
            if change is not None:
                aggregates.fold_live(live, change)
            previous = event.state
        current[ticket_id] = {**dict(previous or {}), "channel": connection}

    stored = await message_store.all_for_tenant_internal(db, reseller_id)
    ordered = sorted(stored, key=lambda m: (as_utc(m.created_at), m.id))  # so the first of each kind wins
    first_in: dict[str, Message] = {}
    for m in ordered:
        if m.direction == "in" and m.sender_type == "client" and aggregates.counted(m):
            first_in.setdefault(m.ticket_id, m)
    first_reply: dict[str, Message] = {}
    for m in ordered:
        asked, reply = first_in.get(m.ticket_id), m.direction == "out" and m.sender_type == "agent"
        if reply and asked is not None and as_utc(m.created_at) >= as_utc(asked.created_at):
            first_reply.setdefault(m.ticket_id, m)
    for m in stored:
        t = m.ticket_id
        response = None
        if t in first_reply and first_reply[t].id == m.id:
            response = aggregates.ms_between(as_utc(first_in[t].created_at), as_utc(m.created_at))
        p = aggregates.message_part(
            m, tz=tz, dims=aggregates.message_dims(m, current.get(t)), first_response_ms=response
        )
        if p is not None:
            aggregates.fold_month(months.setdefault(str(p["m"]), {}), [p])
    return tz_name, months, live


async def audit(db: Database, reseller_id: str) -> Audit:
    tz_name, months, live = await truth(db, reseller_id)
    names = sorted(set(months) | set(await repository.known_months(db, reseller_id)))
    current = await repository.months(db, reseller_id, names)
    found = Audit(
        reseller_id=reseller_id,
        timezone=tz_name,
        truth_months={m: comparable(months.get(m, {})) for m in names},
        current_months={m: comparable(s) for m, s in zip(names, current, strict=True)},
        truth_waiting=waiting_of(live),
        current_waiting=waiting_of(await repository.live(db, reseller_id)),
        truth_live=live,
    )
    for month in names:
        for view in aggregates.PROJECTIONS:
            stored, folded = await repository.month_totals(db, reseller_id, month, view)
            if comparable(stored.state) != comparable(folded.state):
                found.corrupt.append(f"{aggregates.month_bucket(reseller_id, month)}|{view}")
    stored_live, folded_live = await repository.live_totals(db, reseller_id)
    if waiting_of(stored_live.state) != waiting_of(folded_live.state):
        found.corrupt.append(aggregates.live_bucket(reseller_id))
    return found


def _correction(want: dict[CellKey, dict[str, Any]], have: dict[CellKey, dict[str, Any]]) -> list[dict[str, Any]]:
    """The parts that turn `have` into `want` when folded (fold_month takes negative counts and
    `<values>_del`)."""
    parts: list[dict[str, Any]] = []
    for key in set(want) | set(have):
        w, h = want.get(key, {}), have.get(key, {})
        if w == h:
            continue
        day, dims = key[0], list(key[1:])
        hourly: dict[int, dict[str, int]] = {}
        for name, source in (("ho", "o"), ("hi", "mi")):
            for hour in set(w.get(name, {})) | set(h.get(name, {})):
                d = w.get(name, {}).get(hour, 0) - h.get(name, {}).get(hour, 0)
                if d:
                    hourly.setdefault(hour, {})[source] = d
        for hour, figures in hourly.items():
            parts.append({"d": day, "h": hour, "dim": dims, **figures})
        rest: dict[str, Any] = {}
        for name in ("a", "t", "f", "mo", *aggregates.RATINGS):  # o and mi go with their hours
            d = w.get(name, 0) - h.get(name, 0)
            if d:
                rest[name] = d
        for name in aggregates.VALUES:
            wv, hv = Counter(w.get(name, [])), Counter(h.get(name, []))
            if wv != hv:
                rest[name] = list((wv - hv).elements())
                rest[f"{name}_del"] = list((hv - wv).elements())
        if rest:
            parts.append({"d": day, "h": 0, "dim": dims, **rest})
    return parts


async def repair(db: Database, found: Audit) -> None:
    """Rewrites corrupted totals refolded from their entries, then appends corrections."""
    for bucket in found.corrupt:
        if bucket == aggregates.live_bucket(found.reseller_id):
            _, folded = await repository.live_totals(db, found.reseller_id)
            await repository.write_live(db, found.reseller_id, folded)
        else:
            month, view = bucket.rsplit(":", 1)[1].split("|")
            _, folded = await repository.month_totals(db, found.reseller_id, month, view)
            await repository.write_month(db, found.reseller_id, month, view, folded)
    if found.corrupt:
        found = await audit(db, found.reseller_id)
    for month in found.month_differences:
        parts = _correction(found.truth_months.get(month, {}), found.current_months.get(month, {}))
        if parts:
            await repository.record_month(db, found.reseller_id, month, f"fix:{new_id()}", parts)
    stale = found.waiting_differences
    if stale:
        want = found.truth_live.get("waiting") or {}
        change = LiveChange(wset={t: want[t] for t in stale if t in want}, wdel=[t for t in stale if t not in want])
        await repository.record_live(db, found.reseller_id, f"fix:{new_id()}", change)
