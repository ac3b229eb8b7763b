"""Long-running database loops (outbound worker, webhook processor): the same loop runs inside a
backend process's lifespan or alone as its own process."""

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable

from backend.core.config import Settings, get_settings
from backend.core.db import Database, durable_database, make_client
from backend.core.logging import configure_logging
from backend.core.runtime import open_runtime

RunUntil = Callable[[Database, Settings, asyncio.Event], Awaitable[None]]


class BackgroundLoop:
    """Started with the process's lifespan; `close` asks it to stop and waits for it."""

    def __init__(self, name: str, run_until: RunUntil, db: Database, settings: Settings, *, enabled: bool) -> None:
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        if enabled:
            self.task = asyncio.create_task(self._run(run_until, db, settings), name=name)

    async def _run(self, run_until: RunUntil, db: Database, settings: Settings) -> None:
        await run_until(db, settings, self.stop)

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await self.task


async def _standalone(run_until: RunUntil) -> int:
    # Imported here: the gate pulls in the ledger and migrations, which import core modules.
    from backend import gates

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
        state = await gates.open_gate(db, settings)
        if not state.ready:
            gates.report_refusal(state)
            return gates.EXIT_REFUSED
        await run_until(db, settings, stop)
    finally:
        await runtime.close()
        await client.close()
    return 0


def run_standalone(run_until: RunUntil) -> None:
    """The loop as its own process (no HTTP), once the start-up gate passed; stops cleanly on
    SIGTERM/SIGINT. Exits non-zero, having done nothing, when the gate refuses."""
    sys.exit(asyncio.run(_standalone(run_until)))
