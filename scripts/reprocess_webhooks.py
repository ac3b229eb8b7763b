"""Reprocess stored WhatsApp webhook deliveries that failed (unknown shape at the time, a database
hiccup, a bug since fixed).

    python -m scripts.reprocess_webhooks --help
    python -m scripts.reprocess_webhooks run [--connection ID] [--limit N] [--dry-run] [--set-aside]
    python -m scripts.reprocess_webhooks one RAW_ID

`--set-aside` (also spelled `--dropped-inactive`) takes, instead of the failed deliveries, those
older versions set aside as "ignored" that this version files: client messages nobody saw.
- ["connection inactive"]: a connection deactivated in IAZE (versions before 25179f4);
- "not a person's chat": a chat WhatsApp named by its LID without the number, or a hosted
  business account (before 045a36e); a group or a broadcast is ignored again, as it should be;
- a reaction, and the events those versions did not handle: a history sync (MESSAGES_SET), an
  edit or a deletion (MESSAGES_EDITED, MESSAGES_DELETE), a call (CALL).
Processed now, each is filed as it would be today (a message into its client's open ticket, else
a new one in the connection's default department; a change beside the message it changes).

Runs the same processing the webhook route runs (backend.webhooks.service.process), which is
idempotent: messages already stored are not stored again. Raw events are never changed except
for their outcome fields. Like every process that writes, it first passes the backend's start-up
gate (backend/gates.py: production store, deploy ledger, migrations) and refuses a database the
API would refuse. A stored event that does not read as a delivery (an older version's shape, an
odd one) is passed over, logged, and listed by its id at the end ("unreadable: <id>"); every
other one is still taken. Exit code 0 when every event processed, 1 when some still fail or do
not read, 2 when `one` names no readable event, 3 when the database is unreachable, 4 when the
start-up gate refused (the reason on stderr).
"""

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from pymongo.errors import PyMongoError
from rich.console import Console
from rich.table import Table

from backend.core.config import Settings
from backend.core.db import Database
from backend.core.retry import is_retryable
from backend.webhooks import repository, service
from backend.webhooks.models import RawEvent
from scripts.common import GATE_REFUSED, gated_database

FAILED = "failed"
# The outcome versions before 25179f4 gave a delivery of a connection deactivated in IAZE.
DROPPED_INACTIVE = ["connection inactive"]
# Results older versions gave deliveries this version files (the module docstring).
NOW_FILED = frozenset(
    {
        "ignored: not a person's chat",
        "ignored: reactionMessage is not a conversation message",
        "ignored: event MESSAGES_SET not handled",
        "ignored: event MESSAGES_EDITED not handled",
        "ignored: event MESSAGES_DELETE not handled",
        "ignored: event CALL not handled",
    }
)


def set_aside(raw: RawEvent) -> bool:
    """Whether an "ignored" delivery was set aside by an older version and is filed by this one."""
    return raw.result == DROPPED_INACTIVE or any(r in NOW_FILED for r in raw.result or [])


app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
console = Console(highlight=False)


@dataclass(frozen=True)
class Picked:
    """What a run takes: the deliveries that read, and the `_id`s of those that do not (passed
    over and logged by the listing, reported to the operator: mend them, or run `one` after)."""

    events: list[RawEvent]
    unreadable: list[str]


async def pick(db: Database, *, connection_id: str | None, limit: int, dropped_inactive: bool = False) -> Picked:
    """The run's events, paged by `_id` (so events failing again are not picked up twice in one
    run), at most `limit` of them; a document that does not read is passed over, not counted in
    `limit`, and the paging goes on past it. `dropped_inactive`: the deliveries older versions
    set aside (`set_aside`) instead of the failed ones."""
    status = "ignored" if dropped_inactive else FAILED
    events: list[RawEvent] = []
    unreadable: list[str] = []
    after: Any = None
    while len(events) < limit:
        page = await repository.list_by_status(
            db, status, connection_id=connection_id, after_id=after, limit=min(100, limit - len(events))
        )
        if page.last_id is None:
            break
        events.extend(raw for raw in page.events if not dropped_inactive or set_aside(raw))
        unreadable.extend(page.unreadable)
        after = page.last_id
    return Picked(events=events, unreadable=unreadable)


async def reprocess(
    db: Database, *, connection_id: str | None, limit: int, dry_run: bool, dropped_inactive: bool = False
) -> list[tuple[RawEvent, str]]:
    """Returns (raw event, outcome) pairs, each lane's in the order they were stored, of the
    events `pick` takes (the unreadable ones are only logged here: `_run` reports them)."""
    picked = await pick(db, connection_id=connection_id, limit=limit, dropped_inactive=dropped_inactive)
    return await run_picked(db, picked.events, dry_run=dry_run)


