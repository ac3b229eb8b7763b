"""Long-running database loops (outbound worker, webhook processor): the same loop runs inside a
backend process's lifespan or alone as its own process."""

import asyncio
import signal
from collections.abc import Awaitable, Callable

from backend.core.config import Settings, get_settings
from backend.core.db import Database, durable_database, make_client
from backend.core.logging import configure_logging

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


async def _standalone(run_until: RunUntil) -> None:
    settings = get_settings()
    configure_logging(settings.LOG_LEVEL, settings.LOG_JSON)
    client = make_client(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run_until(durable_database(client, settings.MONGO_DB), settings, stop)
    finally:
        await client.close()


def run_standalone(run_until: RunUntil) -> None:
    """The loop as its own process (no HTTP); stops cleanly on SIGTERM/SIGINT."""
    asyncio.run(_standalone(run_until))
