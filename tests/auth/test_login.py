"""Login, tokens and /auth/me."""

import base64
import json
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest

from backend.core.clock import utcnow
from tests.conftest import ADMIN_EMAIL, JWT_SECRET
from tests.factories import API, Tenant, bearer, login, make_agent, make_tenant

LOGIN = f"{API}/auth/login"


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


async def test_login_returns_a_bearer_token_that_authenticates(client: httpx.AsyncClient, tenant: Tenant) -> None:
    agent = tenant.agents[0]
    r = await client.post(LOGIN, json={"email": agent["email"], "password": "agent-pass-1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0
    assert body["user"]["id"] == agent["id"] and body["user"]["role"] == "agent"
    assert "password" not in json.dumps(body) and "hash" not in json.dumps(body)
    me = await client.get(f"{API}/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200 and me.json()["id"] == agent["id"]


async def test_login_email_is_case_and_space_insensitive(client: httpx.AsyncClient, tenant: Tenant) -> None:
    email = tenant.agents[0]["email"]
    r = await client.post(LOGIN, json={"email": f"  {email.upper()} ", "password": "agent-pass-1"})
    assert r.status_code == 200, r.text


async def test_bad_password_and_unknown_email_get_the_same_401(client: httpx.AsyncClient, tenant: Tenant) -> None:
    wrong = await client.post(LOGIN, json={"email": tenant.agents[0]["email"], "password": "wrong-password"})
    unknown = await client.post(LOGIN, json={"email": "nobody-here@example.com", "password": "agent-pass-1"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert set(wrong.json()) == {"detail"}


async def test_passwords_are_stored_as_argon2_hashes_only(client: httpx.AsyncClient, tenant: Tenant, db: Any) -> None:
    for user_id, password in ((tenant.agents[0]["id"], "agent-pass-1"), (tenant.owner_id, "owner-pass-1")):
        doc = await db.users.find_one({"_id": user_id})
        assert doc["password_hash"].startswith("$argon2id$")
        assert password not in json.dumps(doc, default=str)
        assert "password" not in doc
    admin = await db.users.find_one({"role": "admin"})
    assert admin["password_hash"].startswith("$argon2id$")


async def test_password_change_takes_effect(client: httpx.AsyncClient, tenant: Tenant, db: Any) -> None:
    agent = await make_agent(client, tenant, [tenant.departments[0]["id"]])
    old_hash = (await db.users.find_one({"_id": agent["id"]}))["password_hash"]
    r = await client.patch(f"{API}/users/{agent['id']}", json={"password": "brand-new-pass"}, headers=tenant.headers)
    assert r.status_code == 200
    assert (await db.users.find_one({"_id": agent["id"]}))["password_hash"] not in (old_hash, "brand-new-pass")
    assert (await client.post(LOGIN, json={"email": agent["email"], "password": "agent-pass-1"})).status_code == 401
    assert (await client.post(LOGIN, json={"email": agent["email"], "password": "brand-new-pass"})).status_code == 200


async def test_password_change_revokes_the_tokens_issued_before(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)  # its owner's tokens get revoked
    agent = await make_agent(client, tenant, [tenant.departments[0]["id"]])
    old = agent["headers"]
    assert (await client.get(f"{API}/auth/me", headers=old)).status_code == 200
    r = await client.patch(f"{API}/users/{agent['id']}", json={"password": "brand-new-pass"}, headers=tenant.headers)
    assert r.status_code == 200
    for path in ("/auth/me", "/tickets"):
        assert (await client.get(f"{API}{path}", headers=old)).status_code == 401
    new = await login(client, agent["email"], "brand-new-pass")
    assert (await client.get(f"{API}/auth/me", headers=new)).status_code == 200
    # The owner changing their own password ends their own old sessions too.
    owner_old = tenant.headers
    r = await client.patch(f"{API}/users/{tenant.owner_id}", json={"password": "owner-pass-2"}, headers=owner_old)
    assert r.status_code == 200
    assert (await client.get(f"{API}/auth/me", headers=owner_old)).status_code == 401
    owner_new = await login(client, r.json()["email"], "owner-pass-2")
    assert (await client.get(f"{API}/auth/me", headers=owner_new)).status_code == 200


async def test_me_answers_for_every_staff_role(
    client: httpx.AsyncClient, tenant: Tenant, admin_headers: dict[str, str]
) -> None:
    for headers, role, reseller_id in (
        (admin_headers, "admin", None),
        (tenant.headers, "reseller", tenant.id),
        (tenant.agents[0]["headers"], "agent", tenant.id),
    ):
        r = await client.get(f"{API}/auth/me", headers=headers)
        assert r.status_code == 200
        assert (r.json()["role"], r.json()["reseller_id"]) == (role, reseller_id)
    r = await client.get(f"{API}/auth/me", headers=admin_headers)
    assert r.json()["email"] == ADMIN_EMAIL


def _token(sub: str, *, minutes: int, secret: str = JWT_SECRET, **extra: Any) -> str:
    now = utcnow()
    claims = {"sub": sub, "role": "agent", "iat": now, "exp": now + timedelta(minutes=minutes), **extra}
    return jwt.encode(claims, secret, algorithm="HS256")


async def test_token_signed_with_the_right_secret_works_until_it_expires(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    agent_id = tenant.agents[0]["id"]
    ok = await client.get(f"{API}/auth/me", headers=bearer(_token(agent_id, minutes=5)))
    assert ok.status_code == 200
    expired = await client.get(f"{API}/auth/me", headers=bearer(_token(agent_id, minutes=-1)))
    assert expired.status_code == 401
    assert expired.headers["www-authenticate"] == "Bearer"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


async def test_tampered_forged_and_malformed_tokens_are_401(
    client: httpx.AsyncClient, tenant: Tenant, admin_headers: dict[str, str], db: Any
) -> None:
    agent_token = tenant.agents[0]["headers"]["Authorization"].removeprefix("Bearer ")
    header, payload, signature = agent_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    admin = await db.users.find_one({"role": "admin"})
    client_user = await db.users.find_one({"role": "client"}) or {"_id": "0" * 24}
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    bad_tokens = [
        f"{header}.{payload}.{flipped}",  # signature changed
        f"{header}.{_b64({**claims, 'sub': admin['_id'], 'role': 'admin'})}.{signature}",  # claims changed
        f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({**claims, 'sub': admin['_id']})}.",  # unsigned
        _token(admin["_id"], minutes=5, secret="some-other-secret-" + "y" * 40),  # foreign secret
        _token("0" * 24, minutes=5),  # nobody
        _token(str(client_user["_id"]), minutes=5),  # clients never hold a staff token
        jwt.encode({"sub": admin["_id"], "iat": utcnow()}, JWT_SECRET, algorithm="HS256"),  # no exp
        jwt.encode({"sub": 7, "exp": utcnow() + timedelta(minutes=5), "iat": utcnow()}, JWT_SECRET, algorithm="HS256"),
        # A token version that is not the user's (0 until first bumped), or not a number.
        *(
            jwt.encode(
                {"sub": admin["_id"], "exp": utcnow() + timedelta(minutes=5), "iat": utcnow(), "ver": ver},
                JWT_SECRET,
                algorithm="HS256",
            )
            for ver in (1, -1, "0", None, 0.0)
        ),
        "not-a-jwt",
        "a.b.c",
    ]
    for token in bad_tokens:
        for path in ("/auth/me", "/tickets", "/resellers"):
            r = await client.get(f"{API}{path}", headers=bearer(token))
            assert r.status_code == 401, (token, path, r.text)
            assert "detail" in r.json()


async def test_missing_or_non_bearer_credentials_are_401(client: httpx.AsyncClient) -> None:
    for headers in (
        {},
        {"Authorization": ""},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "Bearer"},
    ):
        for method, path in (
            ("GET", "/auth/me"),
            ("GET", "/tickets"),
            ("POST", "/tickets"),
            ("GET", "/departments"),
            ("POST", "/resellers"),
            ("GET", "/tickets/counts"),
        ):
            r = await client.request(method, f"{API}{path}", headers=headers, json={})
            assert r.status_code == 401, (headers, method, path, r.status_code)
            assert r.json()["detail"]


async def test_token_lifetime_comes_from_settings(mongo_url: str, db_name: str) -> None:
    from backend.app import create_app
    from tests.conftest import ADMIN_PASSWORD, make_settings

    app = create_app(make_settings(mongo_url, db_name, ACCESS_TOKEN_MINUTES=3))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            r = await c.post(LOGIN, json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
            assert r.status_code == 200
            assert r.json()["expires_in"] == 180
            claims = jwt.decode(r.json()["access_token"], JWT_SECRET, algorithms=["HS256"])
            assert claims["exp"] - claims["iat"] == 180
