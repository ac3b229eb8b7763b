"""The start-up gate: one function every process that writes runs before its first write — the
API (backend/app.py), the standalone workers (`run_standalone` below) and the scripts that
write — so a restored, emptied or swapped database is refused by all of them alike, with the
same message.

The steps, in order (each refuses before the next one writes; docs/PERSISTENCE.md):
production-store, ledger-guard, migrations, ledger-record (backend/ledger/steps.py), then
indexes. The API adds its own steps after these (first-admin).
"""

import asyncio
import signal
import sys

import backend.ledger.steps  # noqa: F401 - registers the persistence steps, which must run first
from backend.core import startup
from backend.core.background import RunUntil
from backend.core.config import Settings, get_settings
from backend.core.db import Database, durable_database, make_client
from backend.core.indexes import ensure_indexes
from backend.core.logging import configure_logging
from backend.messages import service as messages
from backend.tickets import service as tickets

EXIT_REFUSED = 3  # a worker or script whose gate refused: not a crash, nothing was done


@startup.register("indexes")
async def _indexes(db: Database, settings: Settings) -> None:
    await ensure_indexes(db)


def connect_domains() -> None:
    """The one hook between domains, registered here rather than by an import's side effect: a
    finalize hands its ticket to the messages domain, which moves on the client messages that
    raced it (messages builds on tickets, so tickets cannot name it)."""
    tickets.on_finalized(messages.refile_after_finalize)


async def open_gate(db: Database, settings: Settings) -> startup.StartupState:
    """Connects the domains, then runs every registered start-up step; `ready` is False with the
    reasons when one refused."""
    connect_domains()
    return await startup.run(db, settings)


def refusal(state: startup.StartupState) -> str:
    return "refusing to start: " + "; ".join(state.errors)


def report_refusal(state: startup.StartupState) -> None:
    """For processes without /health/ready: the reasons on stderr (the log has them too)."""
    print(refusal(state), file=sys.stderr, flush=True)


async def _standalone(run_until: RunUntil) -> int:
    try:
        settings = get_settings()
    except Exception as exc:  # pydantic's message names every bad setting, as `python -m backend` says
        print(f"refusing to start: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.LOG_LEVEL, settings.LOG_JSON)
    client = make_client(settings)
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
        await client.close()
    return 0


def run_standalone(run_until: RunUntil) -> None:
    """The loop as its own process (no HTTP), once the start-up gate passed; stops cleanly on
    SIGTERM/SIGINT. Exits non-zero, having done nothing, when the gate refuses."""
    sys.exit(asyncio.run(_standalone(run_until)))
