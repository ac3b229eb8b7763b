"""A reseller (tenant) deactivated by the admin, then reactivated.

The tenant's WhatsApp keeps being processed while it is inactive —
its staff cannot sign in — and every message that arrived meanwhile is in its ticket, unread,
for the owner and agents once the tenant is reactivated and they sign in again."""

from typing import Any

import httpx

from tests.factories import API, login, make_open_connection, make_tenant, unique_phone
from tests.webhooks.client_steps import inbound, thread_bodies, ticket_of_phone, visible_ids


async def test_messages_received_while_the_tenant_was_inactive_are_there_after_reactivation(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, departments=1, agents=1)
    (agent,) = tenant.agents
    conn = await make_open_connection(client, tenant, db)
    phone = unique_phone()
    await inbound(client, db, conn, phone, "Antes da suspensão")
    ticket_id = (await ticket_of_phone(db, tenant.id, phone))["_id"]

    r = await client.patch(f"{API}/resellers/{tenant.id}", json={"active": False}, headers=admin_headers)
    assert r.status_code == 200, r.text
    assert (await client.get(f"{API}/auth/me", headers=tenant.headers)).status_code == 401

    raw, message_id = await inbound(client, db, conn, phone, "Durante a suspensão")
    assert raw["status"] == "processed", raw
    other_phone = unique_phone()
    raw, _ = await inbound(client, db, conn, other_phone, "Cliente novo durante a suspensão")
    assert raw["status"] == "processed", raw

    r = await client.patch(f"{API}/resellers/{tenant.id}", json={"active": True}, headers=admin_headers)
    assert r.status_code == 200, r.text
    owner_email = (await client.get(f"{API}/resellers/{tenant.id}", headers=admin_headers)).json()["owner_email"]
    owner = await login(client, owner_email, "owner-pass-1")
    agent_headers = await login(client, agent["email"], "agent-pass-1")
    assert "Durante a suspensão" in await thread_bodies(client, owner, ticket_id)
    assert (await db.messages.find_one({"_id": message_id}))["ticket_id"] == ticket_id
    new_ticket = (await ticket_of_phone(db, tenant.id, other_phone))["_id"]
    assert {ticket_id, new_ticket} <= await visible_ids(client, agent_headers)
    r = await client.get(f"{API}/tickets/{ticket_id}", headers=agent_headers)
    assert r.json()["unread_count"] >= 2
