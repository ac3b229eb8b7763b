"""Ledger entries and the pure decision: baseline from past entries, verdict on today's counts.

No I/O here, so every rule of the guard is unit-testable with plain dicts.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# The six collections the persistence rules name (DOMAIN.md). None of them may ever shrink.
GUARDED = ("tickets", "messages", "users", "departments", "reseller_configs", "whatsapp_connections")

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


def override_applies(verdict: Verdict, *, baseline_id: str, reason: str) -> bool:
    """An override must name the exact baseline it accepts, so a flag left in the environment
    cannot silently accept a later, different loss."""
    return bool(reason.strip()) and bool(baseline_id) and baseline_id == verdict.baseline.latest_id


def refusal_message(verdict: Verdict, *, db_name: str, where: str) -> str:
    b = verdict.baseline
    head = (
        f"database {db_name!r} is EMPTY although the deploy ledger recorded data"
        if verdict.empty_database
        else f"database {db_name!r} has fewer documents than the deploy ledger recorded"
    )
    detail = ", ".join(s.describe() for s in verdict.shrinks)
    return (
        f"{head}: {detail} (recorded -> now; last accepted start {b.latest_id}, version {b.latest_version}; "
        f"ledger read from {where}). Refusing to serve. If the loss is understood and accepted, restart with "
        f"LEDGER_OVERRIDE_BASELINE={b.latest_id} and LEDGER_OVERRIDE_REASON='<why>' (recorded in the ledger)."
    )
