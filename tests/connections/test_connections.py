import asyncio
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.collection import AsyncCollection

from backend.core.clock import utcnow
from backend.core.ids import new_id
from tests.factories import make_tenant, unique
from tests.fakes.harness import FakeEvolution, make_connection
from tests.webhooks.helpers import settled

BASE = "/api/v1/whatsapp-connections"


def _body(tenant: Any, instance: str | None = None) -> dict[str, Any]:
    return {
        "name": unique("Loja "),
        "provider": "evolution",
        "instance_name": instance or unique("inst-"),
        "default_department_id": tenant.departments[0]["id"],
    }


async def test_create_binds_the_instance_with_our_webhook_and_never_returns_secrets(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, settings: Any, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    r = await client.post(BASE, json=_body(tenant), headers=tenant.headers)
    assert r.status_code == 201, r.text
    conn = r.json()
    assert conn["status"] == "connecting" and conn["active"] is True
    assert conn["qr_code"].startswith("data:image/png;base64,")
    assert conn["provider"] == "evolution" and conn["default_department_id"] == tenant.departments[0]["id"]

    instance = await evolution.control("GET", f"instances/{conn['instance_name']}")
    assert instance["webhook_url"] == f"{settings.PUBLIC_BASE_URL}/api/v1/webhooks/whatsapp/{conn['id']}"
    assert set(instance["events"]) >= {"MESSAGES_UPSERT", "MESSAGES_UPDATE", "CONNECTION_UPDATE", "QRCODE_UPDATED"}
    token = instance["webhook_headers"]["X-Webhook-Token"]
    stored = await db.whatsapp_connections.find_one({"_id": conn["id"]})
    assert stored["webhook_token"] == token and stored["provider_token"] == instance["token"]

    secrets = (token, instance["token"], evolution.api_key)
    responses = [
        r,
        await client.get(BASE, headers=tenant.headers),
        await client.get(f"{BASE}/{conn['id']}", headers=tenant.headers),
        await client.get(f"{BASE}/{conn['id']}/qrcode", headers=tenant.headers),
        await client.patch(f"{BASE}/{conn['id']}", json={"name": "Outra"}, headers=tenant.headers),
    ]
    for resp in responses:
        assert resp.status_code in (200, 201), resp.text
        assert not any(s in resp.text for s in secrets), resp.text
        assert "webhook_token" not in resp.text and "provider_token" not in resp.text


async def test_instance_name_is_taken_once_even_by_concurrent_creates(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    other = await make_tenant(client, admin_headers, agents=0)
    instance = unique("race-")
    results = await asyncio.gather(
        *(client.post(BASE, json=_body(t, instance), headers=t.headers) for t in [tenant, other] * 4)
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * 7, codes


async def test_bad_input_roles_and_other_tenants(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    other = await make_tenant(client, admin_headers, agents=0)
    before = await db.whatsapp_connections.count_documents({})
    bad = [
        {**_body(tenant), "instance_name": "has space"},
        {**_body(tenant), "provider": "carrier-pigeon"},
        {**_body(tenant), "default_department_id": "nope"},
        {**_body(tenant), "webhook_token": "mine"},
        {k: v for k, v in _body(tenant).items() if k != "name"},
    ]
    for body in bad:
        r = await client.post(BASE, json=body, headers=tenant.headers)
        assert r.status_code == 422, (body, r.text)
    r = await client.post(BASE, json=_body(other), headers=tenant.headers)  # other tenant's department
    assert r.status_code == 422, r.text
    r = await client.post(BASE, json=_body(tenant), headers=tenant.agents[0]["headers"])
    assert r.status_code == 403
    assert await db.whatsapp_connections.count_documents({}) == before

    conn = await make_connection(client, tenant, evolution, open_=False)
    for path in (f"{BASE}/{conn['id']}", f"{BASE}/{conn['id']}/qrcode"):
        assert (await client.get(path, headers=other.headers)).status_code == 404
    r = await client.patch(f"{BASE}/{conn['id']}", json={"active": False}, headers=other.headers)
    assert r.status_code == 404
    listed = (await client.get(BASE, headers=other.headers)).json()["items"]
    assert conn["id"] not in [c["id"] for c in listed]
    assert (await client.delete(f"{BASE}/{conn['id']}", headers=tenant.headers)).status_code == 405
    r = await client.patch(
        f"{BASE}/{conn['id']}", json={"default_department_id": other.departments[0]["id"]}, headers=tenant.headers
    )
    assert r.status_code == 422
    r = await client.patch(f"{BASE}/{conn['id']}", json={"active": False, "name": "Desligada"}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["active"] is False and r.json()["name"] == "Desligada"


async def test_qr_code_and_status_follow_the_provider_and_are_announced(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution, open_=False)
    r = await client.get(f"{BASE}/{conn['id']}/qrcode", headers=tenant.headers)
    assert r.status_code == 200 and r.json()["status"] == "connecting"
    assert r.json()["qr_code"].startswith("data:image/png")

    result = await evolution.control("POST", "qrcode", {"instance": conn["instance_name"]})
    assert result["status_code"] == 200 and (await settled(db, result))["status"] == "processed", result

    result = await evolution.control("POST", "state", {"instance": conn["instance_name"], "state": "open"})
    assert result["status_code"] == 200 and (await settled(db, result))["status"] == "processed", result
    got = (await client.get(f"{BASE}/{conn['id']}", headers=tenant.headers)).json()
    assert got["status"] == "open" and got["qr_code"] is None
    r = await client.get(f"{BASE}/{conn['id']}/qrcode", headers=tenant.headers)
    assert r.json() == {"qr_code": None, "status": "open"}

    await settled(db, await evolution.control("POST", "state", {"instance": conn["instance_name"], "state": "close"}))
    got = (await client.get(f"{BASE}/{conn['id']}", headers=tenant.headers)).json()
    assert got["status"] == "close"

    records = await db.tenant_events.find({"reseller_id": tenant.id, "type": "connection.status"}).to_list(None)
    statuses = [rec["data"]["connection"]["status"] for rec in records]
    assert "open" in statuses and statuses[-1] == "close", statuses
    stored = await db.whatsapp_connections.find_one({"_id": conn["id"]})
    for rec in records:
        assert stored["webhook_token"] not in str(rec)


async def test_provider_down_at_creation_keeps_the_connection_and_binds_it_later(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    evolution.stop()
    try:
        r = await client.post(BASE, json=_body(tenant), headers=tenant.headers)
        assert r.status_code == 201, r.text
        conn = r.json()
        assert conn["status"] == "close" and conn["qr_code"] is None
        assert "unreachable" in conn["last_error"]
        r = await client.get(f"{BASE}/{conn['id']}/qrcode", headers=tenant.headers)
        assert r.status_code == 503
    finally:
        evolution.start()
    r = await client.get(f"{BASE}/{conn['id']}/qrcode", headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "connecting" and r.json()["qr_code"]
    got = (await client.get(f"{BASE}/{conn['id']}", headers=tenant.headers)).json()
    assert got["last_error"] is None


async def test_provider_5xx_and_malformed_answers_are_503_not_500(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution, open_=False)
    try:
        for mode in ("5xx", "malformed"):
            await evolution.mode(mode)
            r = await client.get(f"{BASE}/{conn['id']}/qrcode", headers=tenant.headers)
            assert r.status_code == 503, (mode, r.text)
    finally:
        await evolution.mode("ok")


async def test_department_menu_settings_on_a_connection(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution
) -> None:
    tenant = await make_tenant(client, admin_headers, departments=2, agents=0)
    other = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution, open_=False)
    assert conn["menu_enabled"] is False and conn["menu_department_ids"] == [] and conn["menu_max_invalid"] == 2
    dept_ids = [d["id"] for d in tenant.departments]
    url = f"{BASE}/{conn['id']}"
    for bad in (
        {"menu_enabled": True},  # no departments to offer
        {"menu_department_ids": [dept_ids[0], dept_ids[0]]},
        {"menu_department_ids": [other.departments[0]["id"]]},  # another tenant's: unknown
        {"menu_department_ids": ["0" * 24]},
        {"menu_department_ids": [dept_ids[0]] * 10},
        {"menu_max_invalid": -1},
        {"menu_text": "x" * 1001},
    ):
        r = await client.patch(url, json=bad, headers=tenant.headers)
        assert r.status_code == 422, (bad, r.text)
    body = {"menu_enabled": True, "menu_department_ids": dept_ids[::-1], "menu_text": "Escolha:", "menu_max_invalid": 1}
    r = await client.patch(url, json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    got = (await client.get(url, headers=tenant.headers)).json()
    assert {k: got[k] for k in body} == body
    r = await client.patch(url, json={"menu_department_ids": []}, headers=tenant.headers)
    assert r.status_code == 422  # still enabled: it needs departments
    r = await client.patch(url, json={"menu_enabled": True}, headers=other.headers)
    assert r.status_code == 404


async def test_a_department_deactivated_later_never_blocks_saving_the_menu_or_the_agent_holding_it(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution
) -> None:
    """The menu form and the agent form keep a department deactivated since (shown as inactive;
    the menu sent to clients skips it): saving them unchanged, or switching the menu off, must
    not be refused because of it. Naming an inactive department anew still is."""
    tenant = await make_tenant(client, admin_headers, departments=3, agents=0)
    kept, gone, other = (d["id"] for d in tenant.departments)
    conn = await make_connection(client, tenant, evolution, open_=False)
    url = f"{BASE}/{conn['id']}"
    r = await client.patch(
        url, json={"menu_enabled": True, "menu_department_ids": [kept, gone]}, headers=tenant.headers
    )
    assert r.status_code == 200, r.text
    agent = await client.post(
        "/api/v1/users",
        json={
            "name": "Ana",
            "email": f"{unique('ana')}@example.com",
            "password": "agent-pass-1",
            "department_ids": [kept, gone],
        },
        headers=tenant.headers,
    )
    assert agent.status_code == 201, agent.text
    agent_url = f"/api/v1/users/{agent.json()['id']}"
    r = await client.patch(f"/api/v1/departments/{gone}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    r = await client.patch(f"/api/v1/departments/{other}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 200, r.text

    # Saved as the forms send them: the inactive department still in the lists.
    r = await client.patch(
        url, json={"menu_enabled": False, "menu_department_ids": [kept, gone]}, headers=tenant.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["menu_enabled"] is False and r.json()["menu_department_ids"] == [kept, gone]
    r = await client.patch(
        agent_url, json={"name": "Ana Maria", "department_ids": [kept, gone]}, headers=tenant.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Ana Maria" and sorted(r.json()["department_ids"]) == sorted([kept, gone])
    # Dropping it is fine too; naming an inactive department that was not there is refused.
    for target, body in (
        (url, {"menu_department_ids": [kept, other]}),
        (agent_url, {"department_ids": [kept, other]}),
        (url, {"default_department_id": other}),
    ):
        r = await client.patch(target, json=body, headers=tenant.headers)
        assert r.status_code == 422, (body, r.text)
    r = await client.patch(agent_url, json={"department_ids": [kept]}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["department_ids"] == [kept]
    r = await client.patch(agent_url, json={"department_ids": [kept, gone]}, headers=tenant.headers)
    assert r.status_code == 422  # no longer held: adding it back is naming it anew


async def test_a_connection_stored_before_the_menu_reads_with_defaults_and_a_change_writes_only_its_fields(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    now, conn_id = utcnow(), new_id()
    older = {  # as created before the department menu and the provider's ids and tokens were kept
        "_id": conn_id,
        "reseller_id": tenant.id,
        "name": "Antiga",
        "provider": "evolution",
        "instance_name": unique("old-"),
        "default_department_id": tenant.departments[0]["id"],
        "status": "open",
        "active": True,
        "webhook_token": "x" * 43,
        "created_at": now,
        "updated_at": now,
    }
    await db.whatsapp_connections.insert_one(older)
    r = await client.get(f"{BASE}/{conn_id}", headers=tenant.headers)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["qr_code"] is None and got["last_error"] is None
    menu = {k: got[k] for k in ("menu_enabled", "menu_department_ids", "menu_text", "menu_max_invalid")}
    assert menu == {"menu_enabled": False, "menu_department_ids": [], "menu_text": "", "menu_max_invalid": 2}
    r = await client.patch(f"{BASE}/{conn_id}", json={"name": "Renomeada"}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["name"] == "Renomeada", r.text
    stored = await db.whatsapp_connections.find_one({"_id": conn_id})
    # The defaults are read, never written back: the change set its field and updated_at only.
    assert set(stored) == set(older)
    same = set(older) - {"name", "created_at", "updated_at"}  # stored times lose their microseconds
    assert {k: stored[k] for k in same} == {k: older[k] for k in same}


async def test_a_status_webhook_landing_during_a_settings_change_waits_for_it_and_both_stay(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On FerretDB an update writes back the whole document as it read it: a status write sent
    while the admin's menu change is in flight would put the menu back off (or the change would
    put "connecting" back over "open"). The provider's news waits for the change in this process."""
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution, open_=False)
    in_flight, release, second = asyncio.Event(), asyncio.Event(), asyncio.Event()
    original = AsyncCollection.update_one

    async def held(self: Any, query: Any, update: Any, *args: Any, **kwargs: Any) -> Any:
        if self.name == "whatsapp_connections" and query.get("_id") == conn["id"]:
            if "menu_text" in update.get("$set", {}):
                in_flight.set()
                await release.wait()  # the admin's write is on its way to the store
            else:
                second.set()
        return await original(self, query, update, *args, **kwargs)

    monkeypatch.setattr(AsyncCollection, "update_one", held)
    body = {"menu_enabled": True, "menu_department_ids": [tenant.departments[0]["id"]], "menu_text": "Escolha:"}
    patch = asyncio.create_task(client.patch(f"{BASE}/{conn['id']}", json=body, headers=tenant.headers))
    await asyncio.wait_for(in_flight.wait(), 30)
    opened = await evolution.control("POST", "state", {"instance": conn["instance_name"], "state": "open"})
    assert opened["status_code"] == 200, opened
    with pytest.raises(TimeoutError):  # the old code sent it at once, beside the admin's write
        await asyncio.wait_for(second.wait(), 2.0)
    release.set()
    assert (await patch).status_code == 200
    assert (await settled(db, opened))["status"] == "processed"
    assert second.is_set()
    stored = await db.whatsapp_connections.find_one({"_id": conn["id"]})
    assert (stored["status"], stored["menu_enabled"], stored["menu_text"]) == ("open", True, "Escolha:")
