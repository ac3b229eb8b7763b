"""What one ticket event or one message contributes to the reports, and how contributions fold.
Pure functions: the service (reports/service.py) and the rebuild (scripts/reports_rebuild.py)
compute contributions with the same code, so the incremental figures and the rebuild agree by
construction wherever they see the same log.

Shape. Two kinds of bucket per tenant, each a backend/core/foldlog.py bucket:
- a *month* bucket (the reseller's local month): cells keyed by local day and *dims*
  (department, agent, connection) — the cross product the filters need — holding counts
  (`o`pened, `a`ssumed, `t`ransferred, `f`inalized, `mi`/`mo` messages in/out, `s1`..`s5` ratings
  of each grade), opened tickets
  and messages in per local hour (`ho`, `hi`), and the exact first-response (`fr`) and
  resolution (`rs`) values in milliseconds, packed as 8-byte integers and kept sorted. Dims are
  interned per bucket (`dims`), so a cell key is "<day>|<index>" rather than three ids.
  The bucket has six *views* (PROJECTIONS), each its own totals document holding one BSON blob:
  the cells with every dim ("cells", for two filters at once) and the cells with all dims but one
  (or all) projected to "*" ("dept", "agent", "conn", "all"), and "agent-month": per agent, one
  cell for the whole month (day WHOLE) — what the agents table reads for a month inside its
  period. A request reads the one view its filter needs: an unfiltered year sums 365 day cells,
  not the cross product; the agents table over a year 12 cells per agent, not 365. The views of one
  filter ("dept", "agent", "conn") hold a blob per dims, so such a filter decodes its own (encode).
  Why exact value lists and not a histogram: the median and p90 must be exact for any period and
  filter, so every value has to be kept (to the millisecond, as BSON dates are); a value costs 8
  bytes, 100k tickets a year are ~1.7 MB per view over 12 buckets. Each cell's values are sorted,
  so a quantile is selected across the day runs by a binary search over the values counting with
  a bisect per run (service.kth) — exact, without merging or sorting the union. Why months and
  not days: a year is 13 documents to read instead of 366 (a FerretDB read is a round trip), and
  a view of one tenant's month stays far below the document size limit. Why a blob: FerretDB v1
  converts every field of a document between its storage and BSON, which for thousands of cells
  costs far more than the bytes, and it stores no array directly inside an array.
- the *live* bucket: the tickets waiting now (in espera), each with since when, its department
  and connection — small (the queue), and what `waiting_now` and the oldest wait read.

Attribution (each contribution names its local day and dims when it is recorded):
- opened: event v1, at its time, in the ticket's department, agent (an agent-started ticket) and
  connection; assumed: an event moving espera -> atendendo, to the agent now holding it;
  transferred: a `transferred` event, to the department and agent it left; finalized: an event
  reaching finalizado, to the agent holding it (none for a queue ticket), with the resolution
  time opened -> finalized.
- satisfaction: a `rated` event (the client's 1-5 rating of its finalized ticket,
  backend/automation) counts one rating of its grade (`s1`..`s5`) on the local day the client
  rated — not the day the ticket was finalized: a satisfaction figure answers "how satisfied were
  the clients who answered in this period" — in the ticket's department, its agent (the one that
  held it at finalize; the ticket keeps its holder) and its connection, as its state is at the
  rating. Counts per grade rather than a sum: the distribution is a figure of its own, and the
  average (sum of grade x count / count) follows exactly from it for any period and filter. A
  ticket is rated once (tickets.service.rate refuses a second), and the contribution is keyed
  by the event like every other one, so a redelivered rating or a retried record counts once.
- messages in/out: a message's `department_id`/`agent_id` stamped at its store (the ticket's
  department and holder then; an agent's reply counts for the agent who sent it); notes (and
  any direction other than in/out) and records of edits, deletions and reactions (`counted`)
  are not messages in/out. First response: the ticket's first
  client message (the first one stored claims "report-first-in") -> the first agent reply stored
  after it (claims "report-first-reply"), counted on the reply's day for the replying agent.
- Local day and hour use the reseller's timezone when the contribution is recorded; the rebuild
  uses the timezone configured when it runs, so a changed timezone shows as a difference that
  `--fix` moves.
The live bucket needs order (a ticket enters and leaves the queue): each event's contribution is
recorded before its event is projected onto the ticket (by its writer, or by the settle that
rolls it forward — the points where the ticket counters record theirs), and the next event is
only written after a load that settled the previous one, so a ticket's canonical entries are
appended in version order.
"""

