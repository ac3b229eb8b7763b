"""Between processes: every stored feed record is announced on one Redis pub/sub channel.

A notice carries the record itself, so other processes usually deliver without a database read;
pub/sub is at-most-once, though, so nothing relies on it: the hub orders by seq, reads any record
it was not handed, and polls the tail (see hub.py). Redis being down therefore only slows
cross-process delivery to the poll interval; it never fails or delays a domain write.

A subscriber connection can also go silent without closing (a Redis that hangs, a failover or a
middlebox that drops the flow but leaves the socket open). Nothing is written on it, so the kernel
never notices, and the hub, believing the bus up, would poll rarely (QUIET_POLL_FACTOR) and hear
no access change from other processes. So the listener treats silence as a fault: past
`ping_seconds` without a frame it sends a PING, and when no frame at all (the PONG or a notice)
came within BUS_TIMEOUT_SECONDS more, it drops the connection and subscribes again, falling back
to frequent polls meanwhile. redis-py's own `health_check_interval` sends such a PING but never
checks that its answer came.
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


class BusSilent(Exception):
    """The subscriber connection answered nothing, not even a PING, for too long."""


class RedisBus:
    def __init__(self, url: str, channel: str, hub: Hub | None, *, ping_seconds: float = 5.0) -> None:
        self.url = url
        self.channel = channel
        self.hub = hub
        self.ping_seconds = ping_seconds
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

    def resync(self, reseller_id: str) -> None:
        self._queue(json.dumps({"o": self.origin, "s": reseller_id}, separators=(",", ":")))

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
            elif "s" in body:
                self.hub.resync(body["s"])
            else:
                self.hub.ingest(body["r"])
        except Exception as exc:
            metrics.ERRORS.labels("bus_decode").inc()
            log.warning("undecodable realtime notice", error=str(exc))

    async def _listen(self) -> None:
        backoff, lost = 0.2, False
        while True:
            sub = redis.Redis.from_url(self.url, socket_connect_timeout=PUBLISH_TIMEOUT_SECONDS)
            pubsub = sub.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                assert self.hub is not None
                self.hub.bus_connected = True
                self.hub.poke_all()  # whatever was announced while we were away: read it now
                if lost:
                    log.info("realtime bus reconnected")
                    self.hub.recheck_all()  # and the access changes whose notices went with it
                    lost = False
                backoff = 0.2
                await self._receive(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.hub is not None:
                    self.hub.bus_connected = False  # back to frequent tail polls until it returns
                lost = True
                metrics.ERRORS.labels("bus_listen").inc()
                log.warning("realtime bus down; retrying", error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with suppress(Exception):  # closing a broken connection may fail again; nothing to keep
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                    await sub.aclose()

    async def _receive(self, pubsub: Any) -> None:
        """Hands every notice to the hub until the connection fails or stays silent (module
        docstring): a frame of any kind proves it alive."""
        loop = asyncio.get_running_loop()
        heard = pinged = loop.time()
        wait = min(1.0, self.ping_seconds)
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=False, timeout=wait)
            now = loop.time()
            if message is not None:
                heard = now
                if message.get("type") == "message":
                    self._handle(message["data"])
                continue
            if now - heard >= self.ping_seconds + PUBLISH_TIMEOUT_SECONDS:
                raise BusSilent(f"no frame from Redis for {now - heard:.1f} s, PING unanswered")
            if now - heard >= self.ping_seconds and now - pinged >= self.ping_seconds:
                pinged = now
                await asyncio.wait_for(pubsub.ping(), PUBLISH_TIMEOUT_SECONDS)

    async def close(self) -> None:
        if self._listener is not None:
            await cancel_quietly(self._listener)
        if self._sender is not None and not self._sender.done():
            await asyncio.wait([self._sender], timeout=PUBLISH_TIMEOUT_SECONDS)
        await self._pub.aclose()
