"""The start-up gate: one ordered list of steps every process that writes runs before its first
write — the API (backend/app.py), the standalone workers (`run_standalone` below) and the
scripts that write — so a restored, emptied or swapped database is refused by all of them alike,
with the same message.

The steps, in order (each refuses before the next one writes; docs/PERSISTENCE.md):
production-store, ledger-guard, migrations, ledger-record (backend/ledger/steps.py), then
indexes. The API adds its own steps after these (first-admin).
"""

import asyncio
import signal
import sys
from collections.abc import Sequence

from backend.automation import service as automation
from backend.core import startup
from backend.core.background import RunUntil
from backend.core.config import Settings, get_settings
from backend.core.db import Database, durable_database, make_client
from backend.core.indexes import ensure_indexes
from backend.core.logging import configure_logging
from backend.core.runtime import open_runtime, runtime_of
from backend.ledger import steps as ledger_steps
from backend.messages import service as messages
from backend.reports import service as reports
from backend.scheduled import service as scheduled
from backend.tickets import service as tickets

EXIT_REFUSED = 3  # a worker or script whose gate refused: not a crash, nothing was done


async def _indexes(db: Database, settings: Settings) -> None:
    await ensure_indexes(db)


STEPS: tuple[startup.Step, ...] = (*ledger_steps.STEPS, ("indexes", _indexes))


def connect_domains(db: Database) -> None:
    """The one hook between domains, registered in the runtime of `db`'s process rather than by
    an import's side effect: a finalize hands its ticket to the messages domain, which moves on
    the client messages that raced it (messages builds on tickets, so tickets cannot name it),
    then to the automatic messages, which send the closing message and the survey question."""
    tickets.on_finalized(db, messages.refile_after_finalize)
    # The reports' aggregates see every ticket event and stored message (backend/reports).
    tickets.on_event(db, reports.record_ticket_event)
    messages.on_stored(db, reports.record_message)
    # After the refile: the closing message and the survey question (backend/automation).
    tickets.on_finalized(db, automation.after_finalize)
    # The ticket's scheduled messages still waiting are canceled with it (backend/scheduled).
    tickets.on_finalized(db, scheduled.after_finalize)
    # A ticket opened for a client message that raced a finalize is greeted as any new ticket.
    messages.on_raced_open(db, automation.raced_opening)


async def open_gate(db: Database, settings: Settings, then: Sequence[startup.Step] = ()) -> startup.StartupState:
    """Connects the domains, then runs the gate's steps, then `then` (a process's own); `ready`
    is False with the reasons when one refused."""
    connect_domains(db)
    runtime_of(db).cache_seconds = settings.SETUP_CACHE_SECONDS  # core/single_flight.py
    return await startup.run(db, settings, (*STEPS, *then))


def report_refusal(state: startup.StartupState) -> None:
    """For processes without /health/ready: the reasons on stderr (the log has them too)."""
    print("refusing to start: " + "; ".join(state.errors), file=sys.stderr, flush=True)


async def _standalone(run_until: RunUntil) -> int:
    try:
        settings = get_settings()
    except Exception as exc:  # pydantic's message names every bad setting, as `python -m backend` says
        print(f"refusing to start: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.LOG_LEVEL, settings.LOG_JSON)
    client = make_client(settings)
    runtime = open_runtime(client)  # this process's state (backend/core/runtime.py)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        db = durable_database(client, settings.MONGO_DB)
        # The same gate as the API: a worker must not send or process anything from a database
        # the API would refuse (a restored one would make it re-send replies already delivered).
        state = await open_gate(db, settings)
        if not state.ready:
            report_refusal(state)
            return EXIT_REFUSED
        await run_until(db, settings, stop)
    finally:
        await runtime.close()
        await client.close()
    return 0


def run_standalone(run_until: RunUntil) -> None:
    """The loop as its own process (no HTTP), once the start-up gate passed; stops cleanly on
    SIGTERM/SIGINT. Exits non-zero, having done nothing, when the gate refuses."""
    sys.exit(asyncio.run(_standalone(run_until)))