import zlib
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, tzinfo
from typing import Any

import bson

from backend.core.clock import as_utc
from backend.messages.models import Message
from backend.reports.models import LiveChange, MonthEntry
from backend.tickets.models import TicketEvent, TicketState
from backend.tickets.states import Status

RATINGS = ("s1", "s2", "s3", "s4", "s5")  # how many ratings of each grade, 1-5
COUNTS = ("o", "a", "t", "f", "mi", "mo", *RATINGS)
VALUES = ("fr", "rs")
HOURS = ("ho", "hi")

Dims = tuple[str | None, str | None, str | None]  # department, agent, connection


def month_bucket(reseller_id: str, month: str) -> str:
    return f"{reseller_id}:m:{month}"


def live_bucket(reseller_id: str) -> str:
    return f"{reseller_id}:live"


def ms_between(start: datetime, end: datetime) -> int:
    return max(0, round((end - start).total_seconds() * 1000))


def part(at_local: datetime, dims: Dims, **figures: Any) -> dict[str, Any]:
    """One cell's contribution: the local month it belongs to, day, hour, dims and figures."""
    return {
        "m": at_local.strftime("%Y-%m"),
        "d": at_local.strftime("%d"),
        "h": at_local.hour,
        "dim": list(dims),
        **figures,
    }


def event_parts(
    event: TicketEvent, previous: TicketState | None, *, tz: tzinfo, connection_id: str | None, opened_at: datetime
) -> list[dict[str, Any]]:
    """The month-bucket contributions of one ticket event (`previous`: the state before it)."""
    state, at = event.state, as_utc(event.at)
    local = at.astimezone(tz)
    status, before = state.status, previous.status if previous else None
    dims: Dims = (state.department_id, state.agent_id, connection_id)
    parts: list[dict[str, Any]] = []
    if event.version == 1:
        parts.append(part(local, dims, o=1))
    if before == Status.ESPERA and status == Status.ATENDENDO:
        parts.append(part(local, dims, a=1))
    if event.type == "transferred" and previous is not None:
        left: Dims = (previous.department_id, previous.agent_id, connection_id)
        parts.append(part(local, left, t=1))
    if status == Status.FINALIZADO and before not in (None, Status.FINALIZADO):
        parts.append(part(local, dims, f=1, rs=[ms_between(as_utc(opened_at), at)]))
    grade = rating_of(event)
    if grade is not None:
        parts.append(part(local, dims, **{f"s{grade}": 1}))
    return parts


def rating_of(event: TicketEvent) -> int | None:
    """The grade a `rated` event records (its data, else the state it left), None for any other."""
    if event.type != "rated":
        return None
    value = event.data.get("rating", event.state.rating)
    return int(value) if isinstance(value, int) and 1 <= value <= 5 else None


def waiting_change(event: TicketEvent, previous: TicketState | None, *, connection_id: str | None) -> LiveChange | None:
    """The live-bucket contribution of one ticket event: entering, moving within or leaving the queue."""
    state, ticket_id = event.state, event.ticket_id
    status, before = state.status, previous.status if previous else None
    if status == Status.ESPERA and before != Status.ESPERA:
        item = {"s": event.at, "d": state.department_id, "c": connection_id}
        return LiveChange(wset={ticket_id: item})
    if status == Status.ESPERA and previous is not None and previous.department_id != state.department_id:
        return LiveChange(wmove={ticket_id: state.department_id})
    if status != Status.ESPERA and before == Status.ESPERA:
        return LiveChange(wdel=[ticket_id])
    return None


def counted(message: Message) -> bool:
    """A message in or out of the conversation: not a note, and not a record of what was done to
    an earlier message (an edit, a deletion, a reaction: messages.service.record_change)."""
    return message.direction in ("in", "out") and message.annotates is None


def message_part(message: Message, *, tz: tzinfo, dims: Dims, first_response_ms: int | None) -> dict[str, Any] | None:
    direction = message.direction
    if not counted(message):
        return None
    local = as_utc(message.created_at).astimezone(tz)
    figures: dict[str, Any] = {"mi": 1} if direction == "in" else {"mo": 1}
    if first_response_ms is not None:
        figures["fr"] = [first_response_ms]
    return part(local, dims, **figures)


def _pack(values: Iterable[int]) -> bytes:
    return array("q", values).tobytes()


def unpack(blob: bytes | None) -> "array[int]":
    out = array("q")
    if blob:
        out.frombytes(bytes(blob))
    return out


