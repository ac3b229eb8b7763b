"""Database commands of an idle webhook processor, per second (issue 20 item 1; the media
profile's "reads of `webhook_events_raw` per message" are mostly these, at any message rate).

A FerretDB of its own, one delivery stored per lane (so every lane has a block, as in a running
system), then a `WebhookProcessor` left running with nothing to do; its commands are counted with
PyMongo's command monitoring for `--seconds`.

    python -m bench.ingest_idle --seconds 10
"""

import argparse
import asyncio
import tempfile
from collections import Counter
from pathlib import Path

from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from backend.core.config import Settings
from backend.core.db import durable_database, make_client
from backend.core.indexes import ensure_indexes
from backend.devtools import ferretdb
from backend.webhooks import repository
from backend.webhooks.processor import WebhookProcessor
from bench.ingest_commands import IGNORED


class Counting(CommandListener):
    def __init__(self) -> None:
        self.on = False
        self.counts: Counter[tuple[str, str]] = Counter()

    def started(self, event: CommandStartedEvent) -> None:
        if self.on and event.command_name not in IGNORED:
            target = event.command.get(event.command_name)
            self.counts[(event.command_name, target if isinstance(target, str) else "")] += 1

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


async def main(seconds: float) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ingest-idle-"))
    port = ferretdb.free_port()
    fdb = ferretdb.start(f"127.0.0.1:{port}", tmp / "data", log_path=tmp / "ferretdb.log")
    try:
        url = f"mongodb://127.0.0.1:{port}/"
        settings = Settings(
            ENV="test", MONGO_URL=url, MONGO_DB="idle", JWT_SECRET="bench-" + "x" * 40, OUTBOUND_WORKER_ENABLED=False
        )
        counting = Counting()
        client = make_client(settings, command_listeners=[counting])
        db = durable_database(client, "idle")
        await ensure_indexes(db)
        for lane in range(settings.WEBHOOK_LANES):
            await repository.lane(lane).append(db, {"status": "processed", "received_at": None}, reserve=True)
        stop = asyncio.Event()
        running = asyncio.create_task(WebhookProcessor(db, settings).run(stop))
        await asyncio.sleep(3)  # lane loops started, retired-lane check done
        counting.on = True
        await asyncio.sleep(seconds)
        counting.on = False
        stop.set()
        await running
        await client.close()
        print(f"| command | collection | per second (idle, {settings.WEBHOOK_LANES} lanes) |\n|---|---|---:|")
        for (name, collection), n in counting.counts.most_common():
            print(f"| {name} | {collection} | {n / seconds:.1f} |")
    finally:
        ferretdb.stop(fdb)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    asyncio.run(main(parser.parse_args().seconds))
