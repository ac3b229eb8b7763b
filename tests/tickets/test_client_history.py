"""A client's history from the ticket in hand (issue 17 item 8): read-only, authorized through
the current ticket's visibility, never another client's or tenant's ticket."""

from typing import Any

import httpx
import pytest

from tests.factories import (
    API,
    Tenant,
    assume,
    make_agent,
    make_client,
    make_client_ticket,
    make_department,
    make_open_connection,
    make_tenant,
    make_ticket,
)
from tests.messages.helpers import walk_thread


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


@pytest.fixture(scope="module")
async def other(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


async def _open(
    client: httpx.AsyncClient, tenant: Tenant, customer: dict[str, Any], dept_id: str, text: str
) -> dict[str, Any]:
    r = await client.post(
        f"{API}/tickets",
        json={"client_id": customer["id"], "department_id": dept_id, "message": text},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_an_agent_reads_the_clients_earlier_tickets_through_the_current_one(
    client: httpx.AsyncClient, tenant: Tenant, other: Tenant, db: Any
) -> None:
    first_agent = tenant.agents[0]
    sales = await make_department(client, tenant)
    seller = await make_agent(client, tenant, [sales["id"]])
    customer = await make_client(client, tenant)
    conn = await make_open_connection(client, tenant, db)
    earlier: list[dict[str, Any]] = []
    for i in range(3):
        ticket = await make_client_ticket(client, tenant, db, message=f"antigo {i}", customer=customer, connection=conn)
        await assume(client, first_agent["headers"], ticket["id"])
        r = await client.post(
            f"{API}/tickets/{ticket['id']}/messages", json={"body": f"resposta {i}"}, headers=first_agent["headers"]
        )
        assert r.status_code == 201
        r = await client.post(f"{API}/tickets/{ticket['id']}/finalize", headers=first_agent["headers"])
        assert r.status_code == 200
        earlier.append(r.json())
    current = await _open(client, tenant, customer, sales["id"], "voltei")
    stranger = await make_ticket(client, tenant, department_id=sales["id"])  # another client, same queue
    seller_h = seller["headers"]

    # The seller never handled the earlier tickets: no direct access...
    assert (await client.get(f"{API}/tickets/{earlier[0]['id']}", headers=seller_h)).status_code == 404
    # ...but sees them from the ticket in its queue, newest first, paged.
    history: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        r = await client.get(f"{API}/tickets/{current['id']}/history", params=params, headers=seller_h)
        assert r.status_code == 200, r.text
        history += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    assert [t["id"] for t in history] == [t["id"] for t in reversed(earlier)]
    assert {(t["status"], t["agent_name"]) for t in history} == {("finalizado", first_agent["name"])}
    r = await client.get(f"{API}/tickets/{current['id']}/history/{earlier[1]['id']}", headers=seller_h)
    assert r.status_code == 200 and r.json()["number"] == earlier[1]["number"]
    thread, _ = await walk_thread(
        client, seller_h, f"{API}/tickets/{current['id']}/history/{earlier[1]['id']}/messages"
    )
    assert [m["body"] for m in thread] == ["antigo 1", "resposta 1"]

    # Read-only, and only for this client, this tenant, and whoever sees the current ticket.
    before = await db.messages.count_documents({})
    denied = [
        (seller_h, f"/tickets/{current['id']}/history/{stranger['id']}/messages"),  # another client
        (seller_h, f"/tickets/{current['id']}/history/{stranger['id']}"),
        (seller_h, f"/tickets/{stranger['id']}/history/{earlier[0]['id']}/messages"),
        (seller_h, f"/tickets/{current['id']}/history/not-an-id/messages"),
        (first_agent["headers"], f"/tickets/{current['id']}/history"),  # cannot see the current ticket
        (first_agent["headers"], f"/tickets/{current['id']}/history/{earlier[0]['id']}/messages"),
        (other.agents[0]["headers"], f"/tickets/{current['id']}/history"),
        (other.headers, f"/tickets/{current['id']}/history/{earlier[0]['id']}/messages"),
    ]
    for headers, path in denied:
        assert (await client.get(f"{API}{path}", headers=headers)).status_code == 404, path
    for method in ("POST", "PATCH", "DELETE"):
        r = await client.request(
            method, f"{API}/tickets/{current['id']}/history/{earlier[0]['id']}/messages", headers=seller_h
        )
        assert r.status_code == 405, method
    assert await db.messages.count_documents({}) == before
    # The reseller owner sees the same history; a client with one ticket has none.
    r = await client.get(f"{API}/tickets/{current['id']}/history", headers=tenant.headers)
    assert [t["id"] for t in r.json()["items"]] == [t["id"] for t in reversed(earlier)]
    r = await client.get(f"{API}/tickets/{stranger['id']}/history", headers=seller_h)
    assert r.status_code == 200 and r.json() == {"items": [], "next_cursor": None}
