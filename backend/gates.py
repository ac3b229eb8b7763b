"""The start-up gate: one ordered list of steps every process that writes runs before its first
write — the API (backend/app.py), the standalone workers (backend/core/background.py) and the
scripts that write — so a restored, emptied or swapped database is refused by all of them alike,
with the same message.

The steps, in order (each refuses before the next one writes; docs/PERSISTENCE.md):
production-store, ledger-guard, migrations, ledger-record (backend/ledger/steps.py), then
indexes. The API adds its own steps after these (first-admin).
"""

import sys
from collections.abc import Sequence

from backend.core import startup
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.indexes import ensure_indexes
from backend.ledger import steps as ledger_steps

EXIT_REFUSED = 3  # a worker or script whose gate refused: not a crash, nothing was done


async def _indexes(db: Database, settings: Settings) -> None:
    await ensure_indexes(db)


STEPS: tuple[startup.Step, ...] = (*ledger_steps.STEPS, ("indexes", _indexes))


async def open_gate(db: Database, settings: Settings, then: Sequence[startup.Step] = ()) -> startup.StartupState:
    """Runs the gate's steps, then `then` (a process's own); `ready` is False with the reasons
    when one refused."""
    return await startup.run(db, settings, (*STEPS, *then))


def refusal(state: startup.StartupState) -> str:
    return "refusing to start: " + "; ".join(state.errors)


def report_refusal(state: startup.StartupState) -> None:
    """For processes without /health/ready: the reasons on stderr (the log has them too)."""
    print(refusal(state), file=sys.stderr, flush=True)