def _dim_index(state: dict[str, Any], dims: list[Any]) -> int:
    """The bucket's index of `dims`, added when new. Stored as objects: FerretDB v1 stores no
    array directly inside an array."""
    known: list[dict[str, Any]] = state.setdefault("dims", [])
    index: dict[tuple[Any, ...], int] | None = state.get("_index")
    if index is None or len(index) != len(known):
        index = {(d.get("d"), d.get("a"), d.get("c")): i for i, d in enumerate(known)}
    key = (dims[0], dims[1], dims[2])
    if key not in index:
        known.append({"d": dims[0], "a": dims[1], "c": dims[2]})
        index[key] = len(known) - 1
    state["_index"] = index
    return index[key]


ANY = "*"  # a projected dim: every department (agent, connection)

# The month views (backend/core/foldlog.py): each keeps the cells of one projection of the dims,
# so a request reads the one whose cells it sums — a year without filter 365 day cells, one
# department's 365 x departments — and never the full cross product unless it filters by two
# dims at once ("cells").
PROJECTIONS: dict[str, Callable[[list[Any]], list[Any]]] = {
    "all": lambda d: [ANY, ANY, ANY],
    "dept": lambda d: [d[0], ANY, ANY],
    "agent": lambda d: [ANY, d[1], ANY],
    "conn": lambda d: [ANY, ANY, d[2]],
    "cells": lambda d: list(d),
    "agent-month": lambda d: [ANY, d[1], ANY],
}
# Views whose cells hold the whole month (day WHOLE) rather than a day each: the agents table
# over whole months sums one cell per agent and month, not one per agent and day.
WHOLE = "*"
WHOLE_MONTH = frozenset({"agent-month"})


def view_for(department_id: str | None, agent_id: str | None, connection_id: str | None) -> str:
    """The smallest view that answers a filter."""
    given = [x is not None for x in (department_id, agent_id, connection_id)]
    if sum(given) > 1:
        return "cells"
    if given[0]:
        return "dept"
    if given[1]:
        return "agent"
    return "conn" if given[2] else "all"


def fold_month(state: dict[str, Any], parts: Iterable[Mapping[str, Any]], *, view: str = "cells") -> None:
    """Adds one entry's parts to a month view's cells. Counts may be negative and values may be
    removed (`fr_del`/`rs_del`): the rebuild's corrections are entries like any other. Each
    cell's values stay sorted, so a request selects quantiles across cells without sorting."""
    project, whole = PROJECTIONS[view], view in WHOLE_MONTH
    for p in parts:
        dims = project(p["dim"])
        day = WHOLE if whole else p["d"]
        cell: dict[str, Any] = state.setdefault("cells", {}).setdefault(f"{day}|{_dim_index(state, dims)}", {})
        for name in COUNTS:
            if p.get(name):
                cell[name] = int(cell.get(name, 0)) + int(p[name])
        hour = str(p["h"])
        for name, source in (("ho", "o"), ("hi", "mi")):
            if p.get(source):
                hours = cell.setdefault(name, {})
                hours[hour] = int(hours.get(hour, 0)) + int(p[source])
        for name in VALUES:
            added, removed = p.get(name) or [], p.get(f"{name}_del") or []
            if added or removed:
                values = list(unpack(cell.get(name)))
                if removed:
                    values = list((Counter(values) - Counter(int(v) for v in removed)).elements())
                cell[name] = _pack(sorted([*values, *(int(v) for v in added)]))


def month_view(view: str) -> Callable[[dict[str, Any], MonthEntry], None]:
    def fold(state: dict[str, Any], entry: MonthEntry) -> None:
        fold_month(state, entry.parts, view=view)

    return fold


def encode(state: dict[str, Any]) -> dict[str, Any]:
    """A month view as stored: its interned dims (`d`, one BSON blob) and, per dims index, that
    dims' cells as one zlib-compressed BSON blob (`p`, a list in index order). FerretDB v1
    converts every field of a document between its storage and BSON, which for thousands of
    cells costs far more than the bytes; a few binary fields cross as blocks, and the client
    decodes them in C. The compression (level 1: a compaction stays cheap) more than halves the
    bytes FerretDB moves per read, which is what a year's read costs (docs/BENCHMARKS.md,
    Reports). One blob per dims: a filtered read decodes only the cells of the dims it wants
    (one agent's of the "agent" view, a tenth of it with ten agents). The views a filter of one
    dims reads (SPLIT); "all" (one dims) and "cells" (two filters) are stored whole."""
    clean_ = clean(state)
    dims = list(clean_.get("dims") or [])
    groups: list[dict[str, Any]] = [{} for _ in dims]
    for key, cell in (clean_.get("cells") or {}).items():
        day, index = key.split("|")
        groups[int(index)][day] = cell
    return {
        "d": bson.encode({"dims": dims}),
        "p": [zlib.compress(bson.encode({"c": cells}), 1) if cells else b"" for cells in groups],
    }


