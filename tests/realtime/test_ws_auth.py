"""The realtime socket and the token's life: revocation (password change, deactivation), expiry,
and a tenant feed whose first start hit a database error."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pymongo.errors import AutoReconnect

from backend.realtime import records
from tests.factories import make_tenant, make_ticket
from tests.realtime.conftest import SERVER_OPTIONS, Server, Socket, bearer, open_greeted, open_socket, start_server


async def test_a_password_change_closes_open_sockets_and_refuses_the_old_token(
    client: httpx.AsyncClient, admin_headers: dict[str, str], servers: list[Server], sockets: list[Socket]
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    agent = tenant.agents[0]
    old = bearer(agent["headers"])
    on_each = [await open_greeted(server.ws_url(old), sockets) for server in servers]
    r = await client.patch(f"/api/v1/users/{agent['id']}", json={"password": "new-pass-123"}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    for s in on_each:  # told at once through Redis (the periodic re-check is an hour away here)
        assert await s.close_code() == 4401
    s = await open_socket(servers[1].ws_url(old))
    assert await s.close_code() == 4401
    r = await client.post("/api/v1/auth/login", json={"email": agent["email"], "password": "new-pass-123"})
    assert r.status_code == 200
    await open_greeted(servers[1].ws_url(r.json()["access_token"]), sockets)


async def test_a_token_from_before_a_deactivation_does_not_open_a_socket_after_reactivation(
    client: httpx.AsyncClient, admin_headers: dict[str, str], servers: list[Server], sockets: list[Socket]
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    agent = tenant.agents[0]
    url = f"/api/v1/users/{agent['id']}"
    assert (await client.patch(url, json={"active": False}, headers=tenant.headers)).status_code == 200
    assert (await client.patch(url, json={"active": True}, headers=tenant.headers)).status_code == 200
    s = await open_socket(servers[0].ws_url(bearer(agent["headers"])))
    assert await s.close_code() == 4401


async def test_a_socket_is_closed_with_4401_when_its_token_expires(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    mongo_url: str,
    db_name: str,
    redis_url: str,
    tmp_path: Path,
    sockets: list[Socket],
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    agent = tenant.agents[0]
    # Tokens of this server live 12 seconds (the login and the socket's hello must fit in them on a
    # loaded machine; 3 s did not always); its sockets are otherwise never re-checked.
    server = start_server(
        mongo_url, db_name, tmp_path, REDIS_URL=redis_url, **{**SERVER_OPTIONS, "ACCESS_TOKEN_MINUTES": 0.2}
    )
    try:
        async with httpx.AsyncClient(base_url=server.http, timeout=30) as http:
            r = await http.post("/api/v1/auth/login", json={"email": agent["email"], "password": "agent-pass-1"})
            assert r.status_code == 200 and r.json()["expires_in"] == 12, r.text
        s = await open_greeted(server.ws_url(r.json()["access_token"]), sockets)
        assert await s.close_code() == 4401
    finally:
        server.stop()


@pytest.fixture
async def served(app: Any) -> AsyncIterator[str]:
    """The in-test app on a real port, so a test can inject failures into the process serving sockets."""
    from backend.devtools import ferretdb

    port = ferretdb.free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    for _ in range(600):
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    assert server.started
    try:
        yield f"ws://127.0.0.1:{port}/api/v1/ws"
    finally:
        server.should_exit = True
        await task


async def test_a_database_error_on_a_tenants_first_socket_does_not_poison_its_feed(
    app: Any,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    served: str,
    sockets: list[Socket],
    monkeypatch: Any,
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    latest = records.latest
    failures: list[str] = []

    async def one_failure(db: Any, reseller_id: str, *, start: int = 0) -> int:
        if reseller_id == tenant.id and not failures:
            failures.append(reseller_id)
            raise AutoReconnect("injected: connection reset")
        return await latest(db, reseller_id, start=start)

    monkeypatch.setattr(records, "latest", one_failure)
    url = f"{served}?token={bearer(tenant.headers)}"
    first = await open_socket(url)
    sockets.append(first)
    assert await first.close_code() == 1013  # try again
    assert failures == [tenant.id]
    # The next socket starts the feed afresh and gets events.
    s = await open_greeted(url, sockets)
    await make_ticket(client, tenant)
    assert [e["event"] for e in await s.until_seq(2)] == ["ticket.created", "message.created"]
