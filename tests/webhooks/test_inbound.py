import asyncio
import json
from typing import Any

import httpx

from backend.webhooks.service import message_id_for
from tests.factories import API, Tenant, assume, make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.webhooks.helpers import connection_state, settled, text_upsert

HOOK = "/api/v1/webhooks/whatsapp"


async def _token(db: Any, connection_id: str) -> str:
    doc = await db.whatsapp_connections.find_one({"_id": connection_id})
    return str(doc["webhook_token"])


def _upsert(phone: str, key_id: str, text: str = "oi", *, from_me: bool = False, name: str = "Maria") -> dict[str, Any]:
    return text_upsert(phone, key_id, text, name=name, from_me=from_me, stamped=True)


async def test_first_message_opens_an_espera_ticket_in_the_default_department(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    phone = unique_phone()
    result = await evolution.inbound(conn["instance_name"], phone, "Olá, preciso de ajuda", push_name="Maria Silva")
    assert result["status_code"] == 200, result
    raw = await settled(db, result)
    assert raw["connection_id"] == conn["id"] and raw["status"] == "processed"
    assert json.loads(raw["body"])["data"]["key"]["id"] == result["key_id"]  # stored as it arrived

    r = await client.get(f"/api/v1/clients?phone={phone}", headers=tenant.headers)
    customer = r.json()["items"][0]
    assert customer["name"] == "Maria Silva"
    r = await client.get("/api/v1/tickets?status=espera", headers=tenant.agents[0]["headers"])
    tickets = [t for t in r.json()["items"] if t["client_id"] == customer["id"]]
    assert len(tickets) == 1 and tickets[0]["department_id"] == tenant.departments[0]["id"]
    msgs = (await client.get(f"/api/v1/tickets/{tickets[0]['id']}/messages", headers=tenant.headers)).json()["items"]
    assert [(m["direction"], m["sender_type"], m["body"]) for m in msgs] == [("in", "client", "Olá, preciso de ajuda")]
    assert msgs[0]["id"] == message_id_for(conn["id"], result["key_id"])
    stored = await db.tickets.find_one({"_id": tickets[0]["id"]})
    assert stored["channel"] == conn["id"]


async def test_a_deactivated_client_still_reaches_the_queue(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """Deactivating a client hides it from the contact list; what it sends is never dropped."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    phone = unique_phone()
    customer = (
        await client.post("/api/v1/clients", json={"name": "Ana", "phone": phone}, headers=tenant.headers)
    ).json()
    r = await client.patch(f"/api/v1/clients/{customer['id']}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    result = await evolution.inbound(conn["instance_name"], phone, "Ainda preciso de ajuda")
    assert (await settled(db, result))["status"] == "processed"
    r = await client.get("/api/v1/tickets?status=espera", headers=tenant.agents[0]["headers"])
    tickets = [t for t in r.json()["items"] if t["client_id"] == customer["id"]]
    assert len(tickets) == 1
    msgs = (await client.get(f"/api/v1/tickets/{tickets[0]['id']}/messages", headers=tenant.headers)).json()["items"]
    assert [m["body"] for m in msgs] == ["Ainda preciso de ajuda"]
    assert (await client.get(f"/api/v1/clients/{customer['id']}", headers=tenant.headers)).json()["active"] is False


async def test_redelivery_sequential_and_concurrent_is_stored_once(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    phone = unique_phone()
    payload = _upsert(phone, "3EB0DUPLICATE" + phone)
    headers = {"X-Webhook-Token": await _token(db, conn["id"])}
    first = await client.post(f"{HOOK}/{conn['id']}", json=payload, headers=headers)
    again = await client.post(f"{HOOK}/{conn['id']}", json=payload, headers=headers)
    assert first.status_code == again.status_code == 200
    storm = await asyncio.gather(
        *(client.post(f"{HOOK}/{conn['id']}", json=payload, headers=headers) for _ in range(20))
    )
    assert all(r.status_code == 200 for r in storm)
    for r in (first, again, *storm):
        assert (await settled(db, r))["status"] == "processed"

    mid = message_id_for(conn["id"], payload["data"]["key"]["id"])
    assert await db.messages.count_documents({"_id": mid}) == 1
    assert await db.messages.count_documents({"reseller_id": tenant.id}) == 1
    assert await db.tickets.count_documents({"reseller_id": tenant.id}) == 1
    raws = await db.webhook_events_raw.count_documents({"connection_id": conn["id"], "event": "messages.upsert"})
    assert raws == 22  # every delivery is kept raw
    again_raw = await db.webhook_events_raw.find_one({"_id": again.json()["raw_id"]})
    assert again_raw["result"] == ["duplicate"]


async def test_concurrent_first_messages_of_a_new_client_open_one_ticket(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    headers = {"X-Webhook-Token": await _token(db, conn["id"])}
    for _ in range(3):
        phone = unique_phone()
        payloads = [_upsert(phone, f"3EB0{phone}{i}", f"msg {i}") for i in range(12)]
        results = await asyncio.gather(
            *(client.post(f"{HOOK}/{conn['id']}", json=p, headers=headers) for p in payloads)
        )
        assert all(r.status_code == 200 for r in results), [r.text for r in results]
        assert [(await settled(db, r))["status"] for r in results] == ["processed"] * 12
        clients = await db.users.find({"reseller_id": tenant.id, "phone": phone}).to_list(None)
        assert len(clients) == 1
        tickets = await db.tickets.find({"client_id": clients[0]["_id"]}).to_list(None)
        assert len(tickets) == 1, tickets
        assert await db.messages.count_documents({"ticket_id": tickets[0]["_id"]}) == 12


async def test_through_the_fake_concurrent_first_messages_open_one_ticket(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    phone = unique_phone()
    results = await asyncio.gather(*(evolution.inbound(conn["instance_name"], phone, f"m{i}") for i in range(8)))
    assert all(r["status_code"] == 200 for r in results)
    for r in results:
        await settled(db, r)
    assert await db.tickets.count_documents({"reseller_id": tenant.id}) == 1
    assert await db.messages.count_documents({"reseller_id": tenant.id}) == 8


async def test_from_me_is_recorded_as_outgoing_system_message(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    phone = unique_phone()
    await settled(db, await evolution.inbound(conn["instance_name"], phone, "oi"))
    result = await evolution.inbound(conn["instance_name"], phone, "respondido do celular", from_me=True)
    assert (await settled(db, result))["status"] == "processed", result
    msg = await db.messages.find_one({"_id": message_id_for(conn["id"], result["key_id"])})
    assert msg["direction"] == "out" and msg["sender_type"] == "system" and msg["status"] == "sent"
    assert await db.tickets.count_documents({"reseller_id": tenant.id}) == 1
    customer = await db.users.find_one({"reseller_id": tenant.id, "phone": phone})
    assert customer["name"] == "Cliente Fake"  # the phone owner's name never renames the client


async def test_unknown_unparseable_and_foreign_events_are_kept_raw_and_answered_2xx(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    headers = {"X-Webhook-Token": await _token(db, conn["id"])}
    url = f"{HOOK}/{conn['id']}"
    cases: list[tuple[Any, str, str | None]] = [
        ({"event": "contacts.upsert", "data": [{"remoteJid": "1@s.whatsapp.net"}]}, "ignored", None),
        (
            {"event": "messages.upsert", "data": {"key": {"remoteJid": "123@g.us", "id": "G1"}, "message": {}}},
            "ignored",
            None,
        ),
        ({"event": "messages.upsert", "data": {"pushName": "no key"}}, "failed", "without data.key"),
        ({"event": "connection.update", "data": {"state": "exploded"}}, "failed", "unknown connection state"),
        # a receipt for a message not known (yet): kept aside until it is, not an error
        ({"event": "messages.update", "data": {"keyId": "NOPE", "status": "READ"}}, "processed", None),
        (["not", "an", "object"], "failed", "not a JSON object"),
        ({"data": {}}, "failed", "no event"),
    ]
    for payload, outcome, error in cases:
        r = await client.post(url, json=payload, headers=headers)
        assert r.status_code == 200, (payload, r.text)
        raw = await settled(db, r)
        assert raw["status"] == outcome and json.loads(raw["body"]) == payload, (payload, raw)
        if error:
            assert error in raw["error"], raw["error"]
    assert (await db.receipts_parked.find_one({"_id": f"{conn['id']}:NOPE"}))["applied_at"] is None
    r = await client.post(url, content=b"{not json", headers={**headers, "Content-Type": "application/json"})
    assert r.status_code == 200
    raw = await settled(db, r)
    assert raw["status"] == "failed" and raw["body"] == "{not json" and "not JSON" in raw["error"]


async def test_bad_or_missing_secret_and_unknown_connection_get_the_same_401_and_store_nothing(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    other = await make_connection(client, await make_tenant(client, admin_headers, agents=0), evolution)
    payload = _upsert(unique_phone(), "3EB0SECRET")
    before = await db.webhook_events_raw.count_documents({})
    attempts = [
        (f"{HOOK}/{conn['id']}", {}),
        (f"{HOOK}/{conn['id']}", {"X-Webhook-Token": "wrong"}),
        (f"{HOOK}/{conn['id']}?t=wrong", {}),
        (f"{HOOK}/{conn['id']}", {"X-Webhook-Token": await _token(db, other["id"])}),
        (f"{HOOK}/000000000000000000000000", {"X-Webhook-Token": "wrong"}),
        (f"{HOOK}/not-an-id/messages-upsert", {"X-Webhook-Token": "wrong"}),
    ]
    bodies = set()
    for url, headers in attempts:
        r = await client.post(url, json=payload, headers=headers)
        assert r.status_code == 401, (url, r.text)
        bodies.add(r.text)
    assert len(bodies) == 1
    assert await db.webhook_events_raw.count_documents({}) == before
    assert await db.messages.count_documents({"reseller_id": tenant.id}) == 0


async def test_per_event_path_and_query_token(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    token = await _token(db, conn["id"])
    payload = _upsert(unique_phone(), "3EB0BYEVENT")
    del payload["event"]  # the path names it
    r = await client.post(f"{HOOK}/{conn['id']}/messages-upsert?t={token}", json=payload)
    assert r.status_code == 200 and (await settled(db, r))["status"] == "processed", r.text
    r = await client.post(
        f"{HOOK}/{conn['id']}/connection-update?t={token}", json={"data": {"state": "close", "statusReason": 401}}
    )
    assert r.status_code == 200 and (await settled(db, r))["status"] == "processed", r.text
    got = (await client.get(f"/api/v1/whatsapp-connections/{conn['id']}", headers=tenant.headers)).json()
    assert got["status"] == "close"


async def test_redelivery_after_finalize_does_not_open_a_new_ticket(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    headers = {"X-Webhook-Token": await _token(db, conn["id"])}
    phone = unique_phone()
    payload = _upsert(phone, "3EB0OLD" + phone)
    await settled(db, await client.post(f"{HOOK}/{conn['id']}", json=payload, headers=headers))
    ticket = await db.tickets.find_one({"reseller_id": tenant.id})
    r = await client.post(f"/api/v1/tickets/{ticket['_id']}/finalize", headers=tenant.headers)
    assert r.status_code == 200, r.text
    redelivered = await settled(db, await client.post(f"{HOOK}/{conn['id']}", json=payload, headers=headers))
    assert redelivered["result"] == ["duplicate"]
    assert await db.tickets.count_documents({"reseller_id": tenant.id}) == 1
    r = await client.post(f"{HOOK}/{conn['id']}", json=_upsert(phone, "3EB0NEW" + phone), headers=headers)
    assert (await settled(db, r))["status"] == "processed"
    assert await db.tickets.count_documents({"reseller_id": tenant.id}) == 2  # a new message: a new ticket


async def _thread(client: httpx.AsyncClient, headers: dict[str, str], ticket_id: str) -> list[tuple[str, str]]:
    r = await client.get(f"{API}/tickets/{ticket_id}/messages", params={"limit": 200}, headers=headers)
    assert r.status_code == 200, r.text
    return [(m["direction"], m["body"]) for m in r.json()["items"]]


async def _set_active(client: httpx.AsyncClient, tenant: Tenant, conn: dict[str, Any], active: bool) -> None:
    r = await client.patch(f"{API}/whatsapp-connections/{conn['id']}", json={"active": active}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["active"] is active, r.text


async def test_messages_to_an_inactive_connection_are_filed_and_shown_and_none_is_missing_after_reactivation(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """Deactivating a connection in IAZE does not log its number out at the provider: its clients
    keep writing, and each message is filed as on an active connection — into the client's open
    ticket (held by an agent here), or a new espera ticket in the connection's default department."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    (agent,) = tenant.agents
    conn = await make_connection(client, tenant, evolution)  # reads "open" before it returns
    held, new = unique_phone(), unique_phone()
    await settled(db, await evolution.inbound(conn["instance_name"], held, "Bom dia"))
    ticket = (await db.tickets.find_one({"reseller_id": tenant.id}))["_id"]
    await assume(client, agent["headers"], ticket)

    await _set_active(client, tenant, conn, False)
    for phone, text in ((held, "Meu endereço mudou, anote por favor"), (new, "alguém aí?")):
        result = await evolution.inbound(conn["instance_name"], phone, text, push_name="Joana")
        assert result["status_code"] == 200, result
        raw = await settled(db, result)
        assert raw["status"] == "processed", raw

    # The held conversation: the message is in its ticket, which its holder still holds.
    assert await _thread(client, agent["headers"], ticket) == [
        ("in", "Bom dia"),
        ("in", "Meu endereço mudou, anote por favor"),
    ]
    r = await client.get(f"{API}/tickets/{ticket}", headers=agent["headers"])
    assert (r.json()["status"], r.json()["agent_id"], r.json()["reply_blocked"]) == (
        "atendendo",
        agent["id"],
        "connection_inactive",
    )
    # Replies stay refused while the connection is inactive (nothing could reach the client).
    r = await client.post(f"{API}/tickets/{ticket}/messages", json={"body": "Anotado"}, headers=agent["headers"])
    assert r.status_code == 409 and r.json()["detail"]["reason"] == "connection_inactive", r.text

    # The new client: a new ticket in espera of the connection's default department, in the queue.
    r = await client.get(f"{API}/tickets", params={"status": "espera"}, headers=agent["headers"])
    newcomer = await db.users.find_one({"reseller_id": tenant.id, "phone": new})
    (opened,) = [t for t in r.json()["items"] if t["client_id"] == newcomer["_id"]]
    assert opened["department_id"] == conn["default_department_id"] and opened["agent_id"] is None
    assert await _thread(client, agent["headers"], opened["id"]) == [("in", "alguém aí?")]

    # Reactivated: nothing is missing, every delivery was processed, and the conversations go on.
    await _set_active(client, tenant, conn, True)
    await settled(db, await evolution.inbound(conn["instance_name"], held, "Obrigada"))
    await settled(db, await evolution.inbound(conn["instance_name"], new, "ainda estou aqui"))
    assert await _thread(client, agent["headers"], ticket) == [
        ("in", "Bom dia"),
        ("in", "Meu endereço mudou, anote por favor"),
        ("in", "Obrigada"),
    ]
    assert await _thread(client, agent["headers"], opened["id"]) == [("in", "alguém aí?"), ("in", "ainda estou aqui")]
    assert await db.tickets.count_documents({"reseller_id": tenant.id}) == 2
    raws = await db.webhook_events_raw.find({"connection_id": conn["id"], "event": "messages.upsert"}).to_list(None)
    assert sorted(r["status"] for r in raws) == ["processed"] * 5
    r = await client.post(f"{API}/tickets/{ticket}/messages", json={"body": "Anotado"}, headers=agent["headers"])
    assert r.status_code == 201, r.text


async def test_receipts_and_connection_changes_of_an_inactive_connection_are_recorded(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    (agent,) = tenant.agents
    conn = await make_connection(client, tenant, evolution)
    phone = unique_phone()
    await settled(db, await evolution.inbound(conn["instance_name"], phone, "oi"))
    ticket = (await db.tickets.find_one({"reseller_id": tenant.id}))["_id"]
    await assume(client, agent["headers"], ticket)
    r = await client.post(f"{API}/tickets/{ticket}/messages", json={"body": "Olá!"}, headers=agent["headers"])
    assert r.status_code == 201, r.text
    reply = r.json()["id"]

    async def sent() -> dict[str, Any] | None:
        doc: dict[str, Any] | None = await db.messages.find_one({"_id": reply, "status": "sent"})
        return doc

    key_id = (await wait_for(sent, timeout=30))["provider_message_id"]

    await _set_active(client, tenant, conn, False)
    result = await evolution.control(
        "POST", "receipt", {"instance": conn["instance_name"], "key_id": key_id, "status": "READ"}
    )
    assert (await settled(db, result))["status"] == "processed", result
    assert (await db.messages.find_one({"_id": reply}))["status"] == "read"
    await connection_state(evolution, db, conn, "close")  # the phone logged out: shown as such
    got = (await client.get(f"{API}/whatsapp-connections/{conn['id']}", headers=tenant.headers)).json()
    assert (got["active"], got["status"]) == (False, "close")


async def test_media_message_keeps_type_caption_and_media(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    result = await evolution.inbound(conn["instance_name"], unique_phone(), "foto do produto", image=True)
    await settled(db, result)
    msg = await db.messages.find_one({"_id": message_id_for(conn["id"], result["key_id"])})
    assert msg["type"] == "image" and msg["body"] == "foto do produto"
    # The message is stored at once; its bytes are fetched after it (this fake image has none
    # registered, so the fetch fails: tests/media covers the bytes).
    assert msg["media"]["mime"] == "image/jpeg" and msg["media"]["status"] in ("pending", "failed")
