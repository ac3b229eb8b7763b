"""Clients: end customers keyed by phone number per tenant."""

import asyncio
from typing import Any

import httpx
import pytest

from tests.factories import API, Tenant, collect_pages, collection_counts, make_client, make_tenant, unique_phone


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


@pytest.fixture(scope="module")
async def other(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, departments=0, agents=0)


async def test_reseller_and_agent_create_clients_with_normalized_phone(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    r = await client.post(
        f"{API}/clients", json={"name": "Maria", "phone": "+55 (11) 98765-4321"}, headers=tenant.headers
    )
    assert r.status_code == 201, r.text
    assert (r.json()["phone"], r.json()["reseller_id"]) == ("5511987654321", tenant.id)
    r = await client.post(
        f"{API}/clients", json={"name": "João", "phone": unique_phone()}, headers=tenant.agents[0]["headers"]
    )
    assert r.status_code == 201


async def test_phone_is_unique_per_tenant_and_lookup_finds_it(
    client: httpx.AsyncClient, tenant: Tenant, other: Tenant, db: Any
) -> None:
    phone = unique_phone()
    first = await make_client(client, tenant, phone)
    before = await collection_counts(db)
    r = await client.post(f"{API}/clients", json={"name": "Dup", "phone": f"+{phone}"}, headers=tenant.headers)
    assert r.status_code == 409
    assert r.json()["detail"]["client_id"] == first["id"]
    assert await collection_counts(db) == before
    # Another tenant may have a client with the same number: a different client.
    theirs = await make_client(client, other, phone)
    assert theirs["id"] != first["id"]
    r = await client.get(f"{API}/clients", params={"phone": phone}, headers=tenant.headers)
    assert [c["id"] for c in r.json()["items"]] == [first["id"]]
    r = await client.get(f"{API}/clients", params={"phone": phone}, headers=other.headers)
    assert [c["id"] for c in r.json()["items"]] == [theirs["id"]]
    r = await client.get(f"{API}/clients", params={"phone": "5500000000000"}, headers=tenant.headers)
    assert r.json()["items"] == []
    r = await client.get(f"{API}/clients", params={"phone": "abc"}, headers=tenant.headers)
    assert r.status_code == 422


async def test_concurrent_creates_of_one_phone_make_one_client(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    phone = unique_phone()
    results = await asyncio.gather(
        *(
            client.post(f"{API}/clients", json={"name": f"C{i}", "phone": phone}, headers=tenant.headers)
            for i in range(5)
        )
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [201, 409, 409, 409, 409], codes
    assert await db.users.count_documents({"role": "client", "phone": phone, "reseller_id": tenant.id}) == 1


async def test_clients_are_renamed_not_rekeyed(client: httpx.AsyncClient, tenant: Tenant) -> None:
    customer = await make_client(client, tenant)
    r = await client.patch(
        f"{API}/clients/{customer['id']}", json={"name": "Novo"}, headers=tenant.agents[0]["headers"]
    )
    assert r.status_code == 200 and r.json()["name"] == "Novo"
    r = await client.patch(f"{API}/clients/{customer['id']}", json={"phone": unique_phone()}, headers=tenant.headers)
    assert r.status_code == 422
    assert (await client.get(f"{API}/clients/{customer['id']}", headers=tenant.headers)).json()["phone"] == customer[
        "phone"
    ]


async def test_client_list_is_paginated_and_holds_only_clients(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for _ in range(3):
        await make_client(client, tenant)
    items = await collect_pages(client, tenant.headers, f"{API}/clients", limit=2)
    ids = [c["id"] for c in items]
    assert len(ids) == len(set(ids)) >= 3
    assert {c["reseller_id"] for c in items} == {tenant.id}
    staff = {tenant.owner_id, tenant.agents[0]["id"]}
    assert not staff & set(ids)
    # A client id is not a user id, and a user id is not a client id.
    assert (await client.get(f"{API}/users/{ids[0]}", headers=tenant.headers)).status_code == 404
    assert (await client.get(f"{API}/clients/{tenant.owner_id}", headers=tenant.headers)).status_code == 404


async def test_admin_reads_clients_but_does_not_create_them(
    client: httpx.AsyncClient, tenant: Tenant, admin_headers: dict[str, str]
) -> None:
    customer = await make_client(client, tenant)
    assert (await client.get(f"{API}/clients/{customer['id']}", headers=admin_headers)).status_code == 200
    r = await client.post(f"{API}/clients", json={"name": "X", "phone": unique_phone()}, headers=admin_headers)
    assert r.status_code == 403
    r = await client.patch(f"{API}/clients/{customer['id']}", json={"name": "X"}, headers=admin_headers)
    assert r.status_code == 403


async def test_the_owner_deactivates_a_client_which_is_kept_listed_on_request_and_takes_no_new_conversation(
    client: httpx.AsyncClient, tenant: Tenant, other: Tenant, db: Any
) -> None:
    customer = await make_client(client, tenant)
    url = f"{API}/clients/{customer['id']}"
    assert customer["active"] is True
    before = await collection_counts(db)
    for headers, status in ((tenant.agents[0]["headers"], 403), (other.headers, 404)):
        r = await client.patch(url, json={"active": False}, headers=headers)
        assert r.status_code == status, r.text
    assert await collection_counts(db) == before
    assert (await client.get(url, headers=tenant.headers)).json()["active"] is True

    r = await client.patch(url, json={"active": False}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["active"] is False, r.text
    assert (await client.get(url, headers=tenant.headers)).json()["active"] is False
    assert await db.users.count_documents({}) == before["users"]  # kept, never removed
    inactive = {c["id"] for c in await collect_pages(client, tenant.headers, f"{API}/clients", active="false")}
    active = {c["id"] for c in await collect_pages(client, tenant.headers, f"{API}/clients", active="true")}
    everyone = {c["id"] for c in await collect_pages(client, tenant.headers, f"{API}/clients")}
    assert customer["id"] in inactive and customer["id"] not in active and customer["id"] in everyone
    assert not inactive & active

    # No conversation is started with it; nothing is written by the refusal.
    before = await collection_counts(db)
    body = {"client_id": customer["id"], "department_id": tenant.departments[0]["id"], "message": "Oi"}
    r = await client.post(f"{API}/tickets", json=body, headers=tenant.headers)
    assert r.status_code == 422 and r.json()["detail"] == "client is inactive", r.text
    assert await collection_counts(db) == before

    r = await client.patch(url, json={"active": True}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["active"] is True
    r = await client.post(f"{API}/tickets", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
