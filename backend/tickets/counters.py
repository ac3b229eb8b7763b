"""Exact ticket counts per (tenant, department, status) — and per viewing agent — whose cost does
not grow with the number of tickets.

`/tickets/counts` used to run count_documents over the tenant's tickets: on FerretDB, which
pushes down only `_id` equality, that read every ticket of every tenant, finalized ones included.
The counts are now folded from the event log instead.

The design, and why it is exact on FerretDB v1, where every update (an $inc too) is read →
modify → write the whole document back, so concurrent $inc's on one counter lose updates:

1. Deltas, appended, never updated. Every event that moves a ticket (creation, assume, transfer,
   finalize) contributes `contribution(new state) - contribution(previous state)`: +1/-1 on
   counter keys (the keys below). It is appended to the tenant's delta log (`ticket_count_deltas`,
   entry n = `_id` "<tenant>:<n>", backend/core/seqlog.py plain append: a unique `_id` insert,
   entries exactly 1..head with no holes). A retried or concurrent writer may append the same
   event twice; the event's *canonical* entry is decided by a unique claim (natural key
   "count-delta:<event _id>" -> n, first insert wins, never changes), and only the canonical entry
   counts. So each event counts exactly once, whoever wrote it and however often.
2. Who writes a delta. The writer of an event, right after inserting it and *before* projecting
   it onto the ticket; and `projection.settle`, for every event it rolls the ticket forward over
   (before projecting it too). So "the ticket document shows version v" implies "every event up
   to v has an entry": a writer that died between its event and its delta left the ticket behind
   its log, and the next settle — a reader's, a writer's, or the sweep's within one sweep period
   with no reader at all (backend/tickets/sweep.py) — appends the missing delta.
3. Totals. One document per tenant, `ticket_counts/<tenant>`: `{watermark: w, counts}` = the sum
   of the canonical entries 1..w. A compactor reads it, walks entries w+1, w+2, … (by `_id`,
   claiming an entry that has no claim yet so that its canonical entry is fixed before it is
   folded), and writes the pair (watermark, counts) back in one `$set` of both fields. Every
   stored pair is therefore some compactor's consistent snapshot (an older snapshot plus
   contiguous entries): two compactors at once (or a FerretDB write-back of an older pair) can
   only move the watermark back, which costs the next reader a longer tail, never a wrong count.
   No lease is needed for correctness, so none is taken: compaction is triggered by the writer
   whose entry number is a multiple of COMPACT_EVERY (one writer in COMPACT_EVERY), and by a
   reader that walked a tail longer than READER_COMPACTS_AT (a compacting writer died).
4. Reading: the totals document, then the tail past its watermark (usually < COMPACT_EVERY
   entries): an entry counts when its event is not yet counted in this tail and its claim points
   to it or does not exist yet (its writer is between append and claim; a duplicate of an event
   already folded always finds that event's claim, which the compactor wrote before folding).
   Cost: 2 + 2 x tail reads by `_id` per tenant, whatever the number of tickets.

Visibility is that of the lists (backend/tickets/visibility.py): a reseller counts its tenant's
tickets per department; an agent counts espera in its departments (`d|<dept>|espera`) and the
atendendo/finalizado tickets it holds or finalized (`a|<agent>|…`), optionally per department.

Where the guarantee ends: between an event and its delta (a writer in flight or dead) counts lag
the log by that event until it is settled — at most one sweep period with nobody reading.
`scripts/ticket_counts.py` recounts from the log, reports any difference and, with --fix,
appends the missing deltas and rewrites a corrupted totals document (it never deletes).
A tenant whose totals are not marked `complete` — one with tickets from before the counters, until
that --fix backfills it — is still counted from its ticket documents (`tickets.service.counts`).
"""

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymongo.errors import PyMongoError

from backend.audit import service as events
from backend.core.db import Database
from backend.core.logging import get_logger
from backend.core.runtime import EventHook, runtime_of
from backend.core.tenancy import Actor
from backend.core.tuning import COUNTS_COMPACT_EVERY as COMPACT_EVERY
from backend.core.tuning import COUNTS_MAX_FOLD as MAX_FOLD
from backend.core.tuning import COUNTS_READER_COMPACTS_AT as READER_COMPACTS_AT
from backend.tickets import counters_repository as repo
from backend.tickets.states import Status

log = get_logger("tickets.counters")


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


