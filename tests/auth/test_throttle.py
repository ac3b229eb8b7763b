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


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


async def test_retry_after_tells_when_the_lock_really_lifts(
    client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Any, monkeypatch: Any
) -> None:
    """Failures of the previous window still count, so a lock earned within one window lasts
    until the end of the next one; Retry-After says exactly that, and logging in works then."""
    from backend.auth import throttle

    tenant = await make_tenant(client, admin_headers, departments=0, agents=0)
    owner = (await client.get(f"{API}/auth/me", headers=tenant.headers)).json()
    window, limit = settings.LOGIN_WINDOW_SECONDS, settings.LOGIN_MAX_FAILURES
    start = 10_000_000 * window  # a window far from the real clock's, so no other test shares it
    clock = _Clock(start + 10)
    monkeypatch.setattr(throttle, "time", clock)
    creds = {"email": owner["email"], "password": "owner-pass-1"}
    for _ in range(limit):
        assert (await client.post(LOGIN, json={**creds, "password": "bad-guess"})).status_code == 401
    r = await client.post(LOGIN, json=creds)
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) == 2 * window - 10 + 1
    clock.now = start + window + 10  # the next window: the failures still count
    r = await client.post(LOGIN, json=creds)
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) == window - 10 + 1
    clock.now = start + 2 * window + 1  # what Retry-After promised
    assert (await client.post(LOGIN, json=creds)).status_code == 200


async def test_lock_from_failures_spread_over_two_windows_lifts_after_the_current_one(
    client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Any, monkeypatch: Any
) -> None:
    from backend.auth import throttle

    tenant = await make_tenant(client, admin_headers, departments=0, agents=0)
    owner = (await client.get(f"{API}/auth/me", headers=tenant.headers)).json()
    window, limit = settings.LOGIN_WINDOW_SECONDS, settings.LOGIN_MAX_FAILURES
    start = 20_000_000 * window
    clock = _Clock(start + window - 5)
    monkeypatch.setattr(throttle, "time", clock)
    creds = {"email": owner["email"], "password": "owner-pass-1"}
    for i in range(limit):
        if i == 2:
            clock.now = start + window + 5  # the rest fall in the next window
        assert (await client.post(LOGIN, json={**creds, "password": "bad-guess"})).status_code == 401
    r = await client.post(LOGIN, json=creds)
    assert r.status_code == 429 and int(r.headers["retry-after"]) == window - 5 + 1
    clock.now = start + 2 * window + 1
    assert (await client.post(LOGIN, json=creds)).status_code == 200


async def test_concurrent_failed_logins_for_a_fresh_email_are_all_401(client: httpx.AsyncClient, settings: Any) -> None:
    """The first failure of a window creates its counter; concurrent first failures must not
    trip over each other (a 500 here would also skip counting the failure)."""
    import asyncio

    for i in range(3):
        email = f"burst-{i}@example.com"
        results = await asyncio.gather(
            *(client.post(LOGIN, json={"email": email, "password": "wrong-one"}) for _ in range(4))
        )
        assert [r.status_code for r in results] == [401] * 4, [r.text for r in results]


async def test_a_successful_login_forgives_earlier_failures(
    client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    agent = await make_agent(client, tenant, [tenant.departments[0]["id"]])
    limit = settings.LOGIN_MAX_FAILURES
    for _ in range(limit - 1):
        assert (await client.post(LOGIN, json={"email": agent["email"], "password": "typo-typo"})).status_code == 401
    assert (await client.post(LOGIN, json={"email": agent["email"], "password": "agent-pass-1"})).status_code == 200
    # Without the reset, this one typo would reach the limit and the next login would be refused.
    assert (await client.post(LOGIN, json={"email": agent["email"], "password": "typo-typo"})).status_code == 401
    assert (await client.post(LOGIN, json={"email": agent["email"], "password": "agent-pass-1"})).status_code == 200
