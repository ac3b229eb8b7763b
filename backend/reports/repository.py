"""Where the reports' aggregates live: two backend/core/foldlog.py logs over one pair of
collections, every query by `_id`.

- `report_entries`: contribution entry n of bucket B is `_id` "<B>:<n>".
- `report_totals`: one document per bucket view, `_id` "<bucket>|<view>" (a month's views:
  reports/aggregates.py PROJECTIONS; the live bucket has one, `_id` the bucket):
  `{watermark, state}`, a month view's state one BSON blob.
- `natural_keys` kinds "report" (contribution key -> its counting entry), "report-first-in"
  (ticket -> its first client message's time) and "report-first-reply" (ticket -> the reply that
  answered it first).
"""

import asyncio
import functools
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

from backend.core import natural_keys
from backend.core.db import Database
from backend.core.foldlog import FoldLog, Totals, View
from backend.core.runtime import runtime_of
from backend.reports import aggregates
from backend.reports.models import LiveChange, LiveEntry, MonthEntry

ENTRIES = "report_entries"
TOTALS = "report_totals"
FIRST_IN = "report-first-in"
FIRST_REPLY = "report-first-reply"
FIRST_REPLY_BEFORE = "report-first-reply-before"
FIRST_IN_HINTS = 20_000  # tickets whose first client message a process remembers claimed

MONTHS = FoldLog(
    entries=ENTRIES,
    totals=TOTALS,
    claim_kind="report",
    views={
        v: View(aggregates.month_view(v), aggregates.encoder(v), aggregates.decode, MonthEntry.trusted)
        for v in aggregates.PROJECTIONS
    },
    # Small tails: a reader walks at most COMPACT_EVERY - 1 entries past a view's watermark (each an
    # entry and a claim read); a compaction rewrites the month's views every 8 contributions.
    compact_every=8,
    reader_compacts_at=32,
    # Writers append and leave the claims to the compactor (one insert command for its tail
    # instead of one per contribution, and no claim reads in its tail): the month views are
    # counts, hour histograms and value multisets, so their folds commute; a value taken back
    # (`fr_del`) is appended only once the entry adding it was recorded, and the canonical copy
    # of a key is then its first in the log, before the take-back. The one writer that needs its
    # answer for the first-response histogram hears it from the first-reply claim instead
    # (claim_first_reply): a claim on write would bind its own copy, maybe one appended after
    # the take-back of its value.
    claim_on_write=False,
    # A compaction starts from the views' totals this process last wrote (no marks here): no
    # read of the 6 documents before each one (foldlog's `keeps_totals`).
    keeps_totals=True,
)
LIVE = FoldLog(
    entries=ENTRIES,
    totals=TOTALS,
    claim_kind="report",
    views={"": View(aggregates.fold_live, load=LiveEntry.trusted)},
    compact_every=8,
    # The queue needs order, not claims on write: a ticket's events are recorded in version order
    # (aggregates.py) and a key's canonical copy, left to the compactor, is its first in the log —
    # appended before its record returned, so before the next event's entries.
    claim_on_write=False,
    keeps_totals=True,
)


# No look-up before the append (`check=False`): with claims left to the compactor it would find
# only a contribution already compacted, so it would cost every record a read to spare a repeat
# (a retried delivery, a settle rolling forward over an event its writer recorded) an entry; a
# repeat's copy never counts (a key counts at its first copy, or at its claim once compacted).


async def record_month(db: Database, reseller_id: str, month: str, key: str, parts: list[dict[str, Any]]) -> None:
    await MONTHS.record(db, aggregates.month_bucket(reseller_id, month), key, {"parts": parts}, check=False)


async def record_live(db: Database, reseller_id: str, key: str, change: LiveChange) -> None:
    # Only the fields it changes: stored as before the model, one key per entry.
    body = change.model_dump(exclude_defaults=True)
    await LIVE.record(db, aggregates.live_bucket(reseller_id), key, body, check=False)


async def months(
    db: Database,
    reseller_id: str,
    names: list[str],
    view: str = "cells",
    where: Callable[[aggregates.Dims], bool] | None = None,
) -> list[dict[str, Any]]:
    """One view of the month buckets, read concurrently (each is a few `_id` reads); with
    `where`, only the cells of the dims it accepts are decoded (and maybe a tail's others)."""
    buckets = [aggregates.month_bucket(reseller_id, m) for m in names]
    decode = functools.partial(aggregates.decode, where=where)
    return [t.state for t in await asyncio.gather(*(MONTHS.read(db, b, view, decode=decode) for b in buckets))]


