"""Resellers (tenants): created by the admin with their owner and config; config per tenant."""

from typing import Any

import httpx
import pytest

from tests.factories import API, Tenant, collect_pages, collection_counts, create_reseller, login, make_tenant


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


async def test_admin_creates_reseller_with_owner_user_and_config(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any
) -> None:
    reseller, email = await create_reseller(client, admin_headers)
    assert reseller["active"] is True and reseller["owner_email"] == email
    owner = await db.users.find_one({"_id": reseller["owner_id"]})
    assert (owner["role"], owner["reseller_id"], owner["email"], owner["active"]) == (
        "reseller",
        reseller["id"],
        email,
        True,
    )
    headers = await login(client, email, "owner-pass-1")
    r = await client.get(f"{API}/reseller-config", headers=headers)
    assert r.status_code == 200
    assert (r.json()["reseller_id"], r.json()["company_name"]) == (reseller["id"], reseller["name"])
    r = await client.get(f"{API}/resellers/{reseller['id']}", headers=admin_headers)
    assert r.status_code == 200 and r.json() == reseller


async def test_duplicate_owner_email_is_409_and_writes_nothing(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any
) -> None:
    _, email = await create_reseller(client, admin_headers)
    before = await collection_counts(db)
    for variant in (email, email.upper()):
        r = await client.post(
            f"{API}/resellers",
            json={"name": "Outra", "email": variant, "password": "owner-pass-2"},
            headers=admin_headers,
        )
        assert r.status_code == 409, r.text
    assert await collection_counts(db) == before


async def test_only_the_admin_manages_resellers(
    client: httpx.AsyncClient, tenant: Tenant, admin_headers: dict[str, str], db: Any
) -> None:
    before = await collection_counts(db)
    for headers in (tenant.headers, tenant.agents[0]["headers"]):
        assert (await client.get(f"{API}/resellers", headers=headers)).status_code == 403
        body = {"name": "X", "email": "x-new@example.com", "password": "owner-pass-1"}
        assert (await client.post(f"{API}/resellers", json=body, headers=headers)).status_code == 403
        # Their own tenant's id, another one's, or none at all: the same answer, nothing revealed.
        for rid in (tenant.id, "0" * 24, "nope"):
            assert (await client.get(f"{API}/resellers/{rid}", headers=headers)).status_code == 403
            r = await client.patch(f"{API}/resellers/{rid}", json={"active": False}, headers=headers)
            assert r.status_code == 403
    assert await collection_counts(db) == before
    assert (await client.get(f"{API}/resellers/{tenant.id}", headers=admin_headers)).json()["active"] is True


async def test_admin_lists_every_reseller_with_cursor_pages(
    client: httpx.AsyncClient, tenant: Tenant, admin_headers: dict[str, str]
) -> None:
    created = [(await create_reseller(client, admin_headers))[0]["id"] for _ in range(3)]
    items = await collect_pages(client, admin_headers, f"{API}/resellers", limit=2)
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids))
    assert {tenant.id, *created} <= set(ids)
    assert (await client.get(f"{API}/resellers/{'0' * 24}", headers=admin_headers)).status_code == 404
    assert (await client.get(f"{API}/resellers/xyz", headers=admin_headers)).status_code == 404