def contribution(state: Mapping[str, Any]) -> Counter[str]:
    """The counter keys one ticket in `state` adds 1 to."""
    status, dept = str(state["status"]), str(state["department_id"])
    keys: Counter[str] = Counter({f"d|{dept}|{status}": 1})
    viewers: set[str] = set()
    if status == Status.ATENDENDO.value and state.get("agent_id"):
        viewers.add(str(state["agent_id"]))
    elif status == Status.FINALIZADO.value:
        viewers.update(str(v) for v in (state.get("agent_id"), state.get("finalized_by")) if v)
    for viewer in viewers:
        keys[f"a|{viewer}|{status}"] += 1
        keys[f"a|{viewer}|{dept}|{status}"] += 1
    return keys


def delta(previous: Mapping[str, Any] | None, state: Mapping[str, Any]) -> dict[str, int]:
    """What moving one ticket from `previous` (None: it is being created) to `state` does."""
    out: dict[str, int] = dict(contribution(state))
    for key, n in (contribution(previous) if previous is not None else Counter()).items():
        out[key] = out.get(key, 0) - n
    return {k: v for k, v in out.items() if v}


async def record(
    db: Database, event: Mapping[str, Any], *, previous_state: Mapping[str, Any] | None = None, check: bool = True
) -> None:
    """Appends `event`'s delta. `previous_state`: the state of the event before it when the caller
    has it (read from the log otherwise). `check`: skip when the event already has an entry (a
    settle rolling forward); the event's own writer passes False — it just created the event.

    Every ticket event passes here before it is projected (its writer, or the settle rolling
    forward over it), so this is also where the event hooks run (`on_event`: the reports'
    aggregates, registered by backend/gates.py); each hook is idempotent on its own."""
    for hook in runtime_of(db).event_hooks:
        await hook(db, dict(event), dict(previous_state) if previous_state is not None else None)
    event_id = str(event["_id"])
    if check and await repo.canonical(db, event_id) is not None:
        return
    version = int(event["version"])
    previous = previous_state
    if previous is None and version > 1:
        before = await events.get_internal(db, str(event["ticket_id"]), version - 1)
        assert before is not None, f"event {event_id} follows no event"  # versions have no holes
        previous = before["state"]
    change = delta(previous, event["state"])
    if not change:
        return  # nothing counted moved
    tenant = str(event["reseller_id"])
    body = {"event_id": event_id, "ticket_id": str(event["ticket_id"]), "version": version, "inc": change}
    seq = await repo.append(db, tenant, body)
    await repo.claim(db, event_id, seq)
    if seq % COMPACT_EVERY == 0:
        try:
            await compact(db, tenant)
        except PyMongoError as exc:  # the delta is stored; the next compaction folds it
            log.warning("ticket counts compaction failed", reseller_id=tenant, error=str(exc))


def _add(counts: dict[str, int], inc: Mapping[str, Any]) -> None:
    for key, n in inc.items():
        value = counts.get(key, 0) + int(n)
        if value:
            counts[key] = value
        else:
            counts.pop(key, None)


async def compact(db: Database, reseller_id: str) -> int:
    """Folds the entries past the tenant's watermark into its totals. Returns the new watermark.
    Safe to run concurrently with itself and with writers (module docstring, point 3)."""
    doc = await repo.totals(db, reseller_id)
    watermark = int(doc["watermark"]) if doc else 0
    counts: dict[str, int] = dict(doc["counts"]) if doc else {}
    n = watermark
    while n - watermark < MAX_FOLD and (entry := await repo.entry(db, reseller_id, n + 1)) is not None:
        n += 1
        event_id = str(entry["event_id"])
        canonical = await repo.canonical(db, event_id)
        if canonical is None:
            canonical = await repo.claim(db, event_id, n)
        if canonical == n:
            _add(counts, entry["inc"])
    if n > watermark:
        await repo.write_totals(db, reseller_id, watermark=n, counts=counts)
    return n


async def start_tenant(db: Database, reseller_id: str) -> None:
    """Called before a tenant exists: its counters cover it from its first ticket on."""
    await repo.start_totals(db, reseller_id)


async def tenant_counts(db: Database, reseller_id: str) -> dict[str, int]:
    """Every counter of a tenant as of now: totals plus the tail past their watermark (point 4)."""
    return (await _tenant_state(db, reseller_id))[0]


