"""A second backend process in the test's interpreter: its own database client (so its own
runtime, backend/core/runtime.py: its own copies of configs and connections) with PyMongo command
monitoring on it, as bench/ingest_commands.py counts the commands of the backend's own client."""

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from backend.core.config import Settings
from backend.core.db import Database, durable_database, make_client
from backend.core.runtime import open_runtime
from backend.gates import connect_domains
from tests.conftest import make_settings


class Reads(CommandListener):
    """`find` commands per collection since the last `take`."""

    def __init__(self) -> None:
        self.finds: Counter[str] = Counter()

    def started(self, event: CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.finds[str(event.command.get("find"))] += 1

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass

    def take(self, collection: str) -> int:
        found, self.finds[collection] = self.finds[collection], 0
        return found


@asynccontextmanager
async def counted_process(settings: Settings, **overrides: Any) -> AsyncIterator[tuple[Database, Reads]]:
    """(its database, its reads); `overrides`: its own settings (SETUP_CACHE_SECONDS, ...)."""
    own = make_settings(settings.mongo_url, settings.MONGO_DB, **overrides)
    reads = Reads()
    client = make_client(own, command_listeners=[reads])
    runtime = open_runtime(client)
    runtime.cache_seconds = own.SETUP_CACHE_SECONDS  # what gates.open_gate sets in a process
    db = durable_database(client, own.MONGO_DB)
    connect_domains(db)
    try:
        yield db, reads
    finally:
        await runtime.close()
        await client.close()
