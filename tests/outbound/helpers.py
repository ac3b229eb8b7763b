from typing import Any

import httpx

from tests.factories import Tenant, unique_phone
from tests.fakes.harness import FakeEvolution
from tests.webhooks.helpers import settled


async def held_ticket(
    client: httpx.AsyncClient, tenant: Tenant, evolution: FakeEvolution, conn: dict[str, Any], db: Any
) -> tuple[str, str, dict[str, str]]:
    """A client writes in over WhatsApp and the first agent assumes the ticket.
    Returns (ticket id, client phone, agent headers)."""
    phone = unique_phone()
    result = await evolution.inbound(conn["instance_name"], phone, "Olá, preciso de ajuda")
    assert (await settled(db, result))["status"] == "processed", result
    customer = await db.users.find_one({"reseller_id": tenant.id, "phone": phone})
    ticket = await db.tickets.find_one({"client_id": customer["_id"], "status": "espera"})
    agent = tenant.agents[0]["headers"]
    r = await client.post(f"/api/v1/tickets/{ticket['_id']}/assume", headers=agent)
    assert r.status_code == 200, r.text
    return str(ticket["_id"]), phone, agent
