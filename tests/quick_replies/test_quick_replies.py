"""Quick replies: the tenant's shared ones and each agent's personal ones."""

import asyncio
from typing import Any

import httpx
import pytest

from tests.factories import API, Tenant, make_tenant

URL = f"{API}/quick-replies"


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=2)


@pytest.fixture(scope="module")
async def other(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, departments=1, agents=1)


async def _create(client: httpx.AsyncClient, headers: dict[str, str], shortcut: str, text: str) -> dict[str, Any]:
    r = await client.post(URL, json={"shortcut": shortcut, "text": text}, headers=headers)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def _shortcuts(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[str]:
    r = await client.get(URL, params=params, headers=headers)
    assert r.status_code == 200, r.text
    return [item["shortcut"] for item in r.json()["items"]]


async def test_agents_see_the_company_replies_and_only_their_own_personal_ones(
    client: httpx.AsyncClient, tenant: Tenant, other: Tenant
) -> None:
    first, second = tenant.agents
    company = await _create(client, tenant.headers, "ola", "Olá {{cliente}}, aqui é {{agente}}.")
    assert (company["scope"], company["owner_id"]) == ("reseller", None)
    mine = await _create(client, first["headers"], "pix", "Nosso PIX: 123 (protocolo {{protocolo}})")
    assert (mine["scope"], mine["owner_id"]) == ("personal", first["id"])
    # Another agent may use the same shortcut for its own, and an agent may shadow the company's.
    await _create(client, second["headers"], "pix", "PIX do segundo")
    await _create(client, first["headers"], "ola", "Oi!")

    assert sorted(await _shortcuts(client, first["headers"])) == ["ola", "ola", "pix"]
    assert await _shortcuts(client, tenant.headers) == ["ola"]
    assert await _shortcuts(client, other.headers) == []
    assert await _shortcuts(client, other.agents[0]["headers"]) == []


async def test_shortcut_is_unique_per_owner_even_under_concurrent_creates(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    results = await asyncio.gather(
        *(client.post(URL, json={"shortcut": "Prazo", "text": f"t{i}"}, headers=tenant.headers) for i in range(5))
    )
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409, 409]
    assert await db.quick_replies.count_documents({"reseller_id": tenant.id, "shortcut_key": "prazo"}) == 1
    # Case does not make a new shortcut.
    r = await client.post(URL, json={"shortcut": "PRAZO", "text": "x"}, headers=tenant.headers)
    assert r.status_code == 409


async def test_deactivating_keeps_the_reply_and_frees_its_shortcut(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    old = await _create(client, tenant.headers, "horario", "Seg a sex, 8h às 18h")
    r = await client.patch(f"{URL}/{old['id']}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["active"] is False
    assert "horario" not in await _shortcuts(client, tenant.headers, active=True)
    assert await db.quick_replies.find_one({"_id": old["id"]}) is not None  # never deleted
    new = await _create(client, tenant.headers, "horario", "Seg a sáb, 8h às 20h")
    # Reactivating the old one now collides with the new one, and changes nothing.
    r = await client.patch(f"{URL}/{old['id']}", json={"active": True}, headers=tenant.headers)
    assert r.status_code == 409
    stored = await db.quick_replies.find_one({"_id": old["id"]})
    assert stored["active"] is False
    r = await client.patch(f"{URL}/{new['id']}", json={"text": "Seg a dom"}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["text"] == "Seg a dom"


async def test_renaming_onto_a_taken_shortcut_is_a_conflict_that_changes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    await _create(client, tenant.headers, "endereco", "Rua A")
    other_reply = await _create(client, tenant.headers, "site", "https://exemplo")
    r = await client.patch(f"{URL}/{other_reply['id']}", json={"shortcut": "endereco"}, headers=tenant.headers)
    assert r.status_code == 409
    stored = await db.quick_replies.find_one({"_id": other_reply["id"]})
    assert (stored["shortcut"], stored["shortcut_key"]) == ("site", "site")


async def test_agents_cannot_edit_company_replies_nor_see_other_agents_or_tenants(
    client: httpx.AsyncClient, tenant: Tenant, other: Tenant
) -> None:
    first, second = tenant.agents
    company = await _create(client, tenant.headers, "tchau", "Até logo")
    personal = await _create(client, first["headers"], "meu", "Meu texto")
    r = await client.patch(f"{URL}/{company['id']}", json={"text": "hack"}, headers=first["headers"])
    assert r.status_code == 403
    r = await client.patch(f"{URL}/{personal['id']}", json={"text": "hack"}, headers=second["headers"])
    assert r.status_code == 404
    r = await client.patch(f"{URL}/{personal['id']}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 404  # the owner manages the company's replies, not the agents' own
    for headers in (other.headers, other.agents[0]["headers"]):
        r = await client.patch(f"{URL}/{company['id']}", json={"text": "hack"}, headers=headers)
        assert r.status_code == 404
    r = await client.patch(f"{URL}/not-an-id", json={"text": "x"}, headers=tenant.headers)
    assert r.status_code == 404
    texts = {i["id"]: i["text"] for i in (await client.get(URL, headers=first["headers"])).json()["items"]}
    assert (texts[company["id"]], texts[personal["id"]]) == ("Até logo", "Meu texto")


async def test_bad_input_is_refused_and_writes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, admin_headers: dict[str, str], db: Any
) -> None:
    before = await db.quick_replies.count_documents({})
    for body in (
        {"shortcut": "", "text": "x"},
        {"shortcut": "tem espaço", "text": "x"},
        {"shortcut": "ok", "text": ""},
        {"shortcut": "ok", "text": "x" * 4097},
        {"shortcut": "ok", "text": "x", "scope": "reseller"},
    ):
        r = await client.post(URL, json=body, headers=tenant.headers)
        assert r.status_code == 422, body
    r = await client.post(URL, json={"shortcut": "adm", "text": "x"}, headers=admin_headers)
    assert r.status_code == 403
    assert await db.quick_replies.count_documents({}) == before
