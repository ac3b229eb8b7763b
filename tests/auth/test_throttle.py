"""Repeated failed logins are slowed down: 429 with Retry-After, even for the right password."""

from typing import Any

import httpx

from tests.factories import API, make_agent, make_tenant

LOGIN = f"{API}/auth/login"


async def test_failed_logins_lock_the_email_with_429_and_retry_after(
    client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    victim = await make_agent(client, tenant, [tenant.departments[0]["id"]])
    bystander = await make_agent(client, tenant, [tenant.departments[0]["id"]])
    limit = settings.LOGIN_MAX_FAILURES
    for _ in range(limit):
        r = await client.post(LOGIN, json={"email": victim["email"], "password": "guess-guess"})
        assert r.status_code == 401
    locked = await client.post(LOGIN, json={"email": victim["email"], "password": "guess-again"})
    assert locked.status_code == 429
    retry_after = int(locked.headers["retry-after"])
    assert 0 < retry_after <= 2 * settings.LOGIN_WINDOW_SECONDS
    assert locked.json()["detail"]
    # The right password is refused too while the lock lasts (that is what stops guessing).
    right = await client.post(LOGIN, json={"email": victim["email"], "password": "agent-pass-1"})
    assert right.status_code == 429
    # Case or spaces do not get around it.
    r = await client.post(LOGIN, json={"email": victim["email"].upper(), "password": "agent-pass-1"})
    assert r.status_code == 429
    # Tokens issued before keep working; other emails are not affected.
    assert (await client.get(f"{API}/auth/me", headers=victim["headers"])).status_code == 200
    r = await client.post(LOGIN, json={"email": bystander["email"], "password": "agent-pass-1"})
    assert r.status_code == 200


async def test_unknown_emails_are_throttled_like_known_ones(client: httpx.AsyncClient, settings: Any) -> None:
    email = "ghost-user@example.com"
    codes = [
        (await client.post(LOGIN, json={"email": email, "password": "whatever1"})).status_code
        for _ in range(settings.LOGIN_MAX_FAILURES + 1)
    ]
    assert codes == [401] * settings.LOGIN_MAX_FAILURES + [429]
