"""Between processes: every stored feed record is announced on one Redis pub/sub channel.

A notice carries the record itself, so other processes usually deliver without a database read;
pub/sub is at-most-once, though, so nothing relies on it: the hub orders by seq, reads any record
it was not handed, and polls the tail (see hub.py). Redis being down therefore only slows
cross-process delivery to the poll interval; it never fails or delays a domain write.
"""

import asyncio
import json
import uuid
from contextlib import suppress
from typing import Any

import redis.asyncio as redis

from backend.core.clock import json_default
from backend.core.logging import get_logger
from backend.core.tuning import BUS_TIMEOUT_SECONDS as PUBLISH_TIMEOUT_SECONDS
from backend.realtime import metrics
from backend.realtime.hub import Hub, cancel_quietly

log = get_logger("realtime.bus")


def encode(origin: str, record: dict[str, Any]) -> str:
    return json.dumps({"o": origin, "r": record}, separators=(",", ":"), default=json_default)


class RedisBus:
    def __init__(self, url: str, channel: str, hub: Hub | None) -> None:
        self.url = url
        self.channel = channel
        self.hub = hub
        self.origin = uuid.uuid4().hex
        self._pub = redis.Redis.from_url(
            url, socket_timeout=PUBLISH_TIMEOUT_SECONDS, socket_connect_timeout=PUBLISH_TIMEOUT_SECONDS
        )
        self._listener: asyncio.Task[None] | None = None
        self._outbox: list[str] = []
        self._sender: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.hub is not None:
            self._listener = asyncio.create_task(self._listen(), name="realtime-bus-listener")

    def announce(self, record: dict[str, Any]) -> None:
        """Fire and forget: the caller (a request that already stored its change) never waits on
        Redis. Notices leave in the order they were announced (one sender, pipelining whatever
        queued up meanwhile): out of order, a receiving hub would hold n+1 while it waits for n."""
        self._queue(encode(self.origin, record))

    def access_changed(self, reseller_id: str, user_id: str | None) -> None:
        self._queue(json.dumps({"o": self.origin, "a": [reseller_id, user_id]}, separators=(",", ":")))

    def _queue(self, payload: str) -> None:
        self._outbox.append(payload)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_all())

    async def _send_all(self) -> None:
        while self._outbox:
            batch = list(self._outbox)
            self._outbox.clear()
            try:
                async with self._pub.pipeline(transaction=False) as pipe:
                    for payload in batch:
                        pipe.publish(self.channel, payload)
                    await pipe.execute()
            except Exception as exc:
                metrics.ERRORS.labels("bus_publish").inc(len(batch))
                log.warning("realtime notices not published; other processes will poll", error=str(exc))

    def _handle(self, data: bytes | str) -> None:
        assert self.hub is not None
        try:
            body = json.loads(data)
            if body.get("o") == self.origin:
                return  # our own notice, already handed to the hub locally
            if "a" in body:
                self.hub.access_changed(body["a"][0], body["a"][1])
            else:
                self.hub.ingest(body["r"])
        except Exception as exc:
            metrics.ERRORS.labels("bus_decode").inc()
            log.warning("undecodable realtime notice", error=str(exc))

    async def _listen(self) -> None:
        backoff = 0.2
        while True:
            sub = redis.Redis.from_url(self.url, socket_connect_timeout=PUBLISH_TIMEOUT_SECONDS)
            pubsub = sub.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                if backoff > 0.2:
                    log.info("realtime bus reconnected")
                assert self.hub is not None
                self.hub.bus_connected = True
                self.hub.poke_all()  # whatever was announced while we were away: read it now
                backoff = 0.2
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._handle(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.hub is not None:
                    self.hub.bus_connected = False  # back to frequent tail polls until it returns
                metrics.ERRORS.labels("bus_listen").inc()
                log.warning("realtime bus down; retrying", error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with suppress(Exception):  # closing a broken connection may fail again; nothing to keep
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                    await sub.aclose()

    async def close(self) -> None:
        if self._listener is not None:
            await cancel_quietly(self._listener)
        if self._sender is not None and not self._sender.done():
            await asyncio.wait([self._sender], timeout=PUBLISH_TIMEOUT_SECONDS)
        await self._pub.aclose()
