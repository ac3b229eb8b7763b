"""The inbound fetch queue under concurrent appends: within a process one at a time (no insert
lost to a sibling), and still exactly once each against another process appending meanwhile."""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.core.db import Database, durable_database, make_client
from backend.media import repository
from backend.media.models import FetchBody


class Inserts(CommandListener):
    """Insert commands on the fetch queue, and how many of them failed."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def started(self, event: CommandStartedEvent) -> None:
        if event.command_name == "insert" and event.command.get("insert") == repository.FETCHES:
            self.seen["insert"] += 1

    def succeeded(self, event: CommandSucceededEvent) -> None:
        if event.command_name == "insert" and event.reply.get("writeErrors"):
            self.seen["failed"] += 1

    def failed(self, event: CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def processes(settings: Settings) -> AsyncIterator[list[tuple[Database, Inserts]]]:
    """Two backend processes' clients (each its own runtime), on a fresh database."""
    made: list[tuple[Database, Inserts]] = []
    clients = []
    name = f"{settings.MONGO_DB}_fetchq"
    for _ in range(2):
        inserts = Inserts()
        client = make_client(settings, command_listeners=[inserts])
        clients.append(client)
        made.append((durable_database(client, name), inserts))
    yield made
    await clients[0].drop_database(name)
    for client in clients:
        await client.close()


def entry(n: int, by: str = "") -> FetchBody:
    return FetchBody(
        message_id=f"m{n}",
        reseller_id="r",
        connection_id=by,
        provider_message_id=f"p{n}",
        remote_jid="",
        enqueued_at=utcnow(),
    )


async def test_concurrent_appends_of_one_process_go_out_as_one_insert(
    processes: list[tuple[Database, Inserts]],
) -> None:
    db, inserts = processes[0]
    await repository.enqueue_fetch(db, entry(0))  # the process has seen the log (its head known)
    inserts.seen.clear()
    seqs = await asyncio.gather(*(repository.enqueue_fetch(db, entry(n)) for n in range(1, 25)))
    assert seqs == list(range(2, 26))  # in the order they were made
    # Every lane appending at once used to try the same number (~2x the inserts), then one insert
    # each, one after the other; all 24 arrive before the writer's first command: one batch.
    assert inserts.seen == Counter({"insert": 1})


async def test_two_processes_appending_together_store_every_entry_once_without_holes(
    processes: list[tuple[Database, Inserts]],
) -> None:
    (first, _), (second, _) = processes

    async def appends(db: Database, tag: str) -> list[int]:
        return list(await asyncio.gather(*(repository.enqueue_fetch(db, entry(n, by=tag)) for n in range(20))))

    mine, theirs = await asyncio.gather(appends(first, "a"), appends(second, "b"))
    assert sorted(mine + theirs) == list(range(1, 41))  # distinct numbers, no holes
    stored = await first[repository.FETCHES].find({}).to_list(None)
    assert sorted(int(e["seq"]) for e in stored) == list(range(1, 41))
    assert Counter(e["connection_id"] for e in stored) == Counter({"a": 20, "b": 20})
    assert await repository.fetches.head(first) == 40