def encode_whole(state: dict[str, Any]) -> dict[str, Any]:
    """A month view as one compressed blob: for the "cells" view (two filters at once, rare),
    whose many dims would cost a compaction a blob each, and for "all" (one dims)."""
    return {"z": zlib.compress(bson.encode(clean(state)), 1)}


SPLIT = frozenset({"dept", "agent", "conn"})  # the views stored a blob per dims (encode)


def encoder(view: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return encode if view in SPLIT else encode_whole


def decode(stored: dict[str, Any], where: Callable[[Dims], bool] | None = None) -> dict[str, Any]:
    """A stored month view, with only the cells whose dims satisfy `where` when given (what a
    filtered read needs; month_cells filters again, so a reader that folds a tail onto the
    part is still right). A view in one blob (`z`: encode_whole, and every view's totals
    written before the blob per dims) and an uncompressed `blob` (older still) read whole."""
    parts = stored.get("p")
    if parts is None:  # one blob (encode_whole, or totals written before the blob per dims)
        if stored.get("z"):
            return dict(bson.decode(zlib.decompress(stored["z"])))
        blob = stored.get("blob")
        return dict(bson.decode(bytes(blob))) if blob else {}
    dims: list[dict[str, Any]] = list(bson.decode(bytes(stored["d"]))["dims"])
    cells: dict[str, Any] = {}
    for i, blob in enumerate(parts):
        if blob and (where is None or where(_dims(dims[i]))):
            for day, cell in bson.decode(zlib.decompress(blob))["c"].items():
                cells[f"{day}|{i}"] = cell
    state: dict[str, Any] = {}
    if dims:
        state["dims"] = dims
    if cells:
        state["cells"] = cells
    return state


def _dims(stored: Mapping[str, Any]) -> Dims:
    return (stored.get("d"), stored.get("a"), stored.get("c"))


def fold_live(state: dict[str, Any], change: LiveChange) -> None:
    waiting: dict[str, Any] = state.setdefault("waiting", {})
    for ticket_id, item in change.wset.items():
        waiting[ticket_id] = dict(item)
    for ticket_id, dept in change.wmove.items():
        if ticket_id in waiting:
            waiting[ticket_id] = {**waiting[ticket_id], "d": dept}
    for ticket_id in change.wdel:
        waiting.pop(ticket_id, None)


def clean(state: dict[str, Any]) -> dict[str, Any]:
    """The state as stored: without the fold's in-memory index."""
    return {k: v for k, v in state.items() if not k.startswith("_")}


def month_cells(
    state: Mapping[str, Any], where: Callable[[Dims], bool] | None = None
) -> Iterable[tuple[str, Dims, Mapping[str, Any]]]:
    """(day "DD", dims, cell) for every cell of a month bucket (whose dims satisfy `where`:
    asked once per interned dims, not per cell — a year of the "agent" view is ~3,600 cells)."""
    dims: list[Dims] = [_dims(d) for d in state.get("dims") or []]
    wanted = {str(i): t for i, t in enumerate(dims) if where is None or where(t)}
    for key, cell in (state.get("cells") or {}).items():
        day, index = key.split("|")
        t = wanted.get(index)
        if t is not None:
            yield day, t, cell


def by_month(parts: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Parts grouped by the local month bucket they go to."""
    out: dict[str, list[dict[str, Any]]] = {}
    for p in parts:
        out.setdefault(str(p["m"]), []).append(p)
    return out


def message_dims(message: Message, ticket: Mapping[str, Any] | None) -> Dims:
    """Department and agent as stamped on the message when it was stored (messages.append);
    the ticket's current ones for a message from before the stamps. An agent's reply counts
    for the agent who sent it."""
    t = ticket or {}
    stamped = message.model_fields_set
    dept = message.department_id if "department_id" in stamped else t.get("department_id")
    if message.direction == "out" and message.sender_type == "agent":
        agent = message.sender_id
    else:
        agent = message.agent_id if "agent_id" in stamped else t.get("agent_id")
    conn = message.channel or t.get("channel")
    return (dept, agent, conn)
