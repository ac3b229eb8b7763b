"""A command recorder for tests that check what reaches the database (how many commands, which
filters), attached to a client of their own with `event_listeners=[recorder]` (`recorded`)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pymongo import AsyncMongoClient, monitoring

from backend.core.db import Database, durable_database


class CommandRecorder(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[tuple[str, dict[str, Any]]] = []

    def named(self, name: str) -> list[dict[str, Any]]:
        return [command for n, command in self.commands if n == name]

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@asynccontextmanager
async def recorded(db: Database, mongo_url: str) -> AsyncIterator[tuple[Database, CommandRecorder]]:
    """`db` through a client of its own (so another process's runtime) whose commands are recorded."""
    recorder = CommandRecorder()
    own: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True, event_listeners=[recorder])
    try:
        yield durable_database(own, db.name), recorder
    finally:
        await own.close()
