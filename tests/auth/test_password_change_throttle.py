"""The current password asked by a password change is a password guess like a login's: a stolen
token gets the login's limits (audit: unlimited guesses through POST /auth/me/password)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.auth.conftest import ThrottleClock
from tests.factories import API, make_agent, make_tenant

CHANGE = f"{API}/auth/me/password"
LOGIN = f"{API}/auth/login"


@asynccontextmanager
async def from_address(app: Any, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as c:
        yield c


async def test_wrong_current_passwords_lock_the_change_like_failed_logins_until_the_window_ends(
    app: Any, client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Any, throttle_clock: ThrottleClock
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    agent = await make_agent(client, tenant, [tenant.departments[0]["id"]])
    stolen = agent["headers"]
    right = {"current_password": "agent-pass-1", "new_password": "new-agent-pass-2"}
    async with from_address(app, "198.51.100.7") as attacker, from_address(app, "198.51.100.8") as elsewhere:
        for i in range(settings.LOGIN_MAX_FAILURES):
            wrong = {"current_password": f"guess-{i}-xx", "new_password": "hijacked-pass-1"}
            r = await attacker.post(CHANGE, json=wrong, headers=stolen)
            assert r.status_code == 422 and r.json()["detail"] == "current password is incorrect"
        locked = await attacker.post(CHANGE, json={**right, "current_password": "guess-again"}, headers=stolen)
        assert locked.status_code == 429
        assert 0 < int(locked.headers["retry-after"]) <= settings.LOGIN_WINDOW_SECONDS
        assert locked.json()["detail"] == "too many failed logins; try again later"
        # The right password is refused too while the lock lasts, and nothing changed...
        assert (await attacker.post(CHANGE, json=right, headers=stolen)).status_code == 429
        # ...the guesses count against the account's logins from that address as well (one
        # budget of guesses for one password), while its user logs in from anywhere else.
        r = await attacker.post(LOGIN, json={"email": agent["email"], "password": "agent-pass-1"})
        assert r.status_code == 429
        r = await elsewhere.post(LOGIN, json={"email": agent["email"], "password": "agent-pass-1"})
        assert r.status_code == 200, r.text

        # Once the window is over the right password changes it, and the old tokens end.
        throttle_clock.now += settings.LOGIN_WINDOW_SECONDS
        r = await attacker.post(CHANGE, json=right, headers=stolen)
        assert r.status_code == 200, r.text
        fresh = {"Authorization": f"Bearer {r.json()['access_token']}"}
        assert (await client.get(f"{API}/auth/me", headers=fresh)).status_code == 200
        assert (await client.get(f"{API}/auth/me", headers=stolen)).status_code == 401
        r = await elsewhere.post(LOGIN, json={"email": agent["email"], "password": "new-agent-pass-2"})
        assert r.status_code == 200, r.text


async def test_a_right_current_password_forgives_earlier_typos_as_a_login_does(
    app: Any, client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    agent = await make_agent(client, tenant, [tenant.departments[0]["id"]])
    async with from_address(app, "198.51.100.9") as c:
        for _ in range(settings.LOGIN_MAX_FAILURES - 1):
            r = await c.post(
                CHANGE, json={"current_password": "typo-typo", "new_password": "x-pass-12345"}, headers=agent["headers"]
            )
            assert r.status_code == 422
        r = await c.post(
            CHANGE, json={"current_password": "agent-pass-1", "new_password": "y-pass-12345"}, headers=agent["headers"]
        )
        assert r.status_code == 200, r.text
        fresh = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = await c.post(CHANGE, json={"current_password": "typo-again", "new_password": "z-pass-12345"}, headers=fresh)
        assert r.status_code == 422  # not 429: the success gave the slots back