async def test_admin_renames_reseller(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    reseller, _ = await create_reseller(client, admin_headers)
    r = await client.patch(f"{API}/resellers/{reseller['id']}", json={"name": "Novo Nome"}, headers=admin_headers)
    assert r.status_code == 200 and r.json()["name"] == "Novo Nome"


async def test_reseller_reads_and_updates_only_its_own_config(
    client: httpx.AsyncClient, tenant: Tenant, admin_headers: dict[str, str]
) -> None:
    other = await make_tenant(client, admin_headers, departments=0, agents=0)
    body = {
        "company_name": "Minha Empresa",
        "welcome_message": "Bem-vindo!",
        "business_hours": [{"weekday": 0, "open": "08:00", "close": "18:00"}],
    }
    r = await client.patch(f"{API}/reseller-config", json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert r.json()["company_name"] == "Minha Empresa" and r.json()["reseller_id"] == tenant.id
    theirs = (await client.get(f"{API}/reseller-config", headers=other.headers)).json()
    assert theirs["reseller_id"] == other.id and theirs["company_name"] != "Minha Empresa"
    for headers in (admin_headers, tenant.agents[0]["headers"]):
        assert (await client.get(f"{API}/reseller-config", headers=headers)).status_code == 403
        r = await client.patch(f"{API}/reseller-config", json={"company_name": "X"}, headers=headers)
        assert r.status_code == 403
    for bad in (
        {"business_hours": [{"weekday": 7, "open": "08:00", "close": "18:00"}]},
        {"business_hours": [{"weekday": 0, "open": "18:00", "close": "18:00"}]},  # empty; 18:00-08:00 is a night
        {"business_hours": [{"weekday": 0, "open": "25:00", "close": "26:00"}]},
        {"business_hours": [{"weekday": 0, "open": "08:00", "close": "18:00"}] * 22},
        {"welcome_message": "x" * 1001},
        {"company_name": ""},
        {"reseller_id": "0" * 24},
    ):
        r = await client.patch(f"{API}/reseller-config", json=bad, headers=tenant.headers)
        assert r.status_code == 422, (bad, r.text)
    assert (await client.get(f"{API}/reseller-config", headers=tenant.headers)).json()[
        "company_name"
    ] == "Minha Empresa"
    night = [{"weekday": 4, "open": "22:00", "close": "02:00"}, {"weekday": 5, "open": "18:00", "close": "00:00"}]
    r = await client.patch(f"{API}/reseller-config", json={"business_hours": night}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["business_hours"] == night, r.text


async def test_concurrent_creations_with_one_email_make_exactly_one_tenant(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any
) -> None:
    import asyncio

    for attempt in range(3):
        before = await collection_counts(db)
        body = {"name": f"Corrida {attempt}", "email": f"race-{attempt}@example.com", "password": "owner-pass-1"}
        results = await asyncio.gather(
            *(client.post(f"{API}/resellers", json=body, headers=admin_headers) for _ in range(3))
        )
        codes = sorted(r.status_code for r in results)
        assert codes == [201, 409, 409], [r.text for r in results]
        after = await collection_counts(db)
        # One reseller, one config, one owner: no orphan tenant left behind by the losers.
        for name in ("resellers", "reseller_configs", "users"):
            assert after[name] == before[name] + 1, name
        created = next(r.json() for r in results if r.status_code == 201)
        owner = await db.users.find_one({"_id": created["owner_id"]})
        assert owner["reseller_id"] == created["id"]
        assert await login(client, body["email"], "owner-pass-1")


async def test_company_settings_for_automatic_messages_are_read_and_validated(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    fresh = (await client.get(f"{API}/reseller-config", headers=tenant.headers)).json()
    assert fresh["closing_message"] == "" and fresh["closed_dates"] == []
    assert fresh["csat_enabled"] is False and fresh["csat_window_hours"] == 24
    body = {
        "closing_message": "Obrigado, {{cliente}}!",
        "closed_dates": ["2026-12-25", "2026-01-01", "2026-12-25"],
        "csat_enabled": True,
        "csat_window_hours": 48,
        "csat_message": "Nota de 1 a 5?",
        "timezone": "Asia/Tokyo",
    }
    r = await client.patch(f"{API}/reseller-config", json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    got = (await client.get(f"{API}/reseller-config", headers=tenant.headers)).json()
    assert got["closed_dates"] == ["2026-01-01", "2026-12-25"]  # sorted, once each
    kept = ("closing_message", "csat_enabled", "csat_window_hours", "csat_message", "timezone")
    assert {k: got[k] for k in kept} == {k: body[k] for k in kept}
    for bad in (
        {"closed_dates": ["2026-02-30"]},
        {"closed_dates": ["25/12/2026"]},
        {"csat_window_hours": 0},
        {"csat_window_hours": 24 * 31},
        {"timezone": "Mars/Olympus"},
        {"closing_message": "x" * 1001},
    ):
        r = await client.patch(f"{API}/reseller-config", json=bad, headers=tenant.headers)
        assert r.status_code == 422, (bad, r.text)
    assert (await client.get(f"{API}/reseller-config", headers=tenant.headers)).json() == got
