"""Ledger entries and the pure decision: baseline from past entries, verdict on today's counts.

No I/O here, so every rule of the guard is unit-testable with plain dicts.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# The six collections the persistence rules name (DOMAIN.md), and the sources of truth the
# guarantees rest on: the audit log, the natural keys that map a client's message to its open
# ticket (lost, every next message opens a duplicate ticket), the raw inbound deliveries (with the
# parts of those too large for one document), the outbound queue and the per-tenant counters
# (reset, every new ticket number collides). None of them may ever shrink. Media too, by their
# records (`media`, written once a file's bytes are complete): the GridFS collections' dotted
# names cannot be keys of a stored entry, and the chunks may dip while an upload cut midway takes
# its own chunks back; deploy_check and backup verify count all three. And the scheduled messages:
# each is a reply an agent wrote and expects to leave at its time.
GUARDED = (
    "tickets",
    "messages",
    "users",
    "departments",
    "reseller_configs",
    "whatsapp_connections",
    "ticket_events",
    "natural_keys",
    "webhook_events_raw",
    "webhook_bodies",
    "outbox",
    "counters",
    "media",
    "scheduled_messages",
)

OK = "ok"
OVERRIDE = "override"
REFUSED = "refused"


@dataclass(frozen=True)
class Shrink:
    collection: str
    recorded: int
    now: int
    entry_id: str  # the start that recorded the larger count

    def describe(self) -> str:
        return f"{self.collection} {self.recorded} -> {self.now}"


@dataclass(frozen=True)
class Baseline:
    """The largest count per collection over the starts that still bind (see `baseline`)."""

    latest_id: str | None = None
    latest_version: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # collection -> entry id holding the max
    entries: int = 0

    @property
    def had_data(self) -> bool:
        return any(n > 0 for n in self.counts.values())


@dataclass(frozen=True)
class Verdict:
    baseline: Baseline
    counts: dict[str, int]
    shrinks: list[Shrink]

    @property
    def ok(self) -> bool:
        return not self.shrinks

    @property
    def empty_database(self) -> bool:
        return self.baseline.had_data and all(self.counts.get(c, 0) == 0 for c in GUARDED)


def baseline(entries: Iterable[Mapping[str, Any]]) -> Baseline:
    """Max count per collection over accepted starts, newest first, back to and including the most
    recent override: an override re-bases the ledger, so the starts before it no longer bind.

    Refused starts never bind (their counts are the suspicious ones). Entry ids begin with the
    UTC start time, so sorting ids orders starts; a skewed clock only reorders near-simultaneous
    starts, which the per-collection max makes harmless.
    """
    ordered = sorted({str(e["_id"]): e for e in entries}.values(), key=lambda e: str(e["_id"]), reverse=True)
    counts: dict[str, int] = {}
    sources: dict[str, str] = {}
    latest: Mapping[str, Any] | None = None
    used = 0
    for entry in ordered:
        if entry.get("outcome") not in (OK, OVERRIDE):
            continue
        latest = latest or entry
        used += 1
        for name in GUARDED:
            n = int(entry.get("counts", {}).get(name, 0))
            if n > counts.get(name, -1):
                counts[name] = n
                sources[name] = str(entry["_id"])
        if entry.get("outcome") == OVERRIDE:
            break
    return Baseline(
        latest_id=str(latest["_id"]) if latest else None,
        latest_version=str(latest.get("version")) if latest else None,
        counts=counts,
        sources=sources,
        entries=used,
    )


def judge(base: Baseline, counts: Mapping[str, int]) -> Verdict:
    shrinks = [
        Shrink(name, base.counts[name], int(counts.get(name, 0)), base.sources[name])
        for name in GUARDED
        if name in base.counts and int(counts.get(name, 0)) < base.counts[name]
    ]
    return Verdict(baseline=base, counts=dict(counts), shrinks=shrinks)


def same_database(entry: Mapping[str, Any], *, identity: str | None, db_name: str) -> bool:
    """Is this ledger entry about the database we are connected to?

    A database's identity is a random id stored in it at its first recorded start (store.py), so
    it travels with the data (backups, a move to another server) and is gone with it (an emptied
    database, a fresh server behind the same URL, another MONGO_DB). Entries written before
    identities existed are matched by database name.
    """
    recorded = entry.get("identity")
    if recorded is None or identity is None:
        return entry.get("db") == db_name
    return bool(recorded == identity)


def guards_another_database(bound: Mapping[str, Any] | None, *, identity: str | None, db_name: str) -> bool:
    """`bound` is the file's newest accepted entry: the database the file guards today. Another
    name, another identity, or no identity at all while the file holds one (an emptied or new
    database) is another database."""
    if bound is None:
        return False
    recorded = bound.get("identity")
    if recorded is None:
        return bound.get("db") != db_name
    return bool(recorded != identity)


def override_applies(
    verdict: Verdict, *, baseline_id: str, reason: str, foreign: Mapping[str, Any] | None = None
) -> bool:
    """An override must name the exact baseline it accepts, so a flag left in the environment
    cannot silently accept a later, different loss. Against another database that is the entry
    of the database the file guards: the operator accepts this one in its place, as it is."""
    expected = str(foreign["_id"]) if foreign is not None else verdict.baseline.latest_id
    return bool(reason.strip()) and bool(baseline_id) and baseline_id == expected


def describe_database(db_name: Any, server: Any, identity: Any) -> str:
    where = f" at {server}" if server else ""
    ident = f"identity {identity}" if identity else "no identity: a new or emptied database"
    return f"database {db_name!r}{where} ({ident})"


def refusal_message(
    verdict: Verdict,
    *,
    db_name: str,
    where: str,
    foreign: Mapping[str, Any] | None = None,
    here: str = "",
) -> str:
    b = verdict.baseline
    parts: list[str] = []
    if foreign is not None:
        guarded = describe_database(foreign.get("db"), foreign.get("server"), foreign.get("identity"))
        parts.append(
            f"the deploy ledger file guards {guarded}, last accepted start {foreign['_id']} "
            f"(version {foreign.get('version')}), but this is {here}"
        )
    if verdict.shrinks:
        head = (
            f"database {db_name!r} is EMPTY although the deploy ledger recorded data"
            if verdict.empty_database
            else f"database {db_name!r} has fewer documents than the deploy ledger recorded"
        )
        detail = ", ".join(s.describe() for s in verdict.shrinks)
        parts.append(
            f"{head}: {detail} (recorded -> now; last accepted start {b.latest_id}, version {b.latest_version})"
        )
    text = "; ".join(parts) + f" (ledger read from {where}). Refusing to serve."
    if foreign is not None:
        return (
            f"{text} If this database is meant to replace the one the file guards, restart with "
            f"LEDGER_OVERRIDE_BASELINE={foreign['_id']} and LEDGER_OVERRIDE_REASON='<why>' (recorded in the "
            "ledger); to keep two databases, give each its own LEDGER_FILE."
        )
    return (
        f"{text} If the loss is understood and accepted, restart with "
        f"LEDGER_OVERRIDE_BASELINE={b.latest_id} and LEDGER_OVERRIDE_REASON='<why>' (recorded in the ledger)."
    )
