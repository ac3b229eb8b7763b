"""What a migration is. `check` is read-only and runs first, so a migration that cannot succeed
fails before it writes anything; `apply` must be additive and idempotent (a re-run, or a second
instance after a lock takeover, finds its work done and changes nothing)."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from backend.core.db import Database

Step = Callable[[Database], Awaitable[None]]


async def nothing(db: Database) -> None:
    return None


class MigrationError(RuntimeError):
    """Raised by a migration's `check` (or `apply`) to stop the start-up with a clear message."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Step
    check: Step = nothing
