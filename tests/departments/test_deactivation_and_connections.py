"""A department is not deactivated while an active WhatsApp connection opens its new conversations
there (its default department): those conversations would keep landing in a queue no agent can be
added to, seen by the owner alone once its agents moved on. The refusal (409) names the
connections; choosing another default first lets the deactivation through. An inactive connection
counts too: its deliveries are still processed (it may still be connected at the provider)."""

from typing import Any

import httpx

from tests.factories import (
    API,
    Tenant,
    assume,
    collect_pages,
    make_department,
    make_open_connection,
    make_tenant,
    unique_phone,
)
from tests.webhooks.client_steps import inbound

CONNECTIONS = f"{API}/whatsapp-connections"


async def _inbound(client: httpx.AsyncClient, db: Any, conn: dict[str, Any], phone: str, text: str) -> str:
    """The client writes on WhatsApp; the id its message is stored under once processed."""
    raw, message_id = await inbound(client, db, conn, phone, text)
    assert raw["status"] == "processed", raw
    return message_id


async def _ticket_of(db: Any, tenant: Tenant, phone: str) -> dict[str, Any]:
    customer = await db.users.find_one({"reseller_id": tenant.id, "role": "client", "phone": phone})
    assert customer is not None
    docs = await db.tickets.find({"client_id": customer["_id"]}).to_list(None)
    assert len(docs) == 1, docs
    return dict(docs[0])


async def _deactivate(client: httpx.AsyncClient, tenant: Tenant, department_id: str) -> httpx.Response:
    return await client.patch(f"{API}/departments/{department_id}", json={"active": False}, headers=tenant.headers)


async def _set_default(client: httpx.AsyncClient, tenant: Tenant, conn: dict[str, Any], department_id: str) -> None:
    r = await client.patch(
        f"{CONNECTIONS}/{conn['_id']}", json={"default_department_id": department_id}, headers=tenant.headers
    )
    assert r.status_code == 200, r.text


async def test_the_default_department_of_an_active_connection_is_not_deactivated_until_another_is_chosen(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, departments=1, agents=1)
    closing = tenant.departments[0]["id"]  # the connections' default department
    staying = (await make_department(client, tenant))["id"]
    first = await make_open_connection(client, tenant, db)
    second = await make_open_connection(client, tenant, db)
    assert first["default_department_id"] == second["default_department_id"] == closing

    r = await _deactivate(client, tenant, closing)
    assert r.status_code == 409, r.text
    assert r.json()["detail"] == (
        f"department is the default of connection(s): {first['name']}, {second['name']}; choose another default first"
    )
    assert (await db.departments.find_one({"_id": closing}))["active"] is True  # nothing half-written

    # One moved: still refused, naming the one left.
    await _set_default(client, tenant, first, staying)
    r = await _deactivate(client, tenant, closing)
    assert r.status_code == 409 and second["name"] in r.json()["detail"] and first["name"] not in r.json()["detail"]
    # Renaming it, or any change without {"active": false}, is not refused.
    r = await client.patch(f"{API}/departments/{closing}", json={"name": "Fechando"}, headers=tenant.headers)
    assert r.status_code == 200, r.text

    await _set_default(client, tenant, second, staying)
    r = await _deactivate(client, tenant, closing)
    assert r.status_code == 200 and r.json()["active"] is False, r.text
    # New conversations open where the connection now sends them.
    phone = unique_phone()
    await _inbound(client, db, second, phone, "Quero comprar")
    assert (await _ticket_of(db, tenant, phone))["department_id"] == staying


async def test_an_inactive_connection_defaulting_to_the_department_blocks_it_too(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any
) -> None:
    """A connection deactivated in IAZE may still be connected at the provider: what its clients
    write is still processed, new conversations opening in its default department (and it is
    reactivated with the default it has). So it keeps the department from going inactive too."""
    tenant = await make_tenant(client, admin_headers, departments=1, agents=0)
    closing = tenant.departments[0]["id"]
    staying = (await make_department(client, tenant))["id"]
    conn = await make_open_connection(client, tenant, db)
    r = await client.patch(f"{CONNECTIONS}/{conn['_id']}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 200, r.text

    r = await _deactivate(client, tenant, closing)
    assert r.status_code == 409, r.text
    assert r.json()["detail"] == (
        f"department is the default of connection(s): {conn['name']}; choose another default first"
    )
    # An inactive connection's default can be changed like an active one's.
    await _set_default(client, tenant, conn, staying)
    r = await _deactivate(client, tenant, closing)
    assert r.status_code == 200 and r.json()["active"] is False, r.text


async def test_the_check_reads_only_the_actors_tenant(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any
) -> None:
    """Another tenant's department: 404 as before (not a 409 naming that tenant's connections)."""
    victim = await make_tenant(client, admin_headers, departments=1, agents=0)
    await make_open_connection(client, victim, db)
    intruder = await make_tenant(client, admin_headers, departments=1, agents=0)
    r = await _deactivate(client, intruder, victim.departments[0]["id"])
    assert r.status_code == 404, r.text


async def test_tickets_waiting_in_a_deactivated_department_stay_in_its_agents_queue(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any
) -> None:
    """Moved from the orphaned-work audit: a department closed the allowed way (its connection's
    default moved first) keeps the conversations already waiting in it within its agents' reach,
    and the client's next messages go to the same waiting ticket."""
    tenant = await make_tenant(client, admin_headers, departments=1, agents=1)
    dept = tenant.departments[0]["id"]
    (agent,) = tenant.agents
    conn = await make_open_connection(client, tenant, db)
    phone = unique_phone()
    await _inbound(client, db, conn, phone, "Olá")
    ticket_id = (await _ticket_of(db, tenant, phone))["_id"]

    staying = (await make_department(client, tenant))["id"]
    await _set_default(client, tenant, conn, staying)
    r = await _deactivate(client, tenant, dept)
    assert r.status_code == 200, r.text
    message_id = await _inbound(client, db, conn, phone, "Ainda estou aqui")
    assert (await db.messages.find_one({"_id": message_id}))["ticket_id"] == ticket_id
    seen = {t["id"] for t in await collect_pages(client, agent["headers"], f"{API}/tickets", status="espera")}
    assert ticket_id in seen
    await assume(client, agent["headers"], ticket_id)
    r = await client.post(f"{API}/tickets/{ticket_id}/messages", json={"body": "Oi"}, headers=agent["headers"])
    assert r.status_code in (200, 201), r.text