async def live(db: Database, reseller_id: str) -> dict[str, Any]:
    return (await LIVE.read(db, aggregates.live_bucket(reseller_id))).state


async def claim_first_in(db: Database, ticket_id: str, at_ms: int) -> None:
    """The ticket's first client message time: the first recorded claims it, once. This process
    remembers the tickets whose claim it has seen taken (a claim never changes, so the hint is
    never wrong, only missing: then one insert that loses), so the later client messages of a
    ticket it recorded send nothing."""
    hints, key = runtime_of(db).report_first_in, (db.name, ticket_id)
    if key in hints:
        hints.move_to_end(key)
        return
    won = await natural_keys.bind(db, FIRST_IN, ticket_id, target=str(at_ms))
    _remember(hints, key, at_ms if won else None)


async def first_in(db: Database, ticket_id: str) -> int | None:
    hints, key = runtime_of(db).report_first_in, (db.name, ticket_id)
    known = hints.get(key)
    if known is not None:  # claimed by this process: the time it bound
        return known
    bound = await natural_keys.lookup(db, FIRST_IN, ticket_id)
    if bound is None:
        return None
    _remember(hints, key, int(bound))
    return int(bound)


def _remember(hints: "OrderedDict[tuple[str, str], int | None]", key: tuple[str, str], at_ms: int | None) -> None:
    hints[key] = at_ms
    hints.move_to_end(key)
    if len(hints) > FIRST_IN_HINTS:
        hints.popitem(last=False)


class FirstReply(NamedTuple):
    first: bool  # this reply is the ticket's first as far as replies are recorded
    displaced: str | None  # the reply it took the place of
    won: bool  # this call inserted the claim that made it first: true once per first reply


async def claim_first_reply(db: Database, ticket_id: str, at_ms: int, message_id: str) -> FirstReply:
    """Whether this reply is the ticket's first as far as replies are recorded (the earliest by
    (time, id), as the log orders them), and the reply it displaced. Replies are not recorded in
    the order they were sent (two at once, or one recorded late by a retry), so the first claim
    may go to a later one: an earlier reply then claims the place *before* it, one unique key
    per displaced reply, first insert wins, so the chain only moves to earlier replies and every
    reply finds the same answer each time it asks (its entry is the same on a retry). The chain
    a reply follows is the same each time (claims never change), so it stops at the same key,
    and only the call whose insert bound that key to it hears `won`."""
    me = f"{at_ms}:{message_id}"
    bound, won = await natural_keys.claim(db, FIRST_REPLY, ticket_id, target=me)
    displaced: str | None = None
    while bound != me:
        at, _, other = bound.partition(":")
        if (at_ms, message_id) > (int(at), other):
            return FirstReply(False, None, False)
        displaced = other
        bound, won = await natural_keys.claim(db, FIRST_REPLY_BEFORE, ticket_id, other, target=me)
    return FirstReply(True, displaced, won)


async def month_totals(db: Database, reseller_id: str, month: str, view: str) -> tuple[Totals, Totals]:
    """(a month view's stored totals, the same refolded from their entries: foldlog's `refold`)."""
    return await MONTHS.refold(db, aggregates.month_bucket(reseller_id, month), view)


async def write_month(db: Database, reseller_id: str, month: str, view: str, totals: Totals) -> None:
    await MONTHS.write_totals(db, aggregates.month_bucket(reseller_id, month), view, totals)


async def live_totals(db: Database, reseller_id: str) -> tuple[Totals, Totals]:
    return await LIVE.refold(db, aggregates.live_bucket(reseller_id), "")


async def write_live(db: Database, reseller_id: str, totals: Totals) -> None:
    await LIVE.write_totals(db, aggregates.live_bucket(reseller_id), "", totals)


async def known_months(db: Database, reseller_id: str) -> list[str]:
    """The months a tenant has totals for (the rebuild's scan of the totals; never a request's)."""
    prefix = aggregates.month_bucket(reseller_id, "")
    out: set[str] = set()
    async for doc in db[TOTALS].find({"_id": {"$regex": f"^{prefix}"}}, {"_id": 1}):
        out.add(str(doc["_id"])[len(prefix) :].split("|")[0])
    async for doc in db[ENTRIES].find({"bucket": {"$regex": f"^{prefix}"}}, {"bucket": 1}):
        out.add(str(doc["bucket"])[len(prefix) :])
    return sorted(out)
