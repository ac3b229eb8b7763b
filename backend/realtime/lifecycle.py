"""Starts and stops this process's realtime machinery: one step of the app's lifespan."""

import asyncio
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from types import FrameType
from typing import Any

from backend.core.config import Settings
from backend.core.db import Database
from backend.core.logging import get_logger
from backend.realtime import feed
from backend.realtime.bus import RedisBus
from backend.realtime.hub import Hub

log = get_logger("realtime")

SHUTDOWN_CODE = 1001  # "going away": clients reconnect with since= to another instance


@asynccontextmanager
async def running(db: Database, settings: Settings) -> AsyncIterator[Hub]:
    """The hub, the Redis bus when configured, both as the feed's sinks, and websockets closed
    with 1001 on SIGTERM/SIGINT; all undone, in reverse, on exit."""
    hub = Hub(db, queue_size=settings.REALTIME_QUEUE_SIZE, poll_seconds=settings.REALTIME_POLL_SECONDS)
    feed.register_sink(db, hub)
    bus = None
    if settings.REDIS_URL:
        bus = RedisBus(
            settings.REDIS_URL, settings.REALTIME_CHANNEL, hub, ping_seconds=settings.REALTIME_BUS_PING_SECONDS
        )
        bus.start()
        feed.register_sink(db, bus)
    restore = _close_sockets_on_signal(hub)
    log.info("realtime started", redis=bool(bus))
    try:
        yield hub
    finally:
        restore()
        feed.unregister_sink(db, hub)
        await hub.close_sockets(SHUTDOWN_CODE)
        if bus is not None:
            feed.unregister_sink(db, bus)
            await bus.close()
        await hub.close()


def _close_sockets_on_signal(hub: Hub) -> Any:
    """uvicorn, on SIGTERM/SIGINT, ends open websockets with 1012 before the lifespan shutdown
    runs. Chaining its handler lets us send 1001 first; the server then goes on as usual.

    uvicorn's handler is called once our sockets are closed (Hub.close_sockets: bounded), not at
    once: its main loop notices the flag on its next 0.1 s tick and writes 1012 on every socket
    still open, so calling it straight away raced our close frames (a loaded machine lost the
    race). A second signal while the first is being handled goes straight through (Ctrl+C twice
    still forces the exit)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}
    closing: set[asyncio.Future[None]] = set()  # also holds the task: the loop keeps only a weak reference

    def go_on(signum: int, frame: FrameType | None) -> None:
        prior = previous.get(signum)
        if callable(prior):
            prior(signum, frame)

    async def close_then_go_on(signum: int, frame: FrameType | None) -> None:
        try:
            await hub.close_sockets(SHUTDOWN_CODE)
        finally:
            go_on(signum, frame)

    def start(signum: int, frame: FrameType | None) -> None:
        closing.add(asyncio.ensure_future(close_then_go_on(signum, frame)))

    def handler(signum: int, frame: FrameType | None) -> None:
        if closing or loop.is_closed():
            go_on(signum, frame)
            return
        loop.call_soon_threadsafe(start, signum, frame)

    for sig in (signal.SIGTERM, signal.SIGINT):
        with suppress(ValueError, OSError):
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, handler)

    def restore() -> None:
        for sig, prior in previous.items():
            with suppress(ValueError, OSError):
                if signal.getsignal(sig) is handler:
                    signal.signal(sig, prior)

    return restore
