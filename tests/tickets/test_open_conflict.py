"""POST /tickets for a client that already has an open ticket on the channel answers 409: the
ticket that holds the client is named only to someone who can see it."""

from typing import Any

import httpx

from tests.factories import (
    API,
    make_agent,
    make_client,
    make_client_ticket,
    make_department,
    make_open_connection,
    make_tenant,
)


async def test_the_conflict_names_the_open_ticket_only_to_who_can_see_it(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    sales, legal = tenant.departments[0], await make_department(client, tenant)
    seller = await make_agent(client, tenant, [sales["id"]])
    customer = await make_client(client, tenant)
    conn = await make_open_connection(client, tenant, db)
    held = await make_client_ticket(
        client, tenant, db, message="processo 123", department_id=legal["id"], customer=customer, connection=conn
    )
    opening = {"client_id": customer["id"], "department_id": sales["id"], "message": "oi", "connection_id": conn["_id"]}
    before = await db.tickets.count_documents({})
    r = await client.post(f"{API}/tickets", json=opening, headers=seller["headers"])
    assert r.status_code == 409 and r.json()["detail"] == {"message": "client already has an open ticket"}
    assert (await client.get(f"{API}/tickets/{held['id']}", headers=seller["headers"])).status_code == 404
    r = await client.post(f"{API}/tickets", json=opening, headers=tenant.headers)
    assert r.status_code == 409 and r.json()["detail"]["ticket_id"] == held["id"]
    assert await db.tickets.count_documents({}) == before
