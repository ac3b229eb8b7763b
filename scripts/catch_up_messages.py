"""Files the client messages the WhatsApp provider kept and never delivered here: after an outage
longer than its webhook retries (about a day with the compose stack's settings), or one during
which Evolution itself restarted (its retries live in its memory).

    python -m scripts.catch_up_messages --since 2026-12-05T10:00 [--until ISO] [--connection ID] [--dry-run]

For each connection bound to an Evolution instance, deactivated ones too (what their clients
write is still filed), or the one named, asks Evolution for the messages it stored stamped
between `--since` and `--until` (default: now) — its findMessages, which needs
DATABASE_SAVE_DATA_NEW_MESSAGE on (the compose stack sets it) — and stores those not stored here
as history-sync deliveries, one per chat in that chat's lane (backend.webhooks.service.catch_up).
The backend's webhook processors file them within seconds, as any delivery: one stored meanwhile
is a duplicate by its id and changes nothing, one from before the connection stays out. So it is
safe to run with a generous window, and again. `--dry-run` only counts what the provider holds.
The backends do this themselves after a restart and after a webhook drift
(backend/webhooks/watch.py); this is for a window of the operator's choosing.

Like every process that writes, it first passes the backend's start-up gate (backend/gates.py).
Exit code 0 when done, 2 when a connection is unknown, 3 when the database is unreachable, 4 when
the start-up gate refused, 5 when the provider failed for one or more connections: each is caught
up on its own, so the others are done all the same, and the failed ones are listed at the end
(what was stored for them before the failure stays stored; run again for them).
"""

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import httpx
import typer
from pymongo.errors import PyMongoError
from rich.console import Console
from rich.table import Table

from backend.connections import service as connections
from backend.connections.providers import registry
from backend.core.config import Settings
from backend.core.db import Database
from backend.webhooks import service
from scripts.common import GATE_REFUSED, gated_database
from scripts.reprocess_webhooks import DbName, MongoUrl, _settings

UNKNOWN, UNREACHABLE, PROVIDER_FAILED = 2, 3, 5

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
console = Console()


def _moment(value: str) -> datetime:
    """An ISO date or time; without a zone it is UTC."""
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def catch_up(
    settings: Settings, *, since: datetime, until: datetime, connection_id: str | None, dry_run: bool
) -> int:
    table = Table("connection", "name", "messages held by the provider", "deliveries stored")
    failed: list[tuple[connections.Connection, str]] = []
    try:
        async with gated_database(settings, write=not dry_run) as db:
            if db is None:
                return GATE_REFUSED
            chosen = await connections.bound_internal(db)
            if connection_id is not None:
                chosen = [c for c in chosen if c.id == connection_id]
                if not chosen:
                    console.print(f"[red]no connection {connection_id} bound to a provider instance[/red]")
                    return UNKNOWN
            async with httpx.AsyncClient(timeout=settings.EVOLUTION_TIMEOUT_SECONDS) as http:
                for conn in chosen:
                    try:
                        row = await _one(db, settings, http, conn=conn, since=since, until=until, dry_run=dry_run)
                        table.add_row(conn.id, conn.name, *row)
                    except PyMongoError:
                        raise  # the store away: every connection after it would meet it too
                    except Exception as exc:  # this connection's provider (or one no registry knows): the rest go on
                        failed.append((conn, f"{type(exc).__name__}: {exc}"))
                        table.add_row(conn.id, conn.name, "[red]failed[/red]", "-")
    except PyMongoError as exc:
        console.print(f"[red]database error: {exc}[/red]")
        return UNREACHABLE
    console.print(table)
    if failed:
        console.print(f"[red]{len(failed)} connection(s) not caught up; run again for them (--connection):[/red]")
        for conn, error in failed:
            console.print(f"  {conn.id} ({conn.name}): {error}")
        return PROVIDER_FAILED
    return 0


async def _one(
    db: Database,
    settings: Settings,
    http: httpx.AsyncClient,
    *,
    conn: connections.Connection,
    since: datetime,
    until: datetime,
    dry_run: bool,
) -> tuple[str, str]:
    """One connection's row: what the provider holds for the window, and the deliveries stored."""
    provider = registry.build(conn.provider, settings, http)
    if dry_run:
        _, pages = await provider.find_messages(
            instance_name=conn.instance_name, since=since, until=until, page=1, page_size=1
        )
        return str(pages), "-"
    done = await service.catch_up(db, conn, provider, since=since, until=until, lanes=settings.WEBHOOK_LANES)
    return str(done.found), str(done.chats)


@app.command()
def run(
    since: Annotated[str, typer.Option(help="from this moment (ISO, UTC unless it names a zone)")],
    until: Annotated[str | None, typer.Option(help="up to this moment (default: now)")] = None,
    connection: Annotated[str | None, typer.Option(help="only this connection")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count what the provider holds, store nothing")] = False,
    mongo_url: MongoUrl = None,
    db: DbName = None,
) -> None:
    """Store the messages the provider kept for the window, to be filed like any delivery."""
    end = _moment(until) if until else datetime.now(UTC)
    code = asyncio.run(
        catch_up(_settings(mongo_url, db), since=_moment(since), until=end, connection_id=connection, dry_run=dry_run)
    )
    raise typer.Exit(code)


if __name__ == "__main__":
    app()
