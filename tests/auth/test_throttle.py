"""Repeated failed logins are slowed down: 429 with Retry-After, even for the right password —
but only for the account from that client address, and for that address across accounts."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.auth.conftest import ThrottleClock
from tests.factories import API, make_agent, make_tenant

LOGIN = f"{API}/auth/login"

# Each test logs in from addresses of its own: the per-address limit counts across the module.
_next_address = iter(range(1, 250))


@asynccontextmanager
async def from_address(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests reach the app from a fresh peer address (no proxy in between)."""
    transport = httpx.ASGITransport(app=app, client=(f"192.0.2.{next(_next_address)}", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as c:
        yield c


async def test_failed_logins_lock_the_account_from_that_address_with_429_and_retry_after(
    app: Any, client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    victim = await make_agent(client, tenant, [tenant.departments[0]["id"]])
    bystander = await make_agent(client, tenant, [tenant.departments[0]["id"]])
    limit = settings.LOGIN_MAX_FAILURES
    async with from_address(app) as attacker, from_address(app) as elsewhere:
        for _ in range(limit):
            r = await attacker.post(LOGIN, json={"email": victim["email"], "password": "guess-guess"})
            assert r.status_code == 401
        locked = await attacker.post(LOGIN, json={"email": victim["email"], "password": "guess-again"})
        assert locked.status_code == 429
        retry_after = int(locked.headers["retry-after"])
        assert 0 < retry_after <= settings.LOGIN_WINDOW_SECONDS
        assert locked.json()["detail"]
        # From that address the right password is refused too while the lock lasts (that is what
        # stops guessing), and case or spaces do not get around it.
        right = await attacker.post(LOGIN, json={"email": victim["email"], "password": "agent-pass-1"})
        assert right.status_code == 429
        r = await attacker.post(LOGIN, json={"email": f" {victim['email'].upper()}", "password": "agent-pass-1"})
        assert r.status_code == 429
        # The real user, from anywhere else, is not locked out by whoever guesses.
        r = await elsewhere.post(LOGIN, json={"email": victim["email"], "password": "agent-pass-1"})
        assert r.status_code == 200, r.text
        # Tokens issued before keep working; other accounts from the same address are not locked.
        assert (await client.get(f"{API}/auth/me", headers=victim["headers"])).status_code == 200
        r = await attacker.post(LOGIN, json={"email": bystander["email"], "password": "agent-pass-1"})
        assert r.status_code == 200


async def test_unknown_emails_are_throttled_like_known_ones(app: Any, settings: Any) -> None:
    email = "ghost-user@example.com"
    async with from_address(app) as c:
        codes = [
            (await c.post(LOGIN, json={"email": email, "password": "whatever1"})).status_code
            for _ in range(settings.LOGIN_MAX_FAILURES + 1)
        ]
    assert codes == [401] * settings.LOGIN_MAX_FAILURES + [429]


async def test_concurrent_wrong_passwords_check_at_most_the_limit(
    app: Any, client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Any, monkeypatch: Any
) -> None:
    """20 guesses at once: each is counted before its password is checked, the store's unique
    inserts decide who is within the limit, so no more than the limit are ever checked."""
    from backend.core import security

    tenant = await make_tenant(client, admin_headers, departments=0, agents=0)
    owner = (await client.get(f"{API}/auth/me", headers=tenant.headers)).json()
    checked: list[str] = []
    verify = security.verify_password

    def counting_verify(password: str, password_hash: str | None) -> bool:
        checked.append(password)
        return verify(password, password_hash)

    monkeypatch.setattr(security, "verify_password", counting_verify)
    monkeypatch.setattr("backend.auth.service.verify_password", counting_verify)
    limit = settings.LOGIN_MAX_FAILURES
    async with from_address(app) as c:
        answers = await asyncio.gather(
            *(c.post(LOGIN, json={"email": owner["email"], "password": f"guess-{i:02d}"}) for i in range(20))
        )
    codes = sorted(r.status_code for r in answers)
    assert codes == [401] * limit + [429] * (20 - limit), [r.text for r in answers]
    assert len(checked) == limit
    for r in answers:
        if r.status_code == 429:
            assert 0 < int(r.headers["retry-after"]) <= settings.LOGIN_WINDOW_SECONDS
    # The owner, from their own address, still gets in.
    async with from_address(app) as own:
        assert (await own.post(LOGIN, json={"email": owner["email"], "password": "owner-pass-1"})).status_code == 200


async def test_unknown_email_costs_the_same_password_work_as_a_wrong_password(
    app: Any, client: httpx.AsyncClient, admin_headers: dict[str, str], monkeypatch: Any
) -> None:
    """The same answer, and the same Argon2 verification (against a dummy hash for an unknown
    email), so neither the body nor the time tells whether the account exists."""
    from backend.core import security

    tenant = await make_tenant(client, admin_headers, departments=0, agents=0)
    owner = (await client.get(f"{API}/auth/me", headers=tenant.headers)).json()
    hasher_calls: list[str] = []
    real_verify = security._hasher.verify

    def counting(password: str, password_hash: str) -> bool:
        hasher_calls.append(password_hash)
        return real_verify(password, password_hash)

    monkeypatch.setattr(security._hasher, "verify", counting)
    async with from_address(app) as c:
        wrong = await c.post(LOGIN, json={"email": owner["email"], "password": "not-the-password"})
        unknown = await c.post(LOGIN, json={"email": "nobody-at-all@example.com", "password": "not-the-password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() and wrong.headers.get("content-length") == unknown.headers.get(
        "content-length"
    )
    assert len(hasher_calls) == 2 and all(h.startswith("$argon2id$") for h in hasher_calls)


async def test_password_spraying_from_one_address_gets_429(
    app: Any, client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Any
) -> None:
    """One guess each on 43 accounts from one address: the address's limit stops it, while the
    same accounts from another address log in; successes do not use up an address's limit."""
    tenant = await make_tenant(client, admin_headers, departments=1, agents=3)
    real = [a["email"] for a in tenant.agents]
    emails = real + [f"sprayed-{i}@example.com" for i in range(43 - len(real))]
    per_address = settings.LOGIN_MAX_FAILURES_PER_ADDRESS
    assert per_address < 43
    async with from_address(app) as office, from_address(app) as sprayer, from_address(app) as elsewhere:
        # An office behind one address: more successful logins than the limit, all fine.
        for _ in range(per_address + 2):
            assert (await office.post(LOGIN, json={"email": real[0], "password": "agent-pass-1"})).status_code == 200
        codes = [
            (await sprayer.post(LOGIN, json={"email": email, "password": "Summer2024!"})).status_code
            for email in emails
        ]
        assert codes == [401] * per_address + [429] * (43 - per_address)
        r = await sprayer.post(LOGIN, json={"email": real[1], "password": "agent-pass-1"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        for email in real:
            assert (await elsewhere.post(LOGIN, json={"email": email, "password": "agent-pass-1"})).status_code == 200


async def test_retry_after_tells_when_the_lock_really_lifts(
    app: Any, client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Any, throttle_clock: ThrottleClock
) -> None:
    tenant = await make_tenant(client, admin_headers, departments=0, agents=0)
    owner = (await client.get(f"{API}/auth/me", headers=tenant.headers)).json()
    window, limit = settings.LOGIN_WINDOW_SECONDS, settings.LOGIN_MAX_FAILURES
    start = 10_000_000 * window  # a window far from the real clock's, so no other test shares it
    clock = throttle_clock
    clock.now = start + 10
    creds = {"email": owner["email"], "password": "owner-pass-1"}
    async with from_address(app) as c:
        for _ in range(limit):
            assert (await c.post(LOGIN, json={**creds, "password": "bad-guess"})).status_code == 401
        r = await c.post(LOGIN, json=creds)
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) == window - 10
        clock.now = start + window - 1  # still the same window
        assert (await c.post(LOGIN, json=creds)).status_code == 429
        clock.now = start + window  # what Retry-After promised
        assert (await c.post(LOGIN, json=creds)).status_code == 200


async def test_concurrent_failed_logins_for_a_fresh_email_are_all_401(app: Any) -> None:
    """Concurrent first attempts of a window must not trip over each other's documents."""
    async with from_address(app) as c:
        for i in range(3):
            email = f"burst-{i}@example.com"
            results = await asyncio.gather(
                *(c.post(LOGIN, json={"email": email, "password": "wrong-one"}) for _ in range(4))
            )
            assert [r.status_code for r in results] == [401] * 4, [r.text for r in results]


async def test_a_successful_login_forgives_earlier_failures(
    app: Any, client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    agent = await make_agent(client, tenant, [tenant.departments[0]["id"]])
    limit = settings.LOGIN_MAX_FAILURES
    async with from_address(app) as c:
        post = c.post
        for _ in range(limit - 1):
            assert (await post(LOGIN, json={"email": agent["email"], "password": "typo-typo"})).status_code == 401
        assert (await post(LOGIN, json={"email": agent["email"], "password": "agent-pass-1"})).status_code == 200
        # Without the forgiveness, this one typo would reach the limit and the next login be refused.
        assert (await post(LOGIN, json={"email": agent["email"], "password": "typo-typo"})).status_code == 401
        for _ in range(limit + 1):  # and successes never add up to a lock either
            assert (await post(LOGIN, json={"email": agent["email"], "password": "agent-pass-1"})).status_code == 200


async def test_lost_hint_updates_never_loosen_the_limit(
    app: Any, client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Any, monkeypatch: Any
) -> None:
    """The per-window hint is a plain update, which FerretDB may lose to a concurrent one (read,
    modify, write back). With every hint update lost, the unique slot inserts alone still hold
    the limit, and a success still forgives."""
    from backend.auth import throttle

    async def lost(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(throttle, "_raise_hint", lost)
    tenant = await make_tenant(client, admin_headers, departments=0, agents=0)
    owner = (await client.get(f"{API}/auth/me", headers=tenant.headers)).json()
    limit = settings.LOGIN_MAX_FAILURES
    async with from_address(app) as c:
        for _ in range(limit - 1):
            assert (await c.post(LOGIN, json={"email": owner["email"], "password": "bad-one"})).status_code == 401
        assert (await c.post(LOGIN, json={"email": owner["email"], "password": "owner-pass-1"})).status_code == 200
        answers = await asyncio.gather(
            *(c.post(LOGIN, json={"email": owner["email"], "password": "bad-two"}) for _ in range(limit + 3))
        )
    assert sorted(r.status_code for r in answers) == [401] * limit + [429] * 3
