"""Exact ticket counts per (tenant, department, status) — and per viewing agent — whose cost does
not grow with the number of tickets.

`/tickets/counts` used to run count_documents over the tenant's tickets: on FerretDB, which
pushes down only `_id` equality, that read every ticket of every tenant, finalized ones included.
The counts are now folded from the event log instead.

The design (backend/core/foldlog.py: why it is exact on FerretDB v1, where concurrent $inc's on
one counter lose updates):

1. Deltas, appended, never updated. Every event that moves a ticket (creation, assume, transfer,
   finalize) contributes `contribution(new state) - contribution(previous state)`: +1/-1 on
   counter keys (the keys below), appended to the tenant's log with the event's `_id` as its
   contribution key. A retried or concurrent writer may append the same event twice; only its
   canonical entry (foldlog's claim: first insert wins) counts, so each event counts exactly once.
   The claim is the compactor's (`claim_on_write=False` below): a writer appends only.
2. Who writes a delta. The writer of an event, right after inserting it and *before* projecting
   it onto the ticket; and `projection.settle`, for every event it rolls the ticket forward over
   (before projecting it too). So "the ticket document shows version v" implies "every event up
   to v has an entry": a writer that died between its event and its delta left the ticket behind
   its log, and the next settle — a reader's, a writer's, or the sweep's within one sweep period
   with no reader at all (backend/tickets/sweep.py) — appends the missing delta.
3. Totals and reads are foldlog's: one totals document per tenant, compacted by a writer at
   every COMPACT_EVERY-th entry and by a reader past READER_COMPACTS_AT; a read is the totals and
   the tail past their watermark, 2 + 2 x tail `_id` reads whatever the number of tickets.

Stored (the layout the counters had before foldlog, kept): entry n of tenant T is `_id` "<T>:<n>"
of `ticket_count_deltas` (`event_id`, `inc`); claims are natural keys "count-delta:<event _id>";
totals are `ticket_counts/<T>` `{watermark, counts, complete}`.

Visibility is that of the lists (backend/tickets/visibility.py): the counter keys (below `COUNTS`)
say who counts what.

Where the guarantee ends: between an event and its delta (a writer in flight or dead) counts lag
the log by that event until it is settled — at most one sweep period with nobody reading.
`scripts/ticket_counts.py` recounts from the log, reports any difference and, with --fix,
appends the missing deltas and rewrites a corrupted totals document (it never deletes).
A tenant whose totals are not marked `complete` — one with tickets from before the counters, until
that --fix backfills it — is still counted from its ticket documents (`tickets.service.counts`).
"""

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backend.audit import service as events
from backend.core.db import Database
from backend.core.foldlog import FoldLog, Totals, View
from backend.core.runtime import EventHook, runtime_of
from backend.core.tenancy import Actor
from backend.core.tuning import COUNTS_COMPACT_EVERY as COMPACT_EVERY
from backend.core.tuning import COUNTS_MAX_FOLD as MAX_FOLD
from backend.core.tuning import COUNTS_READER_COMPACTS_AT as READER_COMPACTS_AT
from backend.tickets.models import TicketEvent, TicketState
from backend.tickets.states import Status

DELTAS = "ticket_count_deltas"
TOTALS = "ticket_counts"


def _add(counts: dict[str, Any], entry: Mapping[str, Any]) -> None:
    for key, n in entry["inc"].items():
        value = counts.get(key, 0) + int(n)
        if value:
            counts[key] = value
        else:
            counts.pop(key, None)


# One bucket per tenant (its id), one view (the counts); event ids are unique across tenants.
COUNTS = FoldLog(
    entries=DELTAS,
    totals=TOTALS,
    claim_kind="count-delta",
    views={"": View(_add)},
    compact_every=COMPACT_EVERY,
    reader_compacts_at=READER_COMPACTS_AT,
    max_fold=MAX_FOLD,
    key_field="event_id",
    state_field="counts",
    claims_by_bucket=False,
    # The writer appends its delta and leaves the claim to the compactor (one command for
    # COMPACT_EVERY deltas instead of one per ticket transition): counts commute, and no caller
    # needs to know whether its copy counts (see FoldLog's `claim_on_write`).
    claim_on_write=False,
)


