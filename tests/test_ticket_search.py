"""GET /api/v1/tickets?q=: the inbox search by client name, phone or ticket number."""

from typing import Any

import httpx

from tests.factories import Tenant, make_tenant, make_ticket, unique, unique_phone


async def _ticket_for(client: httpx.AsyncClient, tenant: Tenant, *, name: str, phone: str) -> dict[str, Any]:
    r = await client.post("/api/v1/clients", json={"name": name, "phone": phone}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    r = await client.post(
        "/api/v1/tickets",
        json={"client_id": r.json()["id"], "department_id": tenant.departments[0]["id"], "message": "Oi"},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def _search(client: httpx.AsyncClient, headers: dict[str, str], q: str, **params: str) -> list[str]:
    r = await client.get("/api/v1/tickets", params={"q": q, **params}, headers=headers)
    assert r.status_code == 200, r.text
    return [t["id"] for t in r.json()["items"]]


async def test_search_matches_name_any_case_phone_digits_and_ticket_number(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    surname = unique("Zuleica")
    ana = await _ticket_for(client, tenant, name=f"Ana {surname}", phone="5511987650001")
    bia = await _ticket_for(client, tenant, name="Beatriz Souza", phone="5521912340002")

    assert await _search(client, tenant.headers, surname.upper()) == [ana["id"]]
    assert await _search(client, tenant.headers, "87650") == [ana["id"]]
    assert await _search(client, tenant.headers, "(21) 91234-0002") == [bia["id"]]
    assert await _search(client, tenant.headers, f"#{bia['number']}") == [bia["id"]]
    assert await _search(client, tenant.headers, surname, status="finalizado") == []


async def test_search_text_is_literal_and_scoped_to_what_the_actor_sees(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=2)
    other = await make_tenant(client, admin_headers, agents=0)
    name = unique("Cliente (especial) ")
    mine = await _ticket_for(client, tenant, name=name, phone=unique_phone())
    theirs = await _ticket_for(client, other, name=name, phone=unique_phone())

    assert await _search(client, tenant.headers, name.strip()) == [mine["id"]]
    assert await _search(client, other.headers, name.strip()) == [theirs["id"]]
    assert await _search(client, tenant.headers, ".*") == []  # regex characters match only themselves

    first, second = tenant.agents
    r = await client.post(f"/api/v1/tickets/{mine['id']}/assume", headers=first["headers"])
    assert r.status_code == 200, r.text
    assert await _search(client, first["headers"], name.strip()) == [mine["id"]]
    assert await _search(client, second["headers"], name.strip()) == []


async def test_search_refuses_oversized_text(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    r = await client.get("/api/v1/tickets", params={"q": "x" * 65}, headers=tenant.headers)
    assert r.status_code == 422


async def test_the_admin_finds_message_text_and_a_clients_new_name_across_companies_and_within_one(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    """The admin's "Conversas" page offers the same search as the inbox ("nome, número, #protocolo
    ou texto"): across every company, or within the one it narrowed the list to."""
    tenant = await make_tenant(client, admin_headers, agents=0)
    other = await make_tenant(client, admin_headers, agents=0)
    word = unique("boleto")
    text = f"preciso da segunda via do {word}"
    mine = await make_ticket(client, tenant, message=text)
    theirs = await make_ticket(client, other, message=text)

    assert set(await _search(client, admin_headers, word)) == {mine["id"], theirs["id"]}
    assert await _search(client, admin_headers, word, reseller_id=tenant.id) == [mine["id"]]
    assert await _search(client, tenant.headers, word) == [mine["id"]]

    renamed = unique("Rosângela")  # the client's name now, not the one the ticket was opened with
    r = await client.patch(f"/api/v1/clients/{mine['client_id']}", json={"name": renamed}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert await _search(client, admin_headers, renamed) == [mine["id"]]
    assert await _search(client, admin_headers, renamed, reseller_id=other.id) == []
