"""A TCP relay in front of a server (the store, Redis) whose connections can be made to stop answering.

A real server behind it, a real socket in front: what a client meets when one of its connections
goes half-open (a hung server, a failover or a middlebox that left the socket open while nothing
comes back). `stall_next(marker)` waits for the next request containing `marker` (e.g. a store
command's bytes on the wire, b"\\x02insert\\x00\\t\\x00\\x00\\x00messages\\x00") and then stalls
that connection for good: its request is swallowed (`lose="request"`: the command never runs) or
delivered with its reply swallowed (`lose="reply"`: it runs, the caller never hears). Several
traps may be armed at once, each springs once; one given several markers waits for a request
holding them all.
`stall_open()` stalls every connection open now, both ways. Every other connection, and every
later one, relays normally.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.uri_parser import parse_uri

from backend.core.config import Settings

Lose = Literal["request", "reply"]


def command_marker(command: str, collection: str) -> bytes:
    """The bytes an OP_MSG command `{command: collection, …}` starts its body with (a BSON string)."""
    return string_element(command, collection)


def string_element(key: str, value: str) -> bytes:
    """A BSON string element on the wire, e.g. `_id: "w:3:1"` in a command's filter."""
    encoded = value.encode() + b"\x00"
    return b"\x02" + key.encode() + b"\x00" + len(encoded).to_bytes(4, "little") + encoded


@dataclass
class _Trap:
    markers: tuple[bytes, ...]
    lose: Lose
    sprung: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Link:
    stalled: bool = False


class TcpRelay:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server: asyncio.Server | None = None
        self.traps: list[_Trap] = []
        self.links: list[_Link] = []  # every connection relayed so far, in order
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    def stall_next(self, *markers: bytes, lose: Lose) -> asyncio.Event:
        """Arms a trap for the next request holding every marker; the event is set once a
        connection has been stalled by it."""
        trap = _Trap(markers, lose)
        self.traps.append(trap)
        return trap.sprung

    def stall_open(self) -> int:
        """Every connection open now stops relaying, both ways, and stays open. Returns how many
        connections have been made so far (a later one is a reconnection)."""
        for link in self.links:
            link.stalled = True
        return len(self.links)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in list(self.writers):
            writer.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers.update((writer, up_writer))
        link = _Link()
        self.links.append(link)
        pumps = [
            asyncio.ensure_future(self._requests(reader, up_writer, link)),
            asyncio.ensure_future(self._replies(up_reader, writer, link)),
        ]
        self.tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            self.tasks.difference_update(pumps)
            for w in (writer, up_writer):
                w.close()
                self.writers.discard(w)

    async def _requests(self, reader: asyncio.StreamReader, out: asyncio.StreamWriter, link: _Link) -> None:
        while chunk := await reader.read(65536):
            trap = None if link.stalled else next((t for t in self.traps if all(m in chunk for m in t.markers)), None)
            if trap is not None:
                self.traps.remove(trap)
                link.stalled = True
                if trap.lose == "reply":
                    out.write(chunk)  # it runs; its answer goes nowhere
                    with contextlib.suppress(ConnectionError):
                        await out.drain()
                trap.sprung.set()
                continue
            if link.stalled:
                continue  # a dead connection: nothing more reaches the store
            out.write(chunk)
            await out.drain()

    async def _replies(self, reader: asyncio.StreamReader, out: asyncio.StreamWriter, link: _Link) -> None:
        while chunk := await reader.read(65536):
            if link.stalled:
                continue
            out.write(chunk)
            await out.drain()


class StoreProxy(TcpRelay):
    def __init__(self, mongo_url: str) -> None:
        host, port = parse_uri(mongo_url)["nodelist"][0]
        super().__init__(host, port)
        self.url_of_store = mongo_url

    @property
    def url(self) -> str:
        """The store's URL with this relay as its only host (a direct connection: a replica set's
        members would otherwise be reached by the addresses they advertise, past the relay)."""
        parts = urlsplit(self.url_of_store)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        options = [
            o for o in parts.query.split("&") if o and not o.lower().startswith(("replicaset=", "directconnection="))
        ]
        query = "&".join([*options, "directConnection=true"])
        return f"{parts.scheme}://{netloc}{parts.path or '/'}?{query}"


@pytest.fixture(scope="module")
async def store_relay(mongo_url: str) -> AsyncIterator[StoreProxy]:
    """A relay in front of the test store, one per module that asks for it (its
    `settings_overrides` point MONGO_URL at `store_relay.url`)."""
    proxy = StoreProxy(mongo_url)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


@pytest.fixture
def store_proxy(store_relay: StoreProxy) -> Iterator[StoreProxy]:
    """The module's relay, for a test: a trap it armed that never sprang is disarmed after it, so
    it cannot catch the next test's write."""
    yield store_relay
    store_relay.traps.clear()


@pytest.fixture
def direct(raw_mongo: AsyncMongoClient[dict[str, Any]], settings: Settings) -> AsyncDatabase[dict[str, Any]]:
    """The store past the relay: what it really holds, whatever the relay does to the backend."""
    return raw_mongo[settings.MONGO_DB]


SILENT = {"detail": "the database did not answer; retry"}  # the API's answer when the store went silent


def unanswered(r: httpx.Response) -> bool:
    """What a browser gets from a request whose store went silent (core/errors STORE_SILENT)."""
    return r.status_code == 503 and r.json() == SILENT


def relayed(relay: StoreProxy, **extra: Any) -> dict[str, Any]:
    """A module's `settings_overrides` for a backend that reaches the store through `relay`: a
    command the relay stalls fails after 1.5 s, as a half-open connection would."""
    return {"MONGO_URL": relay.url, "MONGO_SOCKET_TIMEOUT_MS": 1500, **extra}


@pytest.fixture(scope="module")
async def browser(app: Any, backend_port: int) -> AsyncIterator[httpx.AsyncClient]:
    """A person's browser: the backend on its real port, so a request whose store went silent
    answers what a browser gets (the status the exception handlers give), not an exception
    raised in-process."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{backend_port}", timeout=120) as c:
        yield c
