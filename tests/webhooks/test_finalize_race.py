"""Through the real webhook path (route, stored delivery, processor, intake): a WhatsApp message
that arrives while the agent presses Finalizar lands in the client's next ticket."""

from typing import Any

import httpx
import pytest

from backend.messages import service as messages
from backend.tickets.models import Ticket
from backend.webhooks.service import message_id_for
from tests.factories import API, make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection
from tests.webhooks.helpers import settled
from tests.webhooks.helpers import text_upsert as _upsert

HOOK = "/api/v1/webhooks/whatsapp"


async def test_a_whatsapp_message_racing_the_finalize_opens_the_next_ticket(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    phone = unique_phone()
    token = (await db.whatsapp_connections.find_one({"_id": conn["id"]}))["webhook_token"]
    headers = {"X-Webhook-Token": token}

    first = await client.post(f"{HOOK}/{conn['id']}", json=_upsert(phone, f"A{phone}", "oi"), headers=headers)
    assert (await settled(db, first))["status"] == "processed"
    opened = await db.messages.find_one({"_id": message_id_for(conn["id"], f"A{phone}")})
    ticket_id = opened["ticket_id"]
    agent = tenant.agents[0]
    assert (await client.post(f"{API}/tickets/{ticket_id}/assume", headers=agent["headers"])).status_code == 200

    original = messages.append

    async def finalize_then_append(db_: Any, ticket: Ticket, **kwargs: Any) -> Any:
        if ticket.id == ticket_id:  # the processor found the ticket open: Finalizar now
            r = await client.post(f"{API}/tickets/{ticket_id}/finalize", headers=agent["headers"])
            assert r.status_code == 200, r.text
        return await original(db_, ticket, **kwargs)

    monkeypatch.setattr(messages, "append", finalize_then_append)
    second = await client.post(
        f"{HOOK}/{conn['id']}", json=_upsert(phone, f"B{phone}", "espera, mais uma coisa"), headers=headers
    )
    raw = await settled(db, second)
    monkeypatch.undo()

    assert raw["status"] == "processed", raw
    raced = await db.messages.find_one({"_id": message_id_for(conn["id"], f"B{phone}")})
    new_id = raced["ticket_id"]
    assert new_id != ticket_id and raced["moved_from_ticket_id"] == ticket_id
    assert raw["result"] == [f"message {raced['_id']} in ticket {new_id}"]
    r = await client.get(f"{API}/tickets/{ticket_id}", headers=tenant.headers)
    assert r.json()["status"] == "finalizado"
    # The new ticket waits in the department's queue, with the message in it.
    r = await client.get(f"{API}/tickets", params={"status": "espera"}, headers=agent["headers"])
    queue = {t["id"]: t for t in r.json()["items"]}
    assert queue[new_id]["channel"] == conn["id"] and queue[new_id]["last_message_preview"] == "espera, mais uma coisa"
    r = await client.get(f"{API}/tickets/{new_id}/messages", headers=agent["headers"])
    assert [m["id"] for m in r.json()["items"]] == [raced["_id"]]
    records = await db.tenant_events.find({"type": "message.created", "message.id": raced["_id"]}).to_list(None)
    assert records and {(rec["ticket"]["id"], rec["message"]["ticket_id"]) for rec in records} == {(new_id, new_id)}
