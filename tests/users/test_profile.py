"""Every user's own profile (name, password with the current one), and password resets by the
user's manager: the reseller for its agents, the admin for resellers' owners."""

from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.factories import API, Tenant, bearer, create_reseller, make_tenant, make_ticket

LOGIN = f"{API}/auth/login"


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=2)


async def _can_login(client: httpx.AsyncClient, email: str, password: str) -> bool:
    r = await client.post(LOGIN, json={"email": email, "password": password})
    return r.status_code == 200


async def test_every_role_renames_itself(
    client: httpx.AsyncClient, tenant: Tenant, admin_headers: dict[str, str]
) -> None:
    for headers, name in ((tenant.agents[0]["headers"], "Ana Paula"), (tenant.headers, "Dona da Revenda")):
        r = await client.patch(f"{API}/auth/me", json={"name": f"  {name} "}, headers=headers)
        assert r.status_code == 200 and r.json()["name"] == name
        assert (await client.get(f"{API}/auth/me", headers=headers)).json()["name"] == name
    r = await client.patch(f"{API}/auth/me", json={"name": "Admin"}, headers=admin_headers)
    assert r.status_code == 200
    await client.patch(f"{API}/auth/me", json={"name": "Administrador"}, headers=admin_headers)


async def test_an_agents_new_name_shows_on_the_tickets_it_holds(client: httpx.AsyncClient, tenant: Tenant) -> None:
    agent = tenant.agents[0]
    ticket = await make_ticket(client, tenant)
    r = await client.post(f"{API}/tickets/{ticket['id']}/assume", headers=agent["headers"])
    assert r.status_code == 200
    r = await client.patch(f"{API}/auth/me", json={"name": "Ana Renomeada"}, headers=agent["headers"])
    assert r.status_code == 200
    assert (await client.get(f"{API}/tickets/{ticket['id']}", headers=tenant.headers)).json()[
        "agent_name"
    ] == "Ana Renomeada"
    r = await client.get(f"{API}/tickets", params={"status": "atendendo"}, headers=agent["headers"])
    assert [t["agent_name"] for t in r.json()["items"] if t["id"] == ticket["id"]] == ["Ana Renomeada"]


async def test_bad_profile_input_changes_nothing(client: httpx.AsyncClient, tenant: Tenant, db: Any) -> None:
    agent = tenant.agents[1]
    before = await db.users.find_one({"_id": agent["id"]})
    for body in ({"name": ""}, {"name": "x" * 121}, {"name": "Ok", "role": "reseller"}, {"email": "a@b.c"}, {}):
        r = await client.patch(f"{API}/auth/me", json=body, headers=agent["headers"])
        assert r.status_code == 422, body
    assert await db.users.find_one({"_id": agent["id"]}) == before
    assert (await client.patch(f"{API}/auth/me", json={"name": "X"})).status_code == 401


async def test_own_password_change_needs_the_current_one_and_ends_old_sessions(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    agent = tenant.agents[0]
    url = f"{API}/auth/me/password"
    before = await db.users.find_one({"_id": agent["id"]})
    r = await client.post(
        url, json={"current_password": "wrong-pass-1", "new_password": "nova-senha-1"}, headers=agent["headers"]
    )
    assert r.status_code == 422
    r = await client.post(
        url, json={"current_password": "agent-pass-1", "new_password": "curta"}, headers=agent["headers"]
    )
    assert r.status_code == 422
    assert await db.users.find_one({"_id": agent["id"]}) == before

    r = await client.post(
        url, json={"current_password": "agent-pass-1", "new_password": "nova-senha-1"}, headers=agent["headers"]
    )
    assert r.status_code == 200, r.text
    fresh = bearer(r.json()["access_token"])
    assert (await client.get(f"{API}/auth/me", headers=agent["headers"])).status_code == 401
    assert (await client.get(f"{API}/auth/me", headers=fresh)).json()["id"] == agent["id"]
    assert not await _can_login(client, agent["email"], "agent-pass-1")
    assert await _can_login(client, agent["email"], "nova-senha-1")


async def test_reseller_resets_its_agents_password_but_not_another_tenants(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    other = await make_tenant(client, admin_headers, agents=1)
    agent = tenant.agents[0]
    r = await client.patch(f"{API}/users/{agent['id']}", json={"password": "resetada-1"}, headers=tenant.headers)
    assert r.status_code == 200
    assert (await client.get(f"{API}/auth/me", headers=agent["headers"])).status_code == 401
    assert await _can_login(client, agent["email"], "resetada-1")
    r = await client.patch(
        f"{API}/users/{other.agents[0]['id']}", json={"password": "hackeada-1"}, headers=tenant.headers
    )
    assert r.status_code == 404
    assert await _can_login(client, other.agents[0]["email"], "agent-pass-1")
    # An agent resets nobody's password, not even a colleague's.
    r = await client.patch(
        f"{API}/users/{agent['id']}", json={"password": "outra-senha-1"}, headers=other.agents[0]["headers"]
    )
    assert r.status_code == 403


async def test_admin_resets_a_reseller_owners_password(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    reseller, email = await create_reseller(client, admin_headers)
    owner_headers = bearer(
        (await client.post(LOGIN, json={"email": email, "password": "owner-pass-1"})).json()["access_token"]
    )
    r = await client.patch(
        f"{API}/users/{reseller['owner_id']}", json={"password": "pelo-admin-1"}, headers=admin_headers
    )
    assert r.status_code == 200, r.text
    assert (await client.get(f"{API}/auth/me", headers=owner_headers)).status_code == 401
    assert await _can_login(client, email, "pelo-admin-1")
    assert await _can_login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