async def _tenant_state(db: Database, reseller_id: str) -> tuple[dict[str, int], bool]:
    """(counters, complete): complete when the totals cover the tenant's whole log — a tenant
    created with the counters, or one backfilled by scripts/ticket_counts.py --fix."""
    doc = await repo.totals(db, reseller_id)
    watermark = int(doc["watermark"]) if doc else 0
    counts: dict[str, int] = dict(doc["counts"]) if doc else {}
    counted: set[str] = set()
    n = watermark
    while (entry := await repo.entry(db, reseller_id, n + 1)) is not None:
        n += 1
        event_id = str(entry["event_id"])
        if event_id in counted:
            continue
        canonical = await repo.canonical(db, event_id)
        if canonical is None or canonical == n:
            counted.add(event_id)
            _add(counts, entry["inc"])
    if n - watermark >= READER_COMPACTS_AT:
        try:
            await compact(db, reseller_id)
        except PyMongoError as exc:
            log.warning("ticket counts compaction failed", reseller_id=reseller_id, error=str(exc))
    return counts, bool(doc and doc.get("complete"))


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


async def for_actor(db: Database, actor: Actor, *, department_id: str | None) -> dict[str, int] | None:
    """None while a tenant's counters do not cover its whole log (tickets from before the
    counters, not backfilled yet): the caller then counts the tickets themselves."""
    tenants = [actor.reseller_id] if not actor.is_admin else await repo.tenant_ids(db)
    total: Counter[str] = Counter()
    for tenant in tenants:
        if tenant:
            counts, complete = await _tenant_state(db, tenant)
            if not complete:
                return None
            total.update(view(counts, actor, department_id=department_id))
    return {status.value: total[status.value] for status in Status}


@dataclass
class Audit:
    """One tenant's counters checked against the event log (scripts/ticket_counts.py)."""

    reseller_id: str
    truth: dict[str, int]  # every ticket's newest event, counted
    current: dict[str, int]  # what /tickets/counts reads now (totals + tail)
    unrecorded: list[dict[str, Any]]  # events that move a count and have no delta entry
    watermark: int
    stored_totals: dict[str, int]
    folded_totals: dict[str, int]  # the canonical entries 1..watermark, summed afresh
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
    def totals_corrupt(self) -> bool:
        return self.stored_totals != self.folded_totals


async def audit(db: Database, reseller_id: str, *, claims: Mapping[str, int] | None = None) -> Audit:
    """Reads the tenant's whole log and delta entries (scans: an operator's tool, never a request's).
    `claims`: all count claims, when the caller checks many tenants."""
    claims = claims if claims is not None else await repo.all_claims(db)
    truth: Counter[str] = Counter()
    unrecorded: list[dict[str, Any]] = []
    by_ticket: dict[str, list[dict[str, Any]]] = {}
    for event in await events.all_for_tenant_internal(db, reseller_id):
        by_ticket.setdefault(str(event["ticket_id"]), []).append(event)
    for chain in by_ticket.values():
        chain.sort(key=lambda e: int(e["version"]))
        previous: Mapping[str, Any] | None = None
        for event in chain:
            if delta(previous, event["state"]) and str(event["_id"]) not in claims:
                unrecorded.append(event)
            previous = event["state"]
        truth.update(contribution(chain[-1]["state"]))
    doc = await repo.totals(db, reseller_id)
    watermark = int(doc["watermark"]) if doc else 0
    folded: dict[str, int] = {}
    for entry in await repo.all_entries(db, reseller_id):
        seq = int(entry["seq"])
        if seq <= watermark and claims.get(str(entry["event_id"])) == seq:
            _add(folded, entry["inc"])
    return Audit(
        reseller_id=reseller_id,
        truth={k: v for k, v in truth.items() if v},
        current=await tenant_counts(db, reseller_id),
        unrecorded=unrecorded,
        watermark=watermark,
        stored_totals=dict(doc["counts"]) if doc else {},
        folded_totals=folded,
        complete=bool(doc and doc.get("complete")),
    )


async def repair(db: Database, found: Audit) -> None:
    """Appends the missing deltas (older than the counters, or lost with a writer that never got
    settled) and, when the stored totals differ from their own entries, writes them refolded at
    the same watermark. Appends and rewrites only: nothing is deleted."""
    for event in found.unrecorded:
        await record(db, event)
    if found.totals_corrupt or not found.complete:
        # Every event of the log now has its entry: the totals cover the whole log from here on.
        await repo.write_totals(
            db, found.reseller_id, watermark=found.watermark, counts=found.folded_totals, complete=True
        )
    await compact(db, found.reseller_id)


async def tenant_by_status(db: Database, reseller_id: str) -> dict[str, int]:
    """A tenant's tickets per status as its owner counts them (the metrics, the admin overview)."""
    owner = Actor(id="", role="reseller", name="", reseller_id=reseller_id)
    return view(await tenant_counts(db, reseller_id), owner, department_id=None)