async def run_picked(db: Database, events: list[RawEvent], *, dry_run: bool) -> list[tuple[RawEvent, str]]:
    """Processes the picked events in stored order: `_id`s compare as text ("w:1:10" sorts
    before "w:1:9"), and one chat's deliveries (a message, then its receipts) must run in its order."""
    ordered = sorted(events, key=_stored_order)
    return [(raw, "would retry" if dry_run else await _process(db, raw)) for raw in ordered]


def _stored_order(raw: RawEvent) -> tuple[str, int, str]:
    """(lane, number in the lane): a lane's entries are "w:<lane>:<n>" (backend/core/seqlog.py)."""
    lane, _, n = raw.id.rpartition(":")
    return (lane, int(n), "") if n.isdigit() else (raw.id, -1, raw.id)


async def _process(db: Database, raw: RawEvent) -> str:
    """One event's outcome. A race lost too often or a winner not yet visible (core/retry.py) is
    that event's outcome, reported like a failure so the run can be repeated; the others go on.
    A database error still stops the run (exit 3): the next events would meet it too."""
    try:
        return (await service.process(db, raw)).outcome
    except PyMongoError:
        raise
    except Exception as exc:
        if not is_retryable(exc):
            raise
        return f"{FAILED} (retryable: {getattr(exc, 'detail', exc)})"


def _settings(mongo_url: str | None, db_name: str | None) -> Settings:
    overrides: dict[str, Any] = {}
    if mongo_url:
        overrides["MONGO_URL"] = mongo_url
    if db_name:
        overrides["MONGO_DB"] = db_name
    return Settings(**overrides)


async def _run(
    settings: Settings,
    connection_id: str | None,
    limit: int,
    dry_run: bool,
    raw_id: str | None,
    dropped_inactive: bool = False,
) -> int:
    unreadable: list[str] = []
    try:
        async with gated_database(settings, write=not dry_run) as db:
            if db is None:
                return GATE_REFUSED
            if raw_id is not None:
                try:
                    raw = await repository.get(db, raw_id)
                except ValidationError as exc:
                    console.print(f"[red]raw event {raw_id} does not read as a delivery: {exc}[/red]")
                    return 2
                if raw is None:
                    console.print(f"[red]no raw event {raw_id}[/red]")
                    return 2
                outcome = "would retry" if dry_run else await _process(db, raw)
                results = [(raw, outcome)]
            else:
                picked = await pick(db, connection_id=connection_id, limit=limit, dropped_inactive=dropped_inactive)
                unreadable = picked.unreadable
                results = await run_picked(db, picked.events, dry_run=dry_run)
    except PyMongoError as exc:
        console.print(f"[red]database error: {exc}[/red]")
        return 3
    table = Table("raw id", "connection", "event", "received", "outcome")
    for raw, outcome in results:
        table.add_row(raw.id, raw.connection_id, str(raw.event), str(raw.received_at), outcome)
    console.print(table)
    failed = sum(1 for _, outcome in results if outcome.startswith(FAILED))
    console.print(f"{len(results)} event(s); {failed} still failing")
    if unreadable:
        # Left as they are: each still failed (or set aside), for an operator to mend.
        console.print(f"[red]{len(unreadable)} stored event(s) do not read as a delivery, passed over:[/red]")
        for bad_id in unreadable:
            console.print(f"  unreadable: {bad_id}")
    return 1 if failed or unreadable else 0


MongoUrl = Annotated[str | None, typer.Option(help="overrides MONGO_URL")]
DbName = Annotated[str | None, typer.Option("--db", help="overrides MONGO_DB")]


@app.command()
def run(
    connection: Annotated[str | None, typer.Option(help="only this connection's events")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many events")] = 1000,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would be retried")] = False,
    dropped_inactive: Annotated[
        bool,
        typer.Option(
            "--set-aside",
            "--dropped-inactive",
            help="the client messages older versions set aside as ignored (an inactive connection, LID chats, "
            "reactions, history sync, edits, deletions, calls)",
        ),
    ] = False,
    mongo_url: MongoUrl = None,
    db: DbName = None,
) -> None:
    """Reprocess failed raw webhook events (or, with --set-aside, those older versions set aside), oldest first."""
    raise typer.Exit(asyncio.run(_run(_settings(mongo_url, db), connection, limit, dry_run, None, dropped_inactive)))


@app.command()
def one(
    raw_id: str,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
    mongo_url: MongoUrl = None,
    db: DbName = None,
) -> None:
    """Reprocess one raw event by id, whatever its outcome was."""
    raise typer.Exit(asyncio.run(_run(_settings(mongo_url, db), None, 1, dry_run, raw_id)))


if __name__ == "__main__":
    app()
