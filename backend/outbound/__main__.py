"""`python -m backend.outbound`: the outbound worker alone (no HTTP). Stops on SIGTERM/SIGINT."""

import asyncio
import signal

from backend.core.config import get_settings
from backend.core.db import durable_database, make_client
from backend.core.logging import configure_logging
from backend.outbound.worker import run_until


async def main() -> None:
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


if __name__ == "__main__":
    asyncio.run(main())
