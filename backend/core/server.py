"""How uvicorn serves the app: its options, and an HTTP protocol that does not hold slow clients.

uvicorn closes idle keep-alive connections (timeout_keep_alive) but sets no deadline on a
request being received: a client that sends its headers or body a byte at a time holds its
connection (and whatever the app has allocated for it) for as long as it likes. The protocol
below (uvicorn's httptools one, its default here) adds a deadline for the headers, two bounds on
the body (no silence longer than `body_timeout`, an average rate of at least `body_min_rate` once
`body_timeout` has passed) and a bound on the size of the request line and headers.

The body has bounds, not a deadline: an agent's 100 MB document on a slow uplink is a body that
honestly takes minutes (frontend/nginx.conf streams it on as it arrives), while a slow-loris body
either falls silent or trickles, and a trickle of N bytes a second holds the connection at most
(the route's body limit) / N seconds before its 413.
"""

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from backend.core.config import Settings, get_settings

PROTOCOL = "backend.core.server:GuardedHttpProtocol"  # by name: worker processes import it
_TOO_LARGE_BODY = b'{"detail":"request headers are too large"}'
_HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    + f"content-length: {len(_TOO_LARGE_BODY)}\r\nconnection: close\r\n\r\n".encode()
    + _TOO_LARGE_BODY
)


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    body_timeout: float
    max_header_bytes: int
    body_min_rate: float = 0.0  # bytes a second, averaged from the headers on; 0: no floor

    @classmethod
    def of(cls, settings: Settings) -> "ConnectionLimits":
        return cls(
            header_timeout=settings.HTTP_HEADER_TIMEOUT_SECONDS,
            body_timeout=settings.HTTP_BODY_TIMEOUT_SECONDS,
            max_header_bytes=settings.HTTP_MAX_HEADER_BYTES,
            body_min_rate=settings.HTTP_BODY_MIN_BYTES_PER_SECOND,
        )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Everything `python -m backend` passes to uvicorn besides the app."""
    return {
        "host": settings.HOST,
        "port": settings.PORT,
        "workers": settings.WORKERS,
        "log_config": None,
        # The client address is decided by TRUSTED_PROXIES alone (backend/auth/address.py);
        # uvicorn's own rewrite would trust X-Forwarded-For from any loopback peer.
        "proxy_headers": False,
        "http": PROTOCOL,
        "timeout_keep_alive": settings.HTTP_KEEP_ALIVE_SECONDS,
        # Read only by uvicorn's h11 protocol, should it be chosen instead: the same header bound.
        "h11_max_incomplete_event_size": settings.HTTP_MAX_HEADER_BYTES,
        # Realtime frames are small JSON texts sent to many sockets: compressing each copy per
        # socket cost more CPU than anything else in the fan-out, and a zlib context per
        # socket is memory, for a bandwidth saving nobody notices.
        "ws_per_message_deflate": False,
    }


class GuardedHttpProtocol(HttpToolsProtocol):
    """A request's headers must arrive within `header_timeout` of its first byte (of the
    connection, for the first request). Its body may not fall silent for `body_timeout` (from the
    headers, then from each piece of it), and once `body_timeout` has passed since the headers it
    must have averaged `body_min_rate` bytes a second (checked as each piece arrives). Request
    line plus headers over `max_header_bytes` get 431. A missed bound closes the connection (the
    app, if it is reading the body, sees a disconnect). Time in which uvicorn itself stopped
    reading because the app had not taken the body yet (flow control) is not the client's."""

    limits: ClassVar[ConnectionLimits | None] = None  # None: from the settings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = self.limits or ConnectionLimits.of(get_settings())
        self._deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0  # received while the current request's headers are incomplete
        self._awaiting_headers = True
        self._request_boundary = False  # headers or a request ended within the current chunk
        self._refused = False
        self._body_started = 0.0  # loop time of the current request's headers' end
        self._body_bytes = 0

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self._awaiting_headers and self.flow.read_paused:
            # Silent because uvicorn paused reading until the app takes the body: not the client.
            self._body_started += self._limits.body_timeout
            self._arm(self._limits.body_timeout)
            return
        self._close()

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._request_boundary = False
        super().data_received(data)
        # Only a chunk that lies wholly within a request's headers counts: one that also ended
        # headers or a request holds bytes of a body or of a request already answered.
        if self._awaiting_headers and not self._request_boundary:
            # Counted here rather than per parsed header: the parser keeps a header's value
            # until the next one starts, so an endless value would never reach on_header.
            self._header_bytes += len(data)
            if self._header_bytes > self._limits.max_header_bytes:
                self._refuse_headers()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the websocket protocol owns the connection from here
        super().handle_websocket_upgrade()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm(self._limits.header_timeout)

    def _refuse_headers(self) -> None:
        self._refused = True  # nothing more of this connection is read or kept
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(_HEADERS_TOO_LARGE)
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._request_boundary = True
        self._header_bytes = 0
        self._body_started = self.loop.time()
        self._body_bytes = 0
        self._arm(self._limits.body_timeout)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        self._body_bytes += len(body)
        elapsed = self.loop.time() - self._body_started
        if elapsed > self._limits.body_timeout and self._body_bytes < self._limits.body_min_rate * elapsed:
            self._refused = True  # a trickle: closed as if it had fallen silent
            self._disarm()
            self._close()
            return
        self._arm(self._limits.body_timeout)  # silence is counted from this piece
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self._awaiting_headers = True  # the next request on this connection, if any
        self._request_boundary = True
        if not self._refused:
            super().on_message_complete()
