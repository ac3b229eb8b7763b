"""An agent taken out of a department (PATCH /users/{id} {"department_ids": [...]}) while it
holds a ticket of that department in atendendo.

The holder keeps the ticket — it still sees it, receives the client's
new messages in it, answers, transfers and finalizes it — while the department's waiting queue
is no longer shown to it. Nobody loses the conversation. (Zammad would instead take the ticket
out of the agent's sight with the group access; Chatwoot unassigns on removal from the inbox.
Keeping the holder is a defensible choice: the client keeps talking to the same person.)"""

from typing import Any

import httpx

from tests.factories import API, assume, make_department, make_open_connection, make_tenant, unique_phone
from tests.webhooks.client_steps import inbound, thread_bodies, ticket_of_phone, visible_ids


async def test_the_holder_keeps_and_can_work_a_ticket_of_a_department_it_left(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, departments=1, agents=2)
    first = tenant.departments[0]["id"]
    second = (await make_department(client, tenant))["id"]
    holder, colleague = tenant.agents
    conn = await make_open_connection(client, tenant, db)
    held_phone, waiting_phone = unique_phone(), unique_phone()
    await inbound(client, db, conn, held_phone, "Preciso de suporte")
    await inbound(client, db, conn, waiting_phone, "Também preciso")
    held = (await ticket_of_phone(db, tenant.id, held_phone))["_id"]
    waiting = (await ticket_of_phone(db, tenant.id, waiting_phone))["_id"]
    await assume(client, holder["headers"], held)

    r = await client.patch(f"{API}/users/{holder['id']}", json={"department_ids": [second]}, headers=tenant.headers)
    assert r.status_code == 200, r.text

    raw, _ = await inbound(client, db, conn, held_phone, "Mais uma coisa")
    assert raw["status"] == "processed"
    seen = await visible_ids(client, holder["headers"])
    assert held in seen and waiting not in seen  # its ticket stays, the old queue goes
    assert "Mais uma coisa" in await thread_bodies(client, holder["headers"], held)
    r = await client.post(f"{API}/tickets/{held}/messages", json={"body": "Certo"}, headers=holder["headers"])
    assert r.status_code in (200, 201), r.text
    # The colleague still has the department's queue.
    assert waiting in await visible_ids(client, colleague["headers"])
    # The holder can still hand it back to the department it left, or finalize it.
    r = await client.post(f"{API}/tickets/{held}/transfer", json={"department_id": first}, headers=holder["headers"])
    assert r.status_code == 200, r.text
    assert held in await visible_ids(client, colleague["headers"])
