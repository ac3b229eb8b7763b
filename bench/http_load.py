"""A lean HTTP/1.1 keep-alive client for load generation (one connection per worker).

Why not httpx: at 64 concurrent posts the bench's httpx client used ~90 % of a core on this
2-core machine — more than the backend it measures — so the webhook numbers measured the client.
A provider posts from its own machine; this client spends almost nothing per request (a
pre-built header block, one write, one read of the answer), like wrk or hey would.
"""

import asyncio
import contextlib
from dataclasses import dataclass


class HttpError(Exception):
    pass


@dataclass
class Response:
    status: int
    body: bytes


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Response:
        """Posts `body` (JSON). Reconnects once when a kept-alive connection was closed."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        for attempt in range(2):
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            assert self._reader is not None
            try:
                self._writer.write(head + body)
                return await self._read()
            except (ConnectionError, asyncio.IncompleteReadError, HttpError):
                await self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _read(self) -> Response:
        assert self._reader is not None
        raw = await self._reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise HttpError(f"bad status line {lines[0]!r}")
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        body = await self._reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return Response(int(parts[1]), body)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None
