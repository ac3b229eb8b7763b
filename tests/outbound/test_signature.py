"""The reseller's signature setting (issue 17 item 6): with it on (the default) an agent's
WhatsApp reply reaches the provider as "*<agent name>:*", a line break, the text — and the
stored message, which the thread shows, is exactly that text; with it off, the bare text.
Internal notes and the automatic messages are never signed."""

from typing import Any

import httpx

from tests.factories import make_tenant
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.outbound.helpers import held_ticket


async def _sent_to(evolution: FakeEvolution, phone: str) -> list[dict[str, Any]]:
    return [s for s in await evolution.sent() if s["number"] == phone]


async def _reply(client: httpx.AsyncClient, ticket_id: str, agent: dict[str, str], body: str) -> dict[str, Any]:
    r = await client.post(f"/api/v1/tickets/{ticket_id}/messages", json={"body": body}, headers=agent)
    assert r.status_code == 201, r.text
    reply: dict[str, Any] = r.json()
    return reply


async def test_replies_are_signed_with_the_agents_name_by_default_and_not_once_turned_off(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    name = tenant.agents[0]["name"]
    config = (await client.get("/api/v1/reseller-config", headers=tenant.headers)).json()
    assert config["signature_enabled"] is True
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)

    signed = await _reply(client, ticket_id, agent, "Bom dia! Como posso ajudar?")
    want = f"*{name}:*\nBom dia! Como posso ajudar?"
    assert signed["body"] == want
    sent = await wait_for(lambda: _sent_to(evolution, phone))
    assert [s["text"] for s in sent] == [want]

    r = await client.patch("/api/v1/reseller-config", json={"signature_enabled": False}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["signature_enabled"] is False, r.text
    bare = await _reply(client, ticket_id, agent, "Pode me enviar o pedido?")
    assert bare["body"] == "Pode me enviar o pedido?"

    async def both() -> list[dict[str, Any]] | None:
        found = await _sent_to(evolution, phone)
        return found if len(found) == 2 else None

    assert [s["text"] for s in await wait_for(both)] == [want, "Pode me enviar o pedido?"]
    # The thread shows each message exactly as the client received it.
    thread = (await client.get(f"/api/v1/tickets/{ticket_id}/messages", headers=agent)).json()["items"]
    assert [m["body"] for m in thread if m["direction"] == "out"] == [want, "Pode me enviar o pedido?"]
    stored = await db.messages.find({"ticket_id": ticket_id, "direction": "out"}).sort("created_at", 1).to_list(None)
    assert [m["body"] for m in stored] == [want, "Pode me enviar o pedido?"]


async def test_internal_notes_are_never_signed_nor_sent(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    r = await client.post(f"/api/v1/tickets/{ticket_id}/notes", json={"body": "cliente VIP"}, headers=agent)
    assert r.status_code == 201, r.text
    assert r.json()["body"] == "cliente VIP"
    # A reply after the note: once it reached the provider, the note (written before it) did not.
    await _reply(client, ticket_id, agent, "Olá!")
    sent = await wait_for(lambda: _sent_to(evolution, phone))
    assert [s["text"] for s in sent] == [f"*{tenant.agents[0]['name']}:*\nOlá!"]


def test_a_signature_keeps_the_bold_markup_intact() -> None:
    from backend.messages.service import signed

    assert signed("Ana", "Oi") == "*Ana:*\nOi"
    assert signed("*Ana*  Maria", "Oi") == "*Ana Maria:*\nOi"
    assert signed("**", "Oi") == "Oi"
