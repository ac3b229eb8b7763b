"""Per-request id, access log, metrics, and the not-ready gate.

Plain ASGI middleware rather than Starlette's BaseHTTPMiddleware: the latter runs every request
through an extra task and stream, a measurable cost on the webhook path.
"""

import time
import uuid

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.core.logging import get_logger
from backend.core.metrics import LATENCY, REQUESTS

log = get_logger("http")


def _request_id(scope: Scope) -> str:
    incoming = Headers(scope=scope).get("x-request-id", "")
    return incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            REQUESTS.labels(method, route, str(status)).inc()
            LATENCY.labels(method, route).observe(elapsed)
            log.info(
                "request", method=method, path=scope["path"], route=route, status=status, ms=round(elapsed * 1000, 1)
            )


class ReadinessGate:
    """Refuses API traffic with 503 until the start-up checks passed (app.state.startup.ready)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/") and not scope["app"].state.startup.ready:
            await JSONResponse({"detail": "service not ready"}, status_code=503)(scope, receive, send)
            return
        await self.app(scope, receive, send)
