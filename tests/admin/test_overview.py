"""The admin overview: every reseller's tickets by status, messages in and out over a period of
its local days, and its connections' status; admins only."""

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from backend.core import clock
from backend.core.clock import utcnow
from backend.core.ids import new_id
from tests.factories import API, Tenant, assume, make_client_ticket, make_tenant


@pytest.fixture(scope="module")
async def busy(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


@pytest.fixture(scope="module")
async def quiet(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=0)


async def _connection(db: Any, tenant: Tenant, *, status: str, active: bool = True) -> str:
    now = utcnow()
    _id = new_id()
    await db.whatsapp_connections.insert_one(
        {
            "_id": _id,
            "reseller_id": tenant.id,
            "name": f"Número {status}",
            "provider": "evolution",
            "instance_name": f"inst-{_id}",
            "default_department_id": tenant.departments[0]["id"],
            "status": status,
            "qr_code": None,
            "active": active,
            "webhook_token": "x" * 43,
            "last_error": "sem sinal" if status == "close" else None,
            "created_at": now,
            "updated_at": now,
        }
    )
    return _id


async def test_admin_sees_each_resellers_tickets_messages_and_connections(
    client: httpx.AsyncClient, db: Any, admin_headers: dict[str, str], busy: Tenant, quiet: Tenant
) -> None:
    agent = busy.agents[0]
    up = await _connection(db, busy, status="open")
    down = await _connection(db, busy, status="close")
    # Tickets clients opened on WhatsApp: replies are only accepted where they reach the client.
    whatsapp = {"_id": up}
    first = await make_client_ticket(client, busy, db, connection=whatsapp, signed=True)
    await make_client_ticket(client, busy, db, connection=whatsapp, signed=True)
    await assume(client, agent["headers"], first["id"])
    for body in ("Olá", "Como posso ajudar?"):
        r = await client.post(f"{API}/tickets/{first['id']}/messages", json={"body": body}, headers=agent["headers"])
        assert r.status_code == 201
    r = await client.post(f"{API}/tickets/{first['id']}/notes", json={"body": "nota"}, headers=busy.headers)
    assert r.status_code == 201
    # A ticket opened last month (a scripted clock): its message is outside the default period.
    month_ago = datetime.now(UTC) - timedelta(days=40)
    with clock.override(lambda: month_ago):
        await make_client_ticket(client, busy, db, connection=whatsapp, signed=True)

    r = await client.get(f"{API}/admin/overview", headers=admin_headers)
    assert r.status_code == 200, r.text
    body = r.json()
    rows = {row["id"]: row for row in body["items"]}
    row = rows[busy.id]
    assert row["tickets"] == {"espera": 2, "atendendo": 1, "finalizado": 0}
    assert (row["messages_in"], row["messages_out"]) == (2, 2)
    assert row["timezone"] == "America/Sao_Paulo"
    assert {(c["id"], c["status"], c["last_error"]) for c in row["connections"]} == {
        (up, "open", None),
        (down, "close", "sem sinal"),
    }
    row = rows[quiet.id]
    assert (row["tickets"], row["messages_in"], row["messages_out"], row["connections"]) == (
        {"espera": 0, "atendendo": 0, "finalizado": 0},
        0,
        0,
        [],
    )
    today = datetime.now(ZoneInfo("UTC")).date()
    assert (body["period_from"], body["period_to"]) == ((today - timedelta(days=6)).isoformat(), today.isoformat())

    # A period that holds only last month's message.
    day = month_ago.astimezone(ZoneInfo("America/Sao_Paulo")).date()
    r = await client.get(
        f"{API}/admin/overview", params={"from": day.isoformat(), "to": day.isoformat()}, headers=admin_headers
    )
    assert r.status_code == 200
    row = next(i for i in r.json()["items"] if i["id"] == busy.id)
    assert (row["messages_in"], row["messages_out"]) == (1, 0)


async def test_only_the_admin_sees_the_overview_and_bad_periods_are_422(
    client: httpx.AsyncClient, admin_headers: dict[str, str], busy: Tenant
) -> None:
    assert (await client.get(f"{API}/admin/overview", headers=busy.headers)).status_code == 403
    assert (await client.get(f"{API}/admin/overview", headers=busy.agents[0]["headers"])).status_code == 403
    assert (await client.get(f"{API}/admin/overview")).status_code == 401
    for params in (
        {"from": "2026-02-03", "to": "2026-02-01"},
        {"from": "2026-2-30"},
        {"from": "2020-01-01", "to": "2026-01-01"},
    ):
        r = await client.get(f"{API}/admin/overview", params=params, headers=admin_headers)
        assert r.status_code == 422, params
