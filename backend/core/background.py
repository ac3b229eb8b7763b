"""Long-running database loops (outbound worker, webhook processor): the same loop runs inside a
backend process's lifespan or alone as its own process (backend/gates.py `run_standalone`)."""

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from backend.core.config import Settings
from backend.core.db import Database

RunUntil = Callable[[Database, Settings, asyncio.Event], Coroutine[Any, Any, None]]


class BackgroundLoop:
    """Started with the process's lifespan; `close` asks it to stop and waits for it."""

    def __init__(self, name: str, run_until: RunUntil, db: Database, settings: Settings, *, enabled: bool) -> None:
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        if enabled:
            self.task = asyncio.create_task(run_until(db, settings, self.stop), name=name)

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await self.task
