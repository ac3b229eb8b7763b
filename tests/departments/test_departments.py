"""Departments: created and managed by the reseller, deactivated (never deleted)."""

from typing import Any

import httpx
import pytest

from tests.factories import API, Tenant, collect_pages, collection_counts, make_agent, make_department, make_tenant


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, departments=1, agents=1)


async def test_reseller_creates_reads_and_renames_departments(client: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await client.post(
        f"{API}/departments", json={"name": "Financeiro", "description": "boletos"}, headers=tenant.headers
    )
    assert r.status_code == 201, r.text
    dept = r.json()
    assert (dept["reseller_id"], dept["name"], dept["description"], dept["active"]) == (
        tenant.id,
        "Financeiro",
        "boletos",
        True,
    )
    assert (await client.get(f"{API}/departments/{dept['id']}", headers=tenant.headers)).json() == dept
    r = await client.patch(f"{API}/departments/{dept['id']}", json={"name": "Cobrança"}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["name"] == "Cobrança"


async def test_department_names_are_unique_per_tenant_ignoring_case_and_spaces(
    client: httpx.AsyncClient, tenant: Tenant, admin_headers: dict[str, str], db: Any
) -> None:
    await make_department(client, tenant, "Suporte Técnico")
    before = await collection_counts(db)
    r = await client.post(f"{API}/departments", json={"name": "  suporte   TÉCNICO "}, headers=tenant.headers)
    assert r.status_code == 409
    assert await collection_counts(db) == before
    other = await make_tenant(client, admin_headers, departments=0, agents=0)
    assert (await make_department(client, other, "Suporte Técnico"))["name"] == "Suporte Técnico"
    second = await make_department(client, tenant, "Vendas")
    r = await client.patch(
        f"{API}/departments/{second['id']}", json={"name": "suporte técnico"}, headers=tenant.headers
    )
    assert r.status_code == 409
    assert (await client.get(f"{API}/departments/{second['id']}", headers=tenant.headers)).json()["name"] == "Vendas"


async def test_deactivating_keeps_the_department_and_filters_by_active(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    dept = await make_department(client, tenant)
    before = await db.departments.count_documents({})
    r = await client.patch(f"{API}/departments/{dept['id']}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["active"] is False
    assert await db.departments.count_documents({}) == before
    inactive = {d["id"] for d in await collect_pages(client, tenant.headers, f"{API}/departments", active="false")}
    active = {d["id"] for d in await collect_pages(client, tenant.headers, f"{API}/departments", active="true")}
    assert dept["id"] in inactive and dept["id"] not in active
    # An inactive department takes no new agents and no new tickets.
    r = await client.post(
        f"{API}/users",
        json={
            "name": "A",
            "email": "inactive-dept@example.com",
            "password": "agent-pass-1",
            "department_ids": [dept["id"]],
        },
        headers=tenant.headers,
    )
    assert r.status_code == 422


async def test_agents_read_departments_but_only_resellers_write_them(
    client: httpx.AsyncClient, tenant: Tenant, admin_headers: dict[str, str], db: Any
) -> None:
    agent = tenant.agents[0]
    dept_id = tenant.departments[0]["id"]
    assert (await client.get(f"{API}/departments/{dept_id}", headers=agent["headers"])).status_code == 200
    listed = await collect_pages(client, agent["headers"], f"{API}/departments")
    assert {d["reseller_id"] for d in listed} == {tenant.id}
    before = await collection_counts(db)
    for headers in (agent["headers"], admin_headers):
        assert (await client.post(f"{API}/departments", json={"name": "Nope"}, headers=headers)).status_code == 403
        r = await client.patch(f"{API}/departments/{dept_id}", json={"active": False}, headers=headers)
        assert r.status_code == 403
    assert await collection_counts(db) == before
    # The admin reads across tenants.
    assert (await client.get(f"{API}/departments/{dept_id}", headers=admin_headers)).status_code == 200


async def test_concurrent_creations_with_one_name_make_one_department(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    import asyncio

    before = await db.departments.count_documents({})
    results = await asyncio.gather(
        *(client.post(f"{API}/departments", json={"name": "Corrida"}, headers=tenant.headers) for _ in range(4))
    )
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409], [r.text for r in results]
    assert await db.departments.count_documents({}) == before + 1


async def test_each_department_says_how_many_active_agents_it_has(
    client: httpx.AsyncClient, tenant: Tenant, admin_headers: dict[str, str]
) -> None:
    """A department with no active agent is a queue only the owner sees (its warning and alerts
    are the UI's): the count follows agents added, deactivated and moved, tenant by tenant."""
    dept, other = await make_department(client, tenant), await make_department(client, tenant)
    assert dept["active_agents"] == 0

    async def staffed() -> dict[str, int]:
        pages = await collect_pages(client, tenant.headers, f"{API}/departments")
        return {d["id"]: d["active_agents"] for d in pages if d["id"] in (dept["id"], other["id"])}

    first = await make_agent(client, tenant, [dept["id"]])
    second = await make_agent(client, tenant, [dept["id"], other["id"]])
    assert await staffed() == {dept["id"]: 2, other["id"]: 1}
    r = await client.patch(f"{API}/users/{first['id']}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert await staffed() == {dept["id"]: 1, other["id"]: 1}
    r = await client.patch(
        f"{API}/users/{second['id']}", json={"department_ids": [other["id"]]}, headers=tenant.headers
    )
    assert r.status_code == 200, r.text
    assert await staffed() == {dept["id"]: 0, other["id"]: 1}
    # The same figure from every read: one department, its update, and as an agent sees it.
    one = await client.get(f"{API}/departments/{other['id']}", headers=second["headers"])
    assert one.status_code == 200 and one.json()["active_agents"] == 1
    r = await client.patch(f"{API}/departments/{dept['id']}", json={"description": "ninguém"}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["active_agents"] == 0
    # Another tenant's agents never count, even in a department id they cannot see.
    stranger = await make_tenant(client, admin_headers, departments=1, agents=1)
    assert (await client.get(f"{API}/departments/{dept['id']}", headers=stranger.headers)).status_code == 404
    assert await staffed() == {dept["id"]: 0, other["id"]: 1}
