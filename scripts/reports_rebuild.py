"""Rebuild the reports' aggregates from the log and report any difference from the incremental
figures (what `/reports/summary` and `/reports/agents` answer).

    python -m scripts.reports_rebuild [--tenant ID] [--fix]

For each tenant: recomputes every month bucket and the waiting queue from `ticket_events` and
`messages` (backend/reports/rebuild.py says where the two can differ and why), compares them
with the aggregates (totals plus their tails), checks every totals document against its own
entries, and prints what differs. With --fix: rewrites corrupted totals refolded from their
entries and appends one correction entry per bucket that still differs, then checks again. It
appends and rewrites; it never deletes. Like every process that writes, --fix first passes the
backend's start-up gate (backend/gates.py).

Exit code 0 when the aggregates equal the log, 1 when they differ (after --fix: still differ),
3 when the database is unreachable, 4 when the gate refused. Under live traffic a check can see
an event between its two reads: run it again.
"""

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from backend.core.db import Database
from backend.reports import rebuild
from backend.resellers import service as resellers
from scripts.common import load_settings, out, run_audit

FIX_ROUNDS = 3  # a compaction racing a totals rewrite can undo it; check again

app = typer.Typer(help=__doc__, add_completion=False)


def _report(found: rebuild.Audit) -> None:
    for month, keys in found.month_differences.items():
        table = Table("day", "department", "agent", "connection", "log says", "aggregates say")
        table.title = f"tenant {found.reseller_id}, {month} ({found.timezone})"
        for key in keys:
            want = found.truth_months.get(month, {}).get(key)
            have = found.current_months.get(month, {}).get(key)
            table.add_row(*(str(k) for k in key), str(want), str(have))
        out.print(table)
    if found.waiting_differences:
        out.print(f"tenant {found.reseller_id}: waiting queue differs for {len(found.waiting_differences)} ticket(s)")
    for bucket in found.corrupt:
        out.print(f"tenant {found.reseller_id}: totals of {bucket} differ from their entries")


async def check(db: Database, *, tenant: str | None, fix: bool) -> list[rebuild.Audit]:
    """The audits left at the end (after repair rounds with `fix`), one per tenant checked."""
    tenants = [tenant] if tenant else await resellers.all_ids(db)
    results: list[rebuild.Audit] = []
    for reseller_id in tenants:
        found = await rebuild.audit(db, reseller_id)
        _report(found)
        for _ in range(FIX_ROUNDS if fix else 0):
            if found.clean:
                break
            await rebuild.repair(db, found)
            found = await rebuild.audit(db, reseller_id)
            if not found.clean:
                _report(found)
        results.append(found)
    return results


@app.command()
def main(
    tenant: Annotated[str | None, typer.Option(help="only this tenant (reseller id)")] = None,
    fix: Annotated[bool, typer.Option("--fix", help="rewrite corrupted totals, append corrections")] = False,
    mongo_url: Annotated[str | None, typer.Option(help="overrides MONGO_URL")] = None,
    db: Annotated[str | None, typer.Option("--db", help="overrides MONGO_DB")] = None,
) -> None:
    """Compare the reports' aggregates with the log (and correct them with --fix)."""
    settings = load_settings(mongo_url, db)
    raise typer.Exit(
        asyncio.run(run_audit(settings, lambda d: check(d, tenant=tenant, fix=fix), lambda found: found.clean, fix=fix))
    )


if __name__ == "__main__":
    app()
