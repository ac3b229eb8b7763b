"""The same-run baseline of bench/realtime_scale.py: the least a Redis pub/sub → websocket
fan-out server can do, served by the same uvicorn and websocket library as the backend.

    python -m bench.fanout_baseline --port 8123 --redis redis://127.0.0.1:6379/0

A socket connects to `/ws?g=<group>` (the bench uses "<tenant>:<department>", the audience of
its events), gets `{"type":"hello","seq":0}`, then every frame published on the Redis channel
for its group. A notice is "<group>\\n<frame text>": no decoding beyond the split, no store, no
audience rule, no replay (a reconnecting socket gets only what is published after it), one
queue and one reader task per socket. Whatever IAZE does beyond this — the durable feed insert,
authentication, the audience rule, per-tenant ordering, replay — is the difference the bench
measures.
"""

import argparse
import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import redis.asyncio as redis
import uvicorn

CHANNEL = "bench:fanout"
QUEUE_SIZE = 1000
HELLO = '{"type":"hello","seq":0}'

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class FanOut:
    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.groups: dict[str, set[asyncio.Queue[str | None]]] = {}
        self.listener: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "websocket":
            await self._socket(scope, receive, send)
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.listener = asyncio.create_task(self._listen())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.listener is not None:
                    self.listener.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self.listener
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _listen(self) -> None:
        sub = redis.Redis.from_url(self.redis_url)
        pubsub = sub.pubsub()
        await pubsub.subscribe(CHANNEL)
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None or message.get("type") != "message":
                continue
            group, _, frame = message["data"].decode().partition("\n")
            for queue in list(self.groups.get(group, ())):
                with contextlib.suppress(asyncio.QueueFull):  # the bench would count it as lost
                    queue.put_nowait(frame)

    async def _socket(self, scope: Scope, receive: Receive, send: Send) -> None:
        group = parse_qs(scope.get("query_string", b"").decode()).get("g", [""])[0]
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": HELLO})
        queue: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_SIZE)
        self.groups.setdefault(group, set()).add(queue)

        async def read() -> None:
            while (await receive())["type"] != "websocket.disconnect":
                pass
            queue.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (frame := await queue.get()) is not None:
                await send({"type": "websocket.send", "text": frame})
        except Exception:
            pass
        finally:
            self.groups[group].discard(queue)
            reader.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    args = parser.parse_args()
    # The backend's websocket-relevant uvicorn options (backend/core/server.py): same library,
    # same loop, no per-message deflate.
    uvicorn.run(
        FanOut(args.redis),
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        log_level="warning",
        ws_per_message_deflate=False,
    )


if __name__ == "__main__":
    main()