# Counter keys:
#   d|<department>|<status>           a department's tickets in a status (resellers and admins;
#                                     agents for espera, per their departments)
#   a|<agent>|<status>                what an agent sees in atendendo/finalizado (tickets it holds
#   a|<agent>|<department>|<status>   or finalized), without and with the department filter


def on_event(db: Database, hook: EventHook) -> None:
    """Registers, in this process's runtime, what must see every ticket event before it is
    projected (a hook rather than an import: the reports domain builds on tickets)."""
    hooks = runtime_of(db).event_hooks
    if hook not in hooks:
        hooks.append(hook)


def contribution(state: TicketState) -> Counter[str]:
    """The counter keys one ticket in `state` adds 1 to."""
    status, dept = state.status, state.department_id
    keys: Counter[str] = Counter({f"d|{dept}|{status}": 1})
    viewers: set[str] = set()
    if status == Status.ATENDENDO and state.agent_id:
        viewers.add(state.agent_id)
    elif status == Status.FINALIZADO:
        viewers.update(v for v in (state.agent_id, state.finalized_by) if v)
    for viewer in viewers:
        keys[f"a|{viewer}|{status}"] += 1
        keys[f"a|{viewer}|{dept}|{status}"] += 1
    return keys


def delta(previous: TicketState | None, state: TicketState) -> dict[str, int]:
    """What moving one ticket from `previous` (None: it is being created) to `state` does."""
    out: dict[str, int] = dict(contribution(state))
    for key, n in (contribution(previous) if previous is not None else Counter()).items():
        out[key] = out.get(key, 0) - n
    return {k: v for k, v in out.items() if v}


async def record(
    db: Database, event: TicketEvent, *, previous_state: TicketState | None = None, check: bool = True
) -> None:
    """Appends `event`'s delta. `previous_state`: the state of the event before it when the caller
    has it (read from the log otherwise). `check`: skip when the event already has an entry (a
    settle rolling forward); the event's own writer passes False — it just created the event.

    Every ticket event passes here before it is projected (its writer, or the settle rolling
    forward over it), so this is also where the event hooks run (`on_event`: the reports'
    aggregates, registered by backend/gates.py); each hook is idempotent on its own."""
    for hook in runtime_of(db).event_hooks:
        await hook(db, event, previous_state)
    if check and await COUNTS.canonical(db, event.reseller_id, event.id) is not None:
        return
    previous = previous_state if previous_state is not None else await events.state_before_internal(db, event)
    change = delta(previous, event.state)
    if change:  # else nothing counted moved
        body = {"ticket_id": event.ticket_id, "version": event.version, "inc": change}
        await COUNTS.record(db, event.reseller_id, event.id, body, check=False)


async def compact(db: Database, reseller_id: str) -> int:
    """Folds the entries past the tenant's watermark into its totals. Returns the new watermark."""
    return await COUNTS.compact(db, reseller_id)


async def start_tenant(db: Database, reseller_id: str) -> None:
    """Called before a tenant exists: its counters cover it from its first ticket on."""
    await COUNTS.start(db, reseller_id, marks={"complete": True})


def _sum(counts: Mapping[str, int], prefix: str, suffix: str) -> int:
    return sum(v for k, v in counts.items() if k.startswith(prefix) and k.endswith(suffix) and k.count("|") == 2)


def view(counts: Mapping[str, int], actor: Actor, *, department_id: str | None) -> dict[str, int]:
    """The three numbers `actor` gets from a tenant's counters: what its lists would show."""
    out: dict[str, int] = {}
    for status in Status:
        s = status.value
        if actor.role == "agent":
            if status is Status.ESPERA:
                depts = [d for d in actor.department_ids if department_id in (None, d)]
                out[s] = sum(counts.get(f"d|{d}|{s}", 0) for d in depts)
            elif department_id is None:
                out[s] = counts.get(f"a|{actor.id}|{s}", 0)
            else:
                out[s] = counts.get(f"a|{actor.id}|{department_id}|{s}", 0)
        elif department_id is None:
            out[s] = _sum(counts, "d|", f"|{s}")
        else:
            out[s] = counts.get(f"d|{department_id}|{s}", 0)
    return out


