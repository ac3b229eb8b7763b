"""Issue 16 item 5, against the fake Evolution as its own process: a conversation an agent (or
the owner) starts on a WhatsApp connection reaches the client as the agent's signed message, the
client's answer lands in the same ticket, a number not on WhatsApp shows as a failed send with
that reason, and a ticket that cannot reach its client refuses replies instead of showing them
as sent."""

from typing import Any

import httpx
import pytest

from backend.connections.providers.base import NOT_ON_WHATSAPP
from backend.tickets import intake
from backend.tickets import service as tickets_service
from tests.factories import API, Tenant, make_client, make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.outbound.helpers import held_ticket
from tests.webhooks.helpers import settled


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


@pytest.fixture(scope="module")
async def conn(client: httpx.AsyncClient, tenant: Tenant, evolution: FakeEvolution) -> dict[str, Any]:
    return await make_connection(client, tenant, evolution)  # open as stored (make_connection)


async def _start(
    client: httpx.AsyncClient, tenant: Tenant, headers: dict[str, str], *, phone: str, conn_id: str, text: str
) -> httpx.Response:
    customer = await make_client(client, tenant, phone=phone)
    body = {
        "client_id": customer["id"],
        "department_id": tenant.departments[0]["id"],
        "message": text,
        "connection_id": conn_id,
    }
    return await client.post(f"{API}/tickets", json=body, headers=headers)


