"""Slow and oversized requests do not hold connections: the settings reach uvicorn, and the
protocol closes a request whose headers or body do not arrive in time. The deadlines below are
short so that the tests wait little; what is asserted is that the server closes, never how fast."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from uvicorn.importer import import_from_string
from websockets.asyncio.client import connect

from backend.core import server
from backend.core.server import ConnectionLimits, GuardedHttpProtocol
from backend.devtools import ferretdb
from tests.conftest import make_settings

BOUND = 60.0  # only so that a regression fails instead of hanging


async def _echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await receive()  # connect
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"]})
        return
    assert scope["type"] == "http"
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]}
    )
    await send({"type": "http.response.body", "body": body})


class _Quick(GuardedHttpProtocol):
    limits = ConnectionLimits(header_timeout=0.5, body_timeout=0.5, max_header_bytes=2048, body_min_rate=500)


@pytest.fixture
async def port() -> AsyncIterator[int]:
    chosen = ferretdb.free_port()
    config = uvicorn.Config(
        _echo, host="127.0.0.1", port=chosen, http=_Quick, lifespan="off", log_level="warning", timeout_keep_alive=1
    )
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    while not srv.started:
        assert not task.done(), "server did not start"
        await asyncio.sleep(0.02)
    try:
        yield chosen
    finally:
        srv.should_exit = True
        await task


async def _closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), BOUND)


def test_the_connection_settings_reach_uvicorns_config() -> None:
    settings = make_settings(
        "mongodb://127.0.0.1:1/",
        "unused",
        HTTP_HEADER_TIMEOUT_SECONDS=7,
        HTTP_BODY_TIMEOUT_SECONDS=33,
        HTTP_BODY_MIN_BYTES_PER_SECOND=2048,
        HTTP_KEEP_ALIVE_SECONDS=4,
        HTTP_MAX_HEADER_BYTES=9000,
        WORKERS=3,
        REDIS_URL="redis://127.0.0.1:1/0",  # several workers need it (revocation across processes)
        PORT=8123,
    )
    config = uvicorn.Config("backend.app:create_app", factory=True, **server.uvicorn_options(settings))
    assert config.timeout_keep_alive == 4
    assert config.h11_max_incomplete_event_size == 9000
    assert (config.workers, config.port, config.ws_per_message_deflate) == (3, 8123, False)
    assert config.proxy_headers is False  # the client address is TRUSTED_PROXIES' decision alone
    assert import_from_string(config.http) is GuardedHttpProtocol
    assert ConnectionLimits.of(settings) == ConnectionLimits(
        header_timeout=7, body_timeout=33, max_header_bytes=9000, body_min_rate=2048
    )


def test_python_m_backend_hands_those_settings_to_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry point itself (not only the options function) passes them on."""
    import backend.__main__ as entry
    from backend.core.config import get_settings

    captured: list[uvicorn.Config] = []
    monkeypatch.setattr(entry.uvicorn, "run", lambda app, **kw: captured.append(uvicorn.Config(app, **kw)))
    for name, value in {
        "ENV": "test",
        "MONGO_URL": "mongodb://127.0.0.1:1/",  # set: no local store is started
        "JWT_SECRET": "s" * 40,
        "HTTP_KEEP_ALIVE_SECONDS": "3",
        "HTTP_MAX_HEADER_BYTES": "4096",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        assert entry.main() == 0
    finally:
        get_settings.cache_clear()
    [config] = captured
    assert config.timeout_keep_alive == 3 and config.h11_max_incomplete_event_size == 4096
    assert import_from_string(config.http) is GuardedHttpProtocol


async def test_a_request_is_served_and_the_connection_kept_alive(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for body in (b"hello", b"again"):
        writer.write(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\n" + body)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), BOUND)
        assert head.startswith(b"HTTP/1.1 200")
        assert await asyncio.wait_for(reader.readexactly(5), BOUND) == body
    writer.close()


async def test_a_body_larger_than_the_header_limit_in_one_write_is_served(port: int) -> None:
    """Bytes of a body (or of a request already answered) never count as header bytes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b"b" * (20 * _Quick.limits.max_header_bytes)  # type: ignore[union-attr]
    for _ in range(2):
        writer.write(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), BOUND)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert await asyncio.wait_for(reader.readexactly(len(body)), BOUND) == body
    writer.close()


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connected, never says anything
        b"GET / HT",  # a request line a byte at a time
        b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: aaa",  # headers that never end
    ],
)
async def test_headers_that_do_not_arrive_in_time_close_the_connection(port: int, sent: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(sent)
    assert await _closed_by_server(reader) == b""
    writer.close()


async def test_a_body_that_does_not_arrive_in_time_closes_the_connection(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nonly this")
    assert b"200" not in await _closed_by_server(reader)  # never answered as if complete
    writer.close()


async def _send_body_slowly(port: int, *, pieces: int, piece: int, every: float) -> bytes:
    """Headers, then the body `piece` bytes every `every` seconds; what the server answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % (pieces * piece))
    try:
        for _ in range(pieces):
            if reader.at_eof():
                break  # the server closed the connection
            writer.write(b"a" * piece)
            await writer.drain()
            await asyncio.sleep(every)
    except ConnectionError:
        pass  # cut while sending: what the server answered (nothing) tells
    try:
        return await asyncio.wait_for(reader.read(), BOUND)
    except ConnectionError:
        return b""
    finally:
        writer.close()


async def test_a_slow_body_that_keeps_coming_is_served_however_long_it_takes(port: int) -> None:
    """An agent's large upload on a slow uplink: 2 s of body against a 0.5 s body timeout, at
    1000 bytes a second against a floor of 500, is answered, not cut (the deadline it replaced
    closed it at 0.5 s)."""
    answer = await _send_body_slowly(port, pieces=20, piece=100, every=0.1)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"a" * 2000)


async def test_a_body_that_trickles_below_the_minimum_rate_closes_the_connection(port: int) -> None:
    """Slow-loris that never falls silent: 10 bytes every 0.1 s (100 bytes a second, under the
    floor of 500) is cut soon after the body timeout, long before its 3 s would have ended."""
    started = asyncio.get_running_loop().time()
    answer = await _send_body_slowly(port, pieces=30, piece=10, every=0.1)
    assert b"200" not in answer
    assert asyncio.get_running_loop().time() - started < 2.0


async def test_headers_over_the_limit_get_431(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n" + b"x-big: " + b"a" * 4096 + b"\r\n")
    answer = await _closed_by_server(reader)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    assert answer.endswith(b'{"detail":"request headers are too large"}')
    writer.close()


async def test_a_websocket_is_not_cut_by_the_request_deadlines(port: int) -> None:
    """Upgraded, the connection belongs to the websocket protocol: no header or body deadline
    of the request that opened it may close it (waited out here: three times the deadlines)."""
    async with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=BOUND) as ws:
        await asyncio.sleep(3 * _Quick.limits.body_timeout)  # type: ignore[union-attr]
        await ws.send("still here")
        assert await asyncio.wait_for(ws.recv(), BOUND) == "still here"
