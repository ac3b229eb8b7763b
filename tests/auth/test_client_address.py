"""Which client address the login throttle counts: the peer's, unless the peer is a trusted proxy
(TRUSTED_PROXIES), whose X-Forwarded-For / X-Real-IP then say who the client is."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from backend.core.config import Settings
from tests.conftest import make_settings
from tests.factories import API

LOGIN = f"{API}/auth/login"
PROXY = "10.1.2.3"  # inside TRUSTED_PROXIES below


@pytest.fixture(scope="module")
def settings(mongo_url: str, db_name: str) -> Settings:
    return make_settings(mongo_url, db_name, TRUSTED_PROXIES="10.0.0.0/8, fd00::/8")


@asynccontextmanager
async def peer(app: Any, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as c:
        yield c


async def _owner(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> str:
    from tests.factories import make_tenant

    tenant = await make_tenant(client, admin_headers, departments=0, agents=0)
    email: str = (await client.get(f"{API}/auth/me", headers=tenant.headers)).json()["email"]
    return email


async def test_a_forged_forwarded_for_from_an_untrusted_peer_is_ignored(
    app: Any, client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Settings
) -> None:
    email = await _owner(client, admin_headers)
    async with peer(app, "203.0.113.9") as attacker:
        codes = []
        for i in range(settings.LOGIN_MAX_FAILURES + 2):
            # A new "client address" every time: were it believed, no lock would ever come.
            headers = {"X-Forwarded-For": f"198.51.100.{i}", "X-Real-IP": f"198.51.100.{100 + i}"}
            r = await attacker.post(LOGIN, json={"email": email, "password": "bad-guess"}, headers=headers)
            codes.append(r.status_code)
    assert codes == [401] * settings.LOGIN_MAX_FAILURES + [429, 429]


async def test_behind_a_trusted_proxy_the_client_is_the_address_it_appended(
    app: Any, client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Settings
) -> None:
    """nginx appends the address it got the connection from; what the client wrote before it
    (here a different address every time) changes nothing. Another client behind the same proxy
    is someone else: the right password works for it."""
    email = await _owner(client, admin_headers)
    limit = settings.LOGIN_MAX_FAILURES
    async with peer(app, PROXY) as proxy:
        codes = []
        for i in range(limit + 1):
            headers = {"X-Forwarded-For": f"1.2.3.{i}, 198.51.100.7", "X-Real-IP": "198.51.100.7"}
            r = await proxy.post(LOGIN, json={"email": email, "password": "bad-guess"}, headers=headers)
            codes.append(r.status_code)
        assert codes == [401] * limit + [429]
        # A chain of trusted proxies: the first untrusted hop from the right is still the client.
        chained = {"X-Forwarded-For": "198.51.100.7, 10.9.9.9"}
        r = await proxy.post(LOGIN, json={"email": email, "password": "owner-pass-1"}, headers=chained)
        assert r.status_code == 429
        other = {"X-Forwarded-For": "198.51.100.8", "X-Real-IP": "198.51.100.8"}
        r = await proxy.post(LOGIN, json={"email": email, "password": "owner-pass-1"}, headers=other)
        assert r.status_code == 200, r.text
        # X-Real-IP alone (no X-Forwarded-For) from the proxy counts as well.
        for _ in range(limit):
            r = await proxy.post(
                LOGIN, json={"email": email, "password": "bad-guess"}, headers={"X-Real-IP": "198.51.100.9"}
            )
            assert r.status_code == 401
        r = await proxy.post(LOGIN, json={"email": email, "password": "x"}, headers={"X-Real-IP": "198.51.100.9"})
        assert r.status_code == 429


async def test_ipv6_clients_count_per_64(
    app: Any, client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Settings
) -> None:
    """A host holds a whole /64: hopping through its addresses does not escape the limit."""
    email = await _owner(client, admin_headers)
    codes = []
    for i in range(settings.LOGIN_MAX_FAILURES + 1):
        async with peer(app, f"2001:db8:1:2::{i + 1:x}") as c:
            codes.append((await c.post(LOGIN, json={"email": email, "password": "bad-guess"})).status_code)
    assert codes == [401] * settings.LOGIN_MAX_FAILURES + [429]
    async with peer(app, "2001:db8:1:3::1") as c:  # another /64
        assert (await c.post(LOGIN, json={"email": email, "password": "owner-pass-1"})).status_code == 200


async def test_with_a_counted_proxy_a_client_on_a_private_network_is_itself_and_cannot_forge_another(
    mongo_url: str, db_name: str, admin_headers: dict[str, str]
) -> None:
    """TRUSTED_PROXIES covers the private ranges (where compose's nginx is), so an office-LAN client
    has a "trusted" address too: skipping trusted hops would take whatever it wrote before it
    (a new address per guess: no lock) or, with nothing written, nginx's own (one bucket for the
    whole office). With TRUSTED_PROXY_HOPS=1 the client is the address nginx appended."""
    from backend.app import create_app
    from tests.factories import make_tenant

    settings = make_settings(mongo_url, db_name, TRUSTED_PROXIES="10.0.0.0/8", TRUSTED_PROXY_HOPS=1)
    app = create_app(settings)
    async with app.router.lifespan_context(app), peer(app, PROXY) as proxy:
        tenant = await make_tenant(proxy, admin_headers, departments=0, agents=0)
        email = (await proxy.get(f"{API}/auth/me", headers=tenant.headers)).json()["email"]
        codes = []
        for i in range(settings.LOGIN_MAX_FAILURES + 1):
            forged = {"X-Forwarded-For": f"198.51.100.{i}, 10.20.30.40", "X-Real-IP": "10.20.30.40"}
            r = await proxy.post(LOGIN, json={"email": email, "password": "bad-guess"}, headers=forged)
            codes.append(r.status_code)
        assert codes == [401] * settings.LOGIN_MAX_FAILURES + [429]
        # Another machine of the same office is someone else.
        colleague = {"X-Forwarded-For": "10.20.30.41", "X-Real-IP": "10.20.30.41"}
        r = await proxy.post(LOGIN, json={"email": email, "password": "owner-pass-1"}, headers=colleague)
        assert r.status_code == 200, r.text


def test_a_bad_trusted_proxy_setting_is_refused(mongo_url: str) -> None:
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        make_settings(mongo_url, "x", TRUSTED_PROXIES="10.0.0.0/8, nginx")