async def for_actor(
    db: Database, actor: Actor, *, department_id: str | None, tenants: Sequence[str] | None = None
) -> dict[str, int] | None:
    """Over `tenants` (the actor's own by default). None while a tenant's counters do not cover
    its whole log (tickets from before the counters, not backfilled yet): the caller then counts
    the tickets themselves."""
    total: Counter[str] = Counter()
    for tenant in tenants if tenants is not None else [actor.reseller_id]:
        if tenant:
            # Complete: the totals cover the tenant's whole log (a tenant created with the
            # counters, or one backfilled by scripts/ticket_counts.py --fix).
            counts = await COUNTS.read(db, tenant)
            if not counts.marks.get("complete"):
                return None
            total.update(view(counts.state, actor, department_id=department_id))
    return {status.value: total[status.value] for status in Status}


@dataclass
class Audit:
    """One tenant's counters checked against the event log (scripts/ticket_counts.py)."""

    reseller_id: str
    truth: dict[str, int]  # every ticket's newest event, counted
    current: dict[str, int]  # what /tickets/counts reads now (totals + tail)
    unrecorded: list[TicketEvent]  # events that move a count and have no delta entry
    stored: Totals
    folded: Totals  # the canonical entries 1..watermark, summed afresh
    complete: bool  # whether /tickets/counts uses the counters yet (else it counts the tickets)

    @property
    def differences(self) -> dict[str, tuple[int, int]]:
        """key -> (log says, counters say), for every key where they differ."""
        keys = set(self.truth) | set(self.current)
        return {
            k: (self.truth.get(k, 0), self.current.get(k, 0))
            for k in sorted(keys)
            if self.truth.get(k, 0) != self.current.get(k, 0)
        }

    @property
    def watermark(self) -> int:
        return self.stored.watermark

    @property
    def totals_corrupt(self) -> bool:
        return self.stored.state != self.folded.state


async def audit(db: Database, reseller_id: str) -> Audit:
    """Reads the tenant's whole log and delta entries (scans: an operator's tool, never a request's).
    Compacts first: deltas are claimed when compacted (`claim_on_write=False`), so an event whose
    delta is in the tail would otherwise look unrecorded."""
    await COUNTS.compact(db, reseller_id)
    claims = await COUNTS.claims(db, reseller_id)
    truth: Counter[str] = Counter()
    unrecorded: list[TicketEvent] = []
    for chain in (await events.all_for_tenant_internal(db, reseller_id)).values():
        previous: TicketState | None = None
        for event in chain:
            if delta(previous, event.state) and event.id not in claims:
                unrecorded.append(event)
            previous = event.state
        truth.update(contribution(chain[-1].state))
    stored, folded = await COUNTS.refold(db, reseller_id)
    current = await COUNTS.read(db, reseller_id)
    return Audit(
        reseller_id=reseller_id,
        truth={k: v for k, v in truth.items() if v},
        current=current.state,
        unrecorded=unrecorded,
        stored=stored,
        folded=folded,
        complete=bool(current.marks.get("complete")),
    )


async def repair(db: Database, found: Audit) -> None:
    """Appends the missing deltas (older than the counters, or lost with a writer that never got
    settled) and, when the stored totals differ from their own entries, writes them refolded at
    the same watermark. Appends and rewrites only: nothing is deleted."""
    for event in found.unrecorded:
        await record(db, event)
    if found.totals_corrupt or not found.complete:
        # Every event of the log now has its entry: the totals cover the whole log from here on.
        complete = Totals(found.watermark, found.folded.state, {"complete": True})
        await COUNTS.write_totals(db, found.reseller_id, "", complete)
    await compact(db, found.reseller_id)


async def tenant_by_status(db: Database, reseller_id: str) -> dict[str, int]:
    """A tenant's tickets per status as its owner counts them (the metrics, the admin overview)."""
    owner = Actor(id="", role="reseller", name="", reseller_id=reseller_id)
    return view((await COUNTS.read(db, reseller_id)).state, owner, department_id=None)
