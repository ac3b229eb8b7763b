"""What every operations CLI shares: settings, the database connection, exit codes, output."""

import asyncio
import contextlib
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from enum import IntEnum
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError
from rich.console import Console

from backend.core.config import Settings
from backend.core.db import Database, durable_database, make_client

T = TypeVar("T")

# Piped output (cron, CI, docker logs) gets wide lines instead of rich's 80-column default.
_WIDTH = None if sys.stdout.isatty() else 160
console = Console(stderr=True, highlight=False, width=_WIDTH, soft_wrap=True)
out = Console(highlight=False, width=_WIDTH, soft_wrap=True)


class Exit(IntEnum):
    """Exit codes documented in DEPLOY_RULES.md; scripts in CI and cron test them."""

    OK = 0
    VIOLATIONS = 1  # the check ran and found problems (verify failed, counts differ)
    USAGE = 2  # bad arguments or a refused operation (typer also uses 2 for usage errors)
    DATABASE = 3  # the database could not be reached or answered an error
    FILE = 4  # a snapshot/archive/checksum file is missing, unreadable or corrupt


# How many scratch databases `backup verify` rotates through; mongo-init/01-users.js grants the
# backup user the same number (tests/scripts/test_compose.py ties the two).
VERIFY_SCRATCH_SLOTS = 4


class OpsSettings(Settings):
    """Backend settings plus the ones only the operations scripts read (see .env.example)."""

    BACKUP_DIR: str = "./backups"
    BACKUP_KEEP_DAILY: int = 7
    BACKUP_KEEP_WEEKLY: int = 4
    # Base name of the scratch databases `backup verify` restores into, <base>_0 … <base>_<N-1>
    # (`scratch_names`); the only databases any script drops.
    BACKUP_VERIFY_DB: str = ""
    # auto: real mongodump/mongorestore when found (var/bin or PATH), else the built-in writer.
    BACKUP_TOOL: str = "auto"
    BACKUP_INTERVAL_SECONDS: int = 24 * 3600
    # Evolution's instances directory (WhatsApp sessions), archived with every backup; empty: not.
    BACKUP_EVOLUTION_INSTANCES_DIR: str = ""
    # Evolution's PostgreSQL (its DATABASE_CONNECTION_URI), dumped with every backup; empty: not.
    BACKUP_EVOLUTION_DATABASE_URL: str = ""
    # Evolution's Redis (its CACHE_REDIS_URI) and the keys holding the Baileys signal keys; empty: not.
    BACKUP_EVOLUTION_REDIS_URL: str = ""
    BACKUP_EVOLUTION_REDIS_PATTERN: str = "evolution:instance:*"
    # deploy_check after a restart: the backend whose /health/ready is asked (empty: not asked),
    # and how long a connection that was open may take to be open again.
    DEPLOY_CHECK_BACKEND_URL: str = ""
    DEPLOY_CHECK_WHATSAPP_WAIT_SECONDS: float = 90.0

    @property
    def verify_db(self) -> str:
        return self.BACKUP_VERIFY_DB or f"{self.MONGO_DB}_verify"

    def scratch_names(self) -> list[str]:
        """The only databases `backup verify` restores into, a fixed set: the backup user is granted
        exactly these (mongo-init/01-users.js; MongoDB grants name whole databases, no patterns, and
        a grant on every database would let it drop the live one). One name reused run after run
        would be dropped and recreated moments apart, which on FerretDB's SQLite backend now and
        then failed with "disk I/O error (522)" (5d6b8b5; the cause, since removed, was the local
        FerretDB launcher's index keeper: backend/devtools/ferretdb.py); `next_scratch` rotates through the set,
        so a name comes back only VERIFY_SCRATCH_SLOTS - 1 verifies later. A lock on one name
        would not help: the failure was a recreate after a drop, not two verifies at once."""
        return [f"{self.verify_db}_{slot}" for slot in range(VERIFY_SCRATCH_SLOTS)]

    def next_scratch(self, previous: str | None) -> str:
        """The name after `previous` (the last verify's, from its record) in `scratch_names`."""
        names = self.scratch_names()
        return names[(names.index(previous) + 1) % len(names)] if previous in names else names[0]

    def is_scratch(self, name: str) -> bool:
        """One of `scratch_names`, `verify_db` itself (as versions before 5d6b8b5 named it) or
        `<verify_db>_<8 hex>` (as versions since named it, creatable only without access control)."""
        return (
            name == self.verify_db
            or name in self.scratch_names()
            or re.fullmatch(rf"{re.escape(self.verify_db)}_[0-9a-f]{{8}}", name) is not None
        )


def load_settings(mongo_url: str | None = None, db: str | None = None, env_file: Path | None = None) -> OpsSettings:
    overrides: dict[str, Any] = {}
    if mongo_url:
        overrides["MONGO_URL"] = mongo_url
    if db:
        overrides["MONGO_DB"] = db
    try:
        return OpsSettings(_env_file=env_file or ".env", **overrides)
    except Exception as exc:  # pydantic names every bad setting
        fail(Exit.USAGE, f"bad settings: {exc}")


def fail(code: Exit, message: str) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}")
    raise SystemExit(int(code))


def connect(settings: OpsSettings) -> AsyncMongoClient[dict[str, Any]]:
    if not settings.MONGO_URL:
        fail(Exit.USAGE, "MONGO_URL is empty: point it at the database to check (no local store is started here)")
    return make_client(settings)


def database(client: AsyncMongoClient[dict[str, Any]], name: str) -> Database:
    return durable_database(client, name)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Runs a command body; database errors become exit code 3 with the driver's message."""
    try:
        return asyncio.run(coro)
    except PyMongoError as exc:
        fail(Exit.DATABASE, f"database error: {exc}")
    except OSError as exc:
        fail(Exit.FILE, f"{exc}")


async def user_collections(db: Database) -> list[str]:
    names = await db.list_collection_names()
    return sorted(n for n in names if not n.startswith("system."))


GATE_REFUSED = 4  # a script's writes refused by the start-up gate (its scripts' documented code)


@contextlib.asynccontextmanager
async def gated_database(settings: Settings, *, write: bool) -> AsyncIterator[Database | None]:
    """The backend's database for an operator script, its client closed after. With `write`, only
    once the backend's start-up gate let this process write, like every writer (backend/gates.py);
    None when it refused (the reason reported on stderr)."""
    from backend import gates  # the whole backend, only for the scripts that write through it

    client = make_client(settings)
    try:
        db = durable_database(client, settings.MONGO_DB)
        if write:
            state = await gates.open_gate(db, settings)
            if not state.ready:
                gates.report_refusal(state)
                yield None
                return
        yield db
    finally:
        await client.close()


async def run_audit(
    settings: Settings,
    check: Callable[[Database], Awaitable[Sequence[Any]]],
    clean: Callable[[Any], bool],
    *,
    fix: bool,
) -> int:
    """The shared run of an operator's audit of derived figures against the log
    (scripts/ticket_counts.py, scripts/reports_rebuild.py): `check` reports and, with `fix`,
    repairs, after the backend's start-up gate let this process write, like every writer."""
    try:
        async with gated_database(settings, write=fix) as db:
            if db is None:
                return GATE_REFUSED
            results = await check(db)
    except PyMongoError as exc:
        console.print(f"[red]database error: {exc}[/red]")
        return Exit.DATABASE
    bad = [r for r in results if not clean(r)]
    out.print(f"{len(results)} tenant(s) checked; {len(bad)} with differences")
    return Exit.VIOLATIONS if bad else Exit.OK
