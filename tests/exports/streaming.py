"""Drives the ASGI app by hand for a streamed GET, so a test sees each chunk as it is sent (httpx's
ASGI transport gathers the whole body first) and can hold the response open between chunks."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode


async def stream_get(
    app: Any,
    path: str,
    *,
    headers: dict[str, str],
    params: dict[str, str],
    on_chunk: Callable[[bytes], Awaitable[None]],
    spec_version: str = "2.0",
) -> tuple[int, dict[str, str]]:
    """(status, headers) once the response ended; `on_chunk` gets every body chunk as it is sent."""
    answer: dict[str, Any] = {}
    sent_request = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await _forever()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body" and message.get("body"):
            await on_chunk(message["body"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec_version},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": urlencode(params).encode(),
        "root_path": "",
        "headers": [(b"host", b"test"), *((k.lower().encode(), v.encode()) for k, v in headers.items())],
        "client": ("127.0.0.1", 40000),
        "server": ("test", 80),
    }
    await app(scope, receive, send)
    return int(answer["status"]), answer["headers"]


async def _forever() -> None:
    await asyncio.Event().wait()
