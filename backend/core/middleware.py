"""Per-request id, access log, metrics, the not-ready gate and the request body limit.

Plain ASGI middleware rather than Starlette's BaseHTTPMiddleware: the latter runs every request
through an extra task and stream, a measurable cost on the webhook path.
"""

import re
import time
import uuid

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.core.logging import get_logger
from backend.core.metrics import LATENCY, REQUESTS

log = get_logger("http")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get("x-request-id", "")
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
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


class EmptyQueryIsAbsent:
    """`?department_id=&cursor=&limit=`: a query parameter sent empty is treated as not sent.
    Forms and URL templates send every field they have; an empty filter means no filter, not a
    malformed id (which would be 422)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query: bytes = scope.get("query_string", b"")
        # The common case costs two `in` tests: only a query with an empty value is rebuilt.
        if query and (b"=&" in query or query.endswith(b"=")):
            kept = [p for p in query.split(b"&") if p.partition(b"=")[2]]
            scope = {**scope, "query_string": b"&".join(kept)}
        await self.app(scope, receive, send)


class ReadinessGate:
    """Refuses API traffic with 503 until the start-up checks passed (app.state.startup.ready)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/") and not scope["app"].state.startup.ready:
            await JSONResponse({"detail": "service not ready"}, status_code=503)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyTooLarge(HTTPException):
    """An HTTPException, so that FastAPI's body parsing passes it on (it turns other errors
    raised while reading a body into a 400) and the app's handler renders it."""

    def __init__(self, limit: int, detail: str | None = None) -> None:
        super().__init__(413, detail or f"request body larger than {limit} bytes", headers={"Connection": "close"})


class BodyLimit:
    """Refuses bodies over the route's limit with 413: at once when Content-Length says so, and
    while reading for chunked bodies, which declare no length. `limits`: path prefix → bytes, the
    longest matching prefix wins; `default` for the rest. `uploads`: path pattern → (bytes, the
    refusal's text) for `multipart/form-data` bodies only (file uploads; the route checks its own,
    finer limits while reading). Whatever is refused is never held whole."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        default: int,
        limits: dict[str, int],
        uploads: dict[str, tuple[int, str]] | None = None,
    ) -> None:
        self.app = app
        self.default = default
        self.limits = sorted(limits.items(), key=lambda item: -len(item[0]))
        self.uploads = [(re.compile(pattern), limit) for pattern, limit in (uploads or {}).items()]

    def limit_for(self, path: str, content_type: str = "") -> tuple[int, str | None]:
        """(bytes, the refusal's text when not the default one)."""
        if content_type.lower().startswith("multipart/form-data"):
            for pattern, (limit, detail) in self.uploads:
                if pattern.fullmatch(path):
                    return limit, detail
        return next((limit for prefix, limit in self.limits if path.startswith(prefix)), self.default), None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit, detail = self.limit_for(scope["path"], headers.get("content-type", ""))
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(limit, detail, scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, detail)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(limit, detail, scope, receive, send)

    @staticmethod
    async def _refuse(limit: int, detail: str | None, scope: Scope, receive: Receive, send: Send) -> None:
        exc = BodyTooLarge(limit, detail)
        await JSONResponse({"detail": exc.detail}, status_code=413, headers=exc.headers)(scope, receive, send)