async def _thread(client: httpx.AsyncClient, headers: dict[str, str], ticket_id: str) -> list[dict[str, Any]]:
    r = await client.get(f"{API}/tickets/{ticket_id}/messages", headers=headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


@pytest.mark.parametrize("who", ["agent", "owner"])
async def test_started_conversation_reaches_the_client_and_the_answer_lands_in_the_same_ticket(
    client: httpx.AsyncClient, tenant: Tenant, conn: dict[str, Any], evolution: FakeEvolution, db: Any, who: str
) -> None:
    person = tenant.agents[0] if who == "agent" else None
    headers = person["headers"] if person else tenant.headers
    person_id = person["id"] if person else tenant.owner_id
    phone = unique_phone()
    r = await _start(client, tenant, headers, phone=phone, conn_id=conn["id"], text="Seu pedido chegou")
    assert r.status_code == 201, r.text
    ticket = r.json()
    assert ticket["status"] == "atendendo" and ticket["agent_id"] == person_id
    assert ticket["channel"] == conn["id"] and ticket["reply_blocked"] is None

    first = (await _thread(client, headers, ticket["id"]))[0]
    assert (first["direction"], first["sender_type"], first["sender_id"]) == ("out", "agent", person_id)
    assert first["body"].endswith("\nSeu pedido chegou") and first["body"].startswith("*")  # signed

    async def sent() -> list[dict[str, Any]]:
        return [s for s in await evolution.sent() if s["number"] == phone]

    delivered = await wait_for(sent)
    assert [s["text"] for s in delivered] == [first["body"]]

    async def sent_status() -> bool:
        return (await _thread(client, headers, ticket["id"]))[0]["status"] == "sent"

    await wait_for(sent_status)

    result = await evolution.inbound(conn["instance_name"], phone, "Obrigado!")
    assert (await settled(db, result))["status"] == "processed", result
    thread = await _thread(client, headers, ticket["id"])
    assert [(m["direction"], m["body"]) for m in thread][-1] == ("in", "Obrigado!")
    # One ticket for the client on this connection, and the echo of our send was not stored twice.
    assert await db.tickets.count_documents({"client_id": ticket["client_id"]}) == 1
    assert [m["direction"] for m in thread] == ["out", "in"]


async def test_number_not_on_whatsapp_shows_as_failed_with_that_reason(
    client: httpx.AsyncClient, tenant: Tenant, conn: dict[str, Any], evolution: FakeEvolution
) -> None:
    phone = unique_phone()
    await evolution.control("POST", "not-on-whatsapp", {"numbers": [phone]})
    r = await _start(client, tenant, tenant.headers, phone=phone, conn_id=conn["id"], text="Olá")
    assert r.status_code == 201, r.text
    ticket_id = r.json()["id"]

    async def failed() -> dict[str, Any] | None:
        first = (await _thread(client, tenant.headers, ticket_id))[0]
        return first if first["status"] == "failed" else None

    message = await wait_for(failed)
    assert message["failure_reason"] == NOT_ON_WHATSAPP
    assert not [s for s in await evolution.sent() if s["number"] == phone]


async def test_start_refuses_bad_input_and_changes_nothing(
    client: httpx.AsyncClient,
    tenant: Tenant,
    conn: dict[str, Any],
    evolution: FakeEvolution,
    admin_headers: dict[str, str],
    db: Any,
) -> None:
    other = await make_tenant(client, admin_headers, agents=0)
    foreign = await make_connection(client, other, evolution)
    phone = unique_phone()
    r = await _start(client, tenant, tenant.headers, phone=phone, conn_id=foreign["id"], text="Olá")
    assert r.status_code == 404, r.text  # another tenant's connection does not exist for us
    customer = await db.users.find_one({"reseller_id": tenant.id, "phone": phone})
    body = {"client_id": str(customer["_id"]), "department_id": tenant.departments[0]["id"], "message": "Olá"}
    r = await client.post(f"{API}/tickets", json={**body, "connection_id": "x"}, headers=tenant.headers)
    assert r.status_code == 422, r.text
    closed = await make_connection(client, tenant, evolution, open_=False)
    r = await client.post(f"{API}/tickets", json={**body, "connection_id": closed["id"]}, headers=tenant.headers)
    assert r.status_code == 409 and r.json()["detail"]["reason"] == "connection_disconnected", r.text
    assert await db.tickets.count_documents({"client_id": str(customer["_id"])}) == 0
    # A client with an open ticket on the connection: 409 naming it, nothing sent twice.
    r = await client.post(f"{API}/tickets", json={**body, "connection_id": conn["id"]}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    again = await client.post(f"{API}/tickets", json={**body, "connection_id": conn["id"]}, headers=tenant.headers)
    assert again.status_code == 409 and again.json()["detail"]["ticket_id"] == r.json()["id"], again.text
    assert len(await _thread(client, tenant.headers, r.json()["id"])) == 1


async def test_client_message_racing_the_start_leaves_one_ticket_and_sends_nothing(
    client: httpx.AsyncClient,
    tenant: Tenant,
    conn: dict[str, Any],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client writes in after the start was validated, before its ticket is claimed: the
    client's message opens the ticket (espera), the start answers 409 naming it, and nothing is
    queued to send."""
    phone = unique_phone()
    customer = await make_client(client, tenant, phone=phone)
    real = tickets_service.open_for_client
    raced: list[str] = []

    async def client_first(*args: Any, **kwargs: Any) -> Any:
        # The start's own call (an agent's opening), not the client message's inside it.
        started = isinstance(kwargs.get("opening"), tickets_service.Opening) and kwargs["opening"].agent_id
        if started and not raced:
            result = await evolution.inbound(conn["instance_name"], phone, "oi, alguém?")
            raced.append((await settled(db, result))["status"])
        return await real(*args, **kwargs)

    monkeypatch.setattr(intake.tickets, "open_for_client", client_first)
    body = {
        "client_id": customer["id"],
        "department_id": tenant.departments[0]["id"],
        "message": "Olá!",
        "connection_id": conn["id"],
    }
    r = await client.post(f"{API}/tickets", json=body, headers=tenant.agents[0]["headers"])
    assert raced == ["processed"]
    assert r.status_code == 409, r.text
    docs = await db.tickets.find({"client_id": customer["id"]}).to_list(length=None)
    assert [d["_id"] for d in docs] == [r.json()["detail"]["ticket_id"]] and docs[0]["status"] == "espera"
    thread = await _thread(client, tenant.headers, docs[0]["_id"])
    assert [(m["direction"], m["body"]) for m in thread] == [("in", "oi, alguém?")]
    assert await db.outbox.count_documents({"ticket_id": docs[0]["_id"]}) == 0


async def test_reply_refused_with_the_reason_when_nothing_reaches_the_client(
    client: httpx.AsyncClient, tenant: Tenant, evolution: FakeEvolution, db: Any
) -> None:
    # A ticket opened without a connection: its first words are a note, and replies are refused.
    customer = await make_client(client, tenant)
    body = {"client_id": customer["id"], "department_id": tenant.departments[0]["id"], "message": "ligou"}
    r = await client.post(f"{API}/tickets", json=body, headers=tenant.headers)
    assert r.status_code == 201 and r.json()["reply_blocked"] == "no_connection", r.text
    api_ticket = r.json()["id"]
    agent = tenant.agents[0]["headers"]
    assert (await client.post(f"{API}/tickets/{api_ticket}/assume", headers=agent)).status_code == 200
    r = await client.post(f"{API}/tickets/{api_ticket}/messages", json={"body": "oi"}, headers=agent)
    assert r.status_code == 409 and r.json()["detail"]["reason"] == "no_connection", r.text
    assert [m["direction"] for m in await _thread(client, agent, api_ticket)] == ["note"]

    # A WhatsApp ticket whose connection is disconnected, then deactivated.
    own = await make_connection(client, tenant, evolution)
    ticket_id, _, agent = await held_ticket(client, tenant, evolution, own, db)
    before = len(await _thread(client, agent, ticket_id))
    result = await evolution.control("POST", "state", {"instance": own["instance_name"], "state": "close"})
    assert result["status_code"] == 200, result

    async def blocked() -> str | None:
        got = await client.get(f"{API}/tickets/{ticket_id}", headers=agent)
        reason: str | None = got.json()["reply_blocked"]
        return reason

    assert await wait_for(blocked) == "connection_disconnected"
    r = await client.post(f"{API}/tickets/{ticket_id}/messages", json={"body": "oi"}, headers=agent)
    assert r.status_code == 409 and r.json()["detail"]["reason"] == "connection_disconnected", r.text
    r = await client.patch(f"{API}/whatsapp-connections/{own['id']}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    r = await client.post(f"{API}/tickets/{ticket_id}/messages", json={"body": "oi"}, headers=agent)
    assert r.status_code == 409 and r.json()["detail"]["reason"] == "connection_inactive", r.text
    assert len(await _thread(client, agent, ticket_id)) == before


async def test_owner_answers_a_ticket_it_assumed(
    client: httpx.AsyncClient, tenant: Tenant, conn: dict[str, Any], evolution: FakeEvolution, db: Any
) -> None:
    phone = unique_phone()
    result = await evolution.inbound(conn["instance_name"], phone, "Preciso de ajuda")
    assert (await settled(db, result))["status"] == "processed", result
    customer = await db.users.find_one({"reseller_id": tenant.id, "phone": phone})
    ticket = await db.tickets.find_one({"client_id": customer["_id"]})
    r = await client.post(f"{API}/tickets/{ticket['_id']}/assume", headers=tenant.headers)
    assert r.status_code == 200, r.text
    r = await client.post(f"{API}/tickets/{ticket['_id']}/messages", json={"body": "Já vejo"}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    assert r.json()["sender_id"] == tenant.owner_id

    async def sent() -> list[dict[str, Any]]:
        return [s for s in await evolution.sent() if s["number"] == phone]

    assert (await wait_for(sent))[0]["text"].endswith("\nJá vejo")


async def test_agents_list_their_tenants_connections_without_the_qr_code(
    client: httpx.AsyncClient, tenant: Tenant, evolution: FakeEvolution, admin_headers: dict[str, str]
) -> None:
    pending = await make_connection(client, tenant, evolution, open_=False)
    r = await client.get(f"{API}/whatsapp-connections", headers=tenant.agents[0]["headers"])
    assert r.status_code == 200, r.text
    listed = {c["id"]: c for c in r.json()["items"]}
    assert pending["id"] in listed and listed[pending["id"]]["qr_code"] is None
    # The owner still sees the QR code to pair the phone; another tenant's agent sees none of these.
    owner = (await client.get(f"{API}/whatsapp-connections", headers=tenant.headers)).json()["items"]
    assert next(c for c in owner if c["id"] == pending["id"])["qr_code"]
    other = await make_tenant(client, admin_headers, agents=1)
    r = await client.get(f"{API}/whatsapp-connections", headers=other.agents[0]["headers"])
    assert r.status_code == 200 and r.json()["items"] == []
