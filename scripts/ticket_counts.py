"""Check the ticket counters (`/tickets/counts`) against the event log, and rebuild them.

    python -m scripts.ticket_counts --help
    python -m scripts.ticket_counts check [--tenant ID] [--fix]

For each tenant: counts every ticket's newest `ticket_events` entry (the truth), compares it with
what the counters answer (backend/tickets/counters.py), and reports every key that differs, the
events that have no delta entry, and a totals document that differs from its own entries. With
--fix: appends the missing deltas (run it once after deploying the counters over existing
tickets) and rewrites corrupted totals refolded from their entries, then checks again. It
appends and rewrites; it never deletes. Like every process that writes, --fix first passes the
backend's start-up gate (backend/gates.py).

A check under live traffic can report a ticket moved between its reads of the log and of the
counters; run it again. Exit code 0 when the counters equal the log, 1 when they differ
(after --fix: still differ), 3 when the database is unreachable, 4 when the gate refused.
"""

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from backend.core.db import Database
from backend.resellers import service as resellers
from backend.tickets import counters
from scripts.common import load_settings, out, run_audit

FIX_ROUNDS = 3  # a compaction racing the rewrite of corrupted totals can undo it; check again

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)


def _report(found: counters.Audit) -> None:
    if found.differences:
        table = Table("counter", "log says", "counters say", title=f"tenant {found.reseller_id}")
        for key, (want, have) in found.differences.items():
            table.add_row(key, str(want), str(have))
        out.print(table)
    if found.unrecorded:
        out.print(f"tenant {found.reseller_id}: {len(found.unrecorded)} event(s) without a counts delta")
    if found.totals_corrupt:
        out.print(f"tenant {found.reseller_id}: totals differ from their entries 1..{found.watermark}")
    if not found.complete:
        out.print(f"tenant {found.reseller_id}: not backfilled (counts are counted from the tickets)")


def _clean(found: counters.Audit) -> bool:
    return not found.differences and not found.unrecorded and not found.totals_corrupt and found.complete


async def check(db: Database, *, tenant: str | None, fix: bool) -> list[counters.Audit]:
    """The audits left at the end (after repair rounds with `fix`), one per tenant checked."""
    tenants = [tenant] if tenant else await resellers.all_ids(db)
    results: list[counters.Audit] = []
    for reseller_id in tenants:
        found = await counters.audit(db, reseller_id)
        _report(found)
        for _ in range(FIX_ROUNDS if fix else 0):
            if _clean(found):
                break
            await counters.repair(db, found)
            found = await counters.audit(db, reseller_id)
            if not _clean(found):
                _report(found)
        results.append(found)
    return results


@app.command("check")
def check_command(
    tenant: Annotated[str | None, typer.Option(help="only this tenant (reseller id)")] = None,
    fix: Annotated[bool, typer.Option("--fix", help="append missing deltas, rewrite corrupted totals")] = False,
    mongo_url: Annotated[str | None, typer.Option(help="overrides MONGO_URL")] = None,
    db: Annotated[str | None, typer.Option("--db", help="overrides MONGO_DB")] = None,
) -> None:
    """Compare the counters with the event log (and repair them with --fix)."""
    settings = load_settings(mongo_url, db)
    raise typer.Exit(asyncio.run(run_audit(settings, lambda d: check(d, tenant=tenant, fix=fix), _clean, fix=fix)))


if __name__ == "__main__":
    app()
