"""Agents: created by their reseller, assigned to departments, deactivated (never deleted)."""

from typing import Any

import httpx
import pytest

from tests.factories import (
    API,
    Tenant,
    collect_pages,
    collection_counts,
    login,
    make_agent,
    make_department,
    make_tenant,
)


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, departments=2, agents=1)


async def test_reseller_creates_agent_in_its_departments(client: httpx.AsyncClient, tenant: Tenant) -> None:
    d1 = tenant.departments[0]["id"]
    body = {"name": "Ana", "email": "Ana.Agent@Example.com", "password": "agent-pass-1", "department_ids": [d1, d1]}
    r = await client.post(f"{API}/users", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    agent = r.json()
    assert (agent["role"], agent["reseller_id"], agent["department_ids"], agent["active"]) == (
        "agent",
        tenant.id,
        [d1],
        True,
    )
    assert agent["email"] == "ana.agent@example.com"
    assert "password" not in agent and "password_hash" not in agent
    assert await login(client, "ANA.agent@example.com", "agent-pass-1")


async def test_reseller_reassigns_agent_departments(client: httpx.AsyncClient, tenant: Tenant) -> None:
    d1, d2 = (d["id"] for d in tenant.departments)
    agent = await make_agent(client, tenant, [d1])
    r = await client.patch(f"{API}/users/{agent['id']}", json={"department_ids": [d2]}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["department_ids"] == [d2]
    in_d2 = {u["id"] for u in await collect_pages(client, tenant.headers, f"{API}/users", department_id=d2)}
    in_d1 = {u["id"] for u in await collect_pages(client, tenant.headers, f"{API}/users", department_id=d1)}
    assert agent["id"] in in_d2 and agent["id"] not in in_d1
    # The new assignment takes effect on the agent's next request (its visibility follows).
    r = await client.get(f"{API}/auth/me", headers=agent["headers"])
    assert r.json()["department_ids"] == [d2]


async def test_duplicate_email_is_409_across_tenants_and_writes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, admin_headers: dict[str, str], db: Any
) -> None:
    other = await make_tenant(client, admin_headers, departments=0, agents=0)
    taken = tenant.agents[0]["email"]
    before = await collection_counts(db)
    for headers in (tenant.headers, other.headers):
        r = await client.post(
            f"{API}/users", json={"name": "B", "email": taken.upper(), "password": "agent-pass-2"}, headers=headers
        )
        assert r.status_code == 409, r.text
    assert await collection_counts(db) == before


async def test_department_ids_must_be_active_departments_of_the_tenant(
    client: httpx.AsyncClient, tenant: Tenant, admin_headers: dict[str, str], db: Any
) -> None:
    other = await make_tenant(client, admin_headers, departments=1, agents=0)
    inactive = await make_department(client, tenant)
    await client.patch(f"{API}/departments/{inactive['id']}", json={"active": False}, headers=tenant.headers)
    agent = tenant.agents[0]
    before = await collection_counts(db)
    for ids in ([other.departments[0]["id"]], ["0" * 24], [inactive["id"]]):
        body = {"name": "C", "email": "c-agent@example.com", "password": "agent-pass-1", "department_ids": ids}
        assert (await client.post(f"{API}/users", json=body, headers=tenant.headers)).status_code == 422
        r = await client.patch(f"{API}/users/{agent['id']}", json={"department_ids": ids}, headers=tenant.headers)
        assert r.status_code == 422
    assert await collection_counts(db) == before
    assert (await client.get(f"{API}/users/{agent['id']}", headers=tenant.headers)).json()["department_ids"] == [
        d["id"] for d in sorted(tenant.departments, key=lambda d: d["id"])
    ]


async def test_deactivation_keeps_the_user_and_active_filter_finds_it(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    agent = await make_agent(client, tenant, [tenant.departments[0]["id"]])
    before = await db.users.count_documents({})
    r = await client.patch(f"{API}/users/{agent['id']}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["active"] is False
    assert await db.users.count_documents({}) == before
    inactive = {u["id"] for u in await collect_pages(client, tenant.headers, f"{API}/users", active="false")}
    active = {u["id"] for u in await collect_pages(client, tenant.headers, f"{API}/users", active="true")}
    assert agent["id"] in inactive and agent["id"] not in active


async def test_agents_cannot_manage_users_and_admins_cannot_create_agents(
    client: httpx.AsyncClient, tenant: Tenant, admin_headers: dict[str, str], db: Any
) -> None:
    agent = tenant.agents[0]
    body = {"name": "D", "email": "d-agent@example.com", "password": "agent-pass-1"}
    before = await collection_counts(db)
    assert (await client.post(f"{API}/users", json=body, headers=agent["headers"])).status_code == 403
    assert (await client.post(f"{API}/users", json=body, headers=admin_headers)).status_code == 403
    r = await client.patch(f"{API}/users/{agent['id']}", json={"name": "Eu mesmo"}, headers=agent["headers"])
    assert r.status_code == 403
    r = await client.patch(f"{API}/users/{tenant.owner_id}", json={"active": False}, headers=agent["headers"])
    assert r.status_code == 403
    assert await collection_counts(db) == before
    # Only agents are created through /users: no way to mint a reseller or admin there.
    for role in ("admin", "reseller", "client"):
        r = await client.post(f"{API}/users", json={**body, "role": role}, headers=tenant.headers)
        assert r.status_code == 422
    assert await collection_counts(db) == before


async def test_reseller_cannot_manage_its_owner_peers_or_admins(
    client: httpx.AsyncClient, tenant: Tenant, admin_headers: dict[str, str]
) -> None:
    admin = (await client.get(f"{API}/auth/me", headers=admin_headers)).json()
    r = await client.patch(f"{API}/users/{admin['id']}", json={"name": "hacked"}, headers=tenant.headers)
    assert r.status_code == 404
    assert (await client.get(f"{API}/users/{admin['id']}", headers=tenant.headers)).status_code == 404
    # Its own name it may change.
    r = await client.patch(f"{API}/users/{tenant.owner_id}", json={"name": "Dono"}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["name"] == "Dono"


async def test_user_list_is_staff_only_newest_first_and_paginated(client: httpx.AsyncClient, tenant: Tenant) -> None:
    items = await collect_pages(client, tenant.headers, f"{API}/users", limit=1)
    ids = [u["id"] for u in items]
    assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids))
    assert {u["role"] for u in items} <= {"reseller", "agent"}
    assert tenant.owner_id in ids


async def test_concurrent_creations_with_one_email_make_one_agent(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    import asyncio

    before = await db.users.count_documents({})
    body = {"name": "Race", "email": "race-agent@example.com", "password": "agent-pass-1"}
    results = await asyncio.gather(*(client.post(f"{API}/users", json=body, headers=tenant.headers) for _ in range(3)))
    assert sorted(r.status_code for r in results) == [201, 409, 409], [r.text for r in results]
    assert await db.users.count_documents({}) == before + 1


async def test_the_platform_admin_cannot_deactivate_a_tenants_owner_through_users(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any
) -> None:
    """The owner is who sees and moves what the tenant's agents cannot (an unstaffed queue): left
    without it, the tenant's waiting conversations would be seen by the platform admin alone, who
    may not act on them. Stopping a tenant is suspending the reseller, which stops it as a whole."""
    tenant = await make_tenant(client, admin_headers, departments=1, agents=1)
    url = f"{API}/users/{tenant.owner_id}"
    r = await client.patch(url, json={"active": False}, headers=admin_headers)
    assert r.status_code == 409, r.text
    assert r.json()["detail"] == "a reseller's owner cannot be deactivated alone; suspend the reseller instead"
    assert (await db.users.find_one({"_id": tenant.owner_id}))["active"] is True
    assert (await client.get(f"{API}/auth/me", headers=tenant.headers)).status_code == 200  # its session lives on
    # Nor in the same request as another change, which is not applied either.
    r = await client.patch(url, json={"name": "Outro nome", "active": False}, headers=admin_headers)
    assert r.status_code == 409, r.text
    assert (await db.users.find_one({"_id": tenant.owner_id}))["name"] != "Outro nome"
    # Other changes to the owner still go through, and its agents are still deactivated as before.
    r = await client.patch(url, json={"name": "Dono Renomeado", "active": True}, headers=admin_headers)
    assert r.status_code == 200 and r.json()["name"] == "Dono Renomeado", r.text
    r = await client.patch(f"{API}/users/{tenant.agents[0]['id']}", json={"active": False}, headers=admin_headers)
    assert r.status_code == 200, r.text
    # The suspension the refusal points to.
    r = await client.patch(f"{API}/resellers/{tenant.id}", json={"active": False}, headers=admin_headers)
    assert r.status_code == 200, r.text
    assert (await client.get(f"{API}/auth/me", headers=tenant.headers)).status_code == 401
