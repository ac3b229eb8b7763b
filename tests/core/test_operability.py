"""Health, readiness, docs, metrics, request ids, error bodies, and the absence of DELETE."""

import re
from typing import Any

import httpx
import pytest

from backend.app import create_app
from backend.core import startup
from tests.conftest import make_settings
from tests.factories import API


async def test_health_is_live_and_ready_when_started(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = await client.get("/health/ready")
    assert r.status_code == 200 and r.json()["status"] == "ready"


async def test_docs_and_openapi_are_served(client: httpx.AsyncClient) -> None:
    r = await client.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for path in ("/api/v1/auth/login", "/api/v1/tickets", "/api/v1/tickets/{ticket_id}/assume"):
        assert path in paths


async def test_no_delete_route_exists_anywhere(client: httpx.AsyncClient, app: Any) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    methods = {m.lower() for ops in paths.values() for m in ops}
    assert "delete" not in methods, methods
    # Including routes left out of the schema.
    for route in app.routes:
        assert "DELETE" not in (getattr(route, "methods", None) or set()), route


@pytest.mark.parametrize(
    "path", ["/tickets/{t}", "/tickets/{t}/messages", "/departments/{d}", "/users/{u}", "/clients/{c}"]
)
async def test_delete_is_405_on_resources(client: httpx.AsyncClient, admin_headers: dict[str, str], path: str) -> None:
    r = await client.delete(
        f"{API}{path.format(t='0' * 24, d='0' * 24, u='0' * 24, c='0' * 24)}", headers=admin_headers
    )
    assert r.status_code == 405
    assert r.json() == {"detail": "Method Not Allowed"}


async def test_metrics_expose_request_counters_by_route(client: httpx.AsyncClient) -> None:
    await client.get("/health")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert "iaze_http_requests_total" in r.text
    assert re.search(r'iaze_http_requests_total\{method="GET",route="/health",status="200"\} [1-9]', r.text)
    assert "iaze_http_request_seconds_bucket" in r.text


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    r = await client.get("/health", headers={"X-Request-ID": "trace-abc-123"})
    assert r.headers["x-request-id"] == "trace-abc-123"
    r = await client.get("/health")
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    r = await client.get("/health", headers={"X-Request-ID": "x" * 200})
    assert r.headers["x-request-id"] != "x" * 200
    r = await client.get(f"{API}/tickets")  # errors carry it too
    assert r.status_code == 401 and r.headers["x-request-id"]


async def test_errors_are_json_detail_bodies(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    cases = [
        (await client.get(f"{API}/no-such-thing"), 404),
        (await client.get(f"{API}/tickets"), 401),
        (await client.post(f"{API}/users", json={}, headers=admin_headers), 403),
        (await client.get(f"{API}/tickets/{'0' * 24}", headers=admin_headers), 404),
        (await client.post(f"{API}/auth/login", json={"email": 1}), 422),
        (await client.put(f"{API}/tickets", headers=admin_headers), 405),
    ]
    for r, status in cases:
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("application/json")
        assert set(r.json()) == {"detail"}, r.text


async def test_not_ready_instance_refuses_api_but_stays_live(
    mongo_url: str, db_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreachable(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("simulated: database unreachable")

    monkeypatch.setattr(startup, "wait_for_database", unreachable)
    app = create_app(make_settings(mongo_url, db_name))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            assert (await c.get("/health")).status_code == 200
            r = await c.get("/health/ready")
            assert r.status_code == 503 and r.json()["status"] == "not ready"
            r = await c.post(f"{API}/auth/login", json={"email": "a@b.c", "password": "x"})
            assert r.status_code == 503 and "detail" in r.json()
