"""Deactivation takes effect at once: no login, and tokens already issued stop working."""

import httpx

from tests.factories import API, bearer, login, make_agent, make_tenant

LOGIN = f"{API}/auth/login"


async def _login_token(client: httpx.AsyncClient, email: str, password: str) -> str:
    r = await client.post(LOGIN, json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


async def test_deactivated_agent_cannot_log_in_and_its_old_token_stops_working(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    agent = await make_agent(client, tenant, [tenant.departments[0]["id"]])
    old = agent["headers"]
    assert (await client.get(f"{API}/auth/me", headers=old)).status_code == 200

    r = await client.patch(f"{API}/users/{agent['id']}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["active"] is False
    assert (await client.get(f"{API}/auth/me", headers=old)).status_code == 401
    assert (await client.get(f"{API}/tickets", headers=old)).status_code == 401
    refused = await client.post(LOGIN, json={"email": agent["email"], "password": "agent-pass-1"})
    assert refused.status_code == 401
    # Same answer as a wrong password: deactivation is not revealed to whoever tries.
    wrong = await client.post(LOGIN, json={"email": agent["email"], "password": "nope-nope-nope"})
    assert refused.json() == wrong.json()
    # The user is kept (never deleted) and shows as inactive to its reseller.
    r = await client.get(f"{API}/users/{agent['id']}", headers=tenant.headers)
    assert r.status_code == 200 and r.json()["active"] is False

    r = await client.patch(f"{API}/users/{agent['id']}", json={"active": True}, headers=tenant.headers)
    assert r.status_code == 200
    # Reactivation does not bring the tokens of before back to life: the user logs in again.
    assert (await client.get(f"{API}/auth/me", headers=old)).status_code == 401
    fresh = bearer(await _login_token(client, agent["email"], "agent-pass-1"))
    assert (await client.get(f"{API}/auth/me", headers=fresh)).status_code == 200


async def test_deactivated_reseller_locks_out_its_owner_and_agents(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    bystander = await make_tenant(client, admin_headers, departments=0, agents=0)
    agent = tenant.agents[0]
    owner = (await client.get(f"{API}/auth/me", headers=tenant.headers)).json()
    r = await client.patch(f"{API}/resellers/{tenant.id}", json={"active": False}, headers=admin_headers)
    assert r.status_code == 200 and r.json()["active"] is False
    for headers in (tenant.headers, agent["headers"]):
        assert (await client.get(f"{API}/auth/me", headers=headers)).status_code == 401
        assert (await client.get(f"{API}/departments", headers=headers)).status_code == 401
    for email, password in ((owner["email"], "owner-pass-1"), (agent["email"], "agent-pass-1")):
        assert (await client.post(LOGIN, json={"email": email, "password": password})).status_code == 401
    # The admin still sees the tenant; reactivating restores access by logging in again: the
    # tokens issued before the deactivation stay dead (audit: reactivation revived them).
    r = await client.patch(f"{API}/resellers/{tenant.id}", json={"active": True}, headers=admin_headers)
    assert r.status_code == 200
    for headers in (tenant.headers, agent["headers"]):
        assert (await client.get(f"{API}/auth/me", headers=headers)).status_code == 401
    agent_now = await login(client, agent["email"], "agent-pass-1")
    owner_now = bearer(await _login_token(client, owner["email"], "owner-pass-1"))
    for headers in (agent_now, owner_now):
        assert (await client.get(f"{API}/auth/me", headers=headers)).status_code == 200
    # Only a deactivation ends them: a rename, or a PATCH that leaves the tenant active, does not.
    for change in ({"name": "Outro Nome"}, {"active": True}):
        r = await client.patch(f"{API}/resellers/{tenant.id}", json=change, headers=admin_headers)
        assert r.status_code == 200, r.text
    for headers in (agent_now, owner_now):
        assert (await client.get(f"{API}/auth/me", headers=headers)).status_code == 200
    # A token issued after the reactivation carries both versions: a password change of its own
    # user still ends it, and the fresh one answered works.
    r = await client.post(
        f"{API}/auth/me/password",
        json={"current_password": "agent-pass-1", "new_password": "agent-pass-2"},
        headers=agent_now,
    )
    assert r.status_code == 200, r.text
    assert (await client.get(f"{API}/auth/me", headers=agent_now)).status_code == 401
    assert (await client.get(f"{API}/auth/me", headers=bearer(r.json()["access_token"]))).status_code == 200
    # Another tenant's sessions are untouched by this one's deactivation.
    assert (await client.get(f"{API}/auth/me", headers=bystander.headers)).status_code == 200


async def test_nobody_can_deactivate_themselves(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    r = await client.patch(f"{API}/users/{tenant.owner_id}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 409
    me = (await client.get(f"{API}/auth/me", headers=admin_headers)).json()
    r = await client.patch(f"{API}/users/{me['id']}", json={"active": False}, headers=admin_headers)
    assert r.status_code == 409
    assert (await client.get(f"{API}/auth/me", headers=admin_headers)).status_code == 200


async def test_a_token_issued_before_a_deactivation_stays_dead_after_reactivation(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    """Each step bumps the user's token version: a token from any earlier step is refused."""
    tenant = await make_tenant(client, admin_headers, agents=0)
    agent = await make_agent(client, tenant, [tenant.departments[0]["id"]])
    before = agent["headers"]
    url = f"{API}/users/{agent['id']}"
    assert (await client.patch(url, json={"active": False}, headers=tenant.headers)).status_code == 200
    assert (await client.patch(url, json={"active": True}, headers=tenant.headers)).status_code == 200
    between = bearer(await _login_token(client, agent["email"], "agent-pass-1"))
    assert (await client.patch(url, json={"active": False}, headers=tenant.headers)).status_code == 200
    assert (await client.patch(url, json={"active": True}, headers=tenant.headers)).status_code == 200
    for old in (before, between):
        assert (await client.get(f"{API}/auth/me", headers=old)).status_code == 401
    # A change that revokes nothing (a name) leaves the current token alone.
    current = bearer(await _login_token(client, agent["email"], "agent-pass-1"))
    assert (await client.patch(url, json={"name": "Novo Nome"}, headers=tenant.headers)).status_code == 200
    assert (await client.get(f"{API}/auth/me", headers=current)).status_code == 200
