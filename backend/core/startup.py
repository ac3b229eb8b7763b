"""Start-up checks. The process keeps running when they fail, but reports not-ready and refuses
API traffic, so an orchestrator never routes requests to an instance that should not serve."""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from backend.core.config import Settings
from backend.core.db import Database
from backend.core.logging import get_logger

log = get_logger("startup")

Check = Callable[[Database, Settings], Awaitable[None]]


@dataclass
class StartupState:
    ready: bool = False
    errors: list[str] = field(default_factory=list)


Step = tuple[str, Check]  # a name (for the log and the not-ready reasons) and its check


async def wait_for_database(db: Database, attempts: int = 30) -> None:
    for attempt in range(1, attempts + 1):
        try:
            await db.command("ping")
            return
        except Exception as exc:  # any driver error means "not reachable yet"
            if attempt == attempts:
                raise
            log.warning("database not reachable yet", attempt=attempt, error=str(exc))
            await asyncio.sleep(min(0.2 * attempt, 2.0))


async def run(db: Database, settings: Settings, steps: Sequence[Step]) -> StartupState:
    """Runs `steps` in order after the database answers; stops at the first that refuses."""
    state = StartupState()
    try:
        await wait_for_database(db)
    except Exception as exc:
        state.errors.append(f"database unreachable: {exc}")
        log.error("startup failed", step="database", error=str(exc))
        return state
    for name, check in steps:
        try:
            await check(db, settings)
        except Exception as exc:
            state.errors.append(f"{name}: {exc}")
            log.error("startup failed", step=name, error=str(exc))
            return state
        log.info("startup step done", step=name)
    state.ready = True
    return state
