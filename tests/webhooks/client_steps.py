"""Steps for tests that follow a client's conversation through the API: client messages posted to
a connection's webhook as the provider would, waited for until the in-app processor recorded the
outcome; where the client's ticket is; what a user's inbox lists and a thread shows."""

import uuid
from typing import Any

import httpx

from backend.webhooks.service import message_id_for
from tests.factories import API, collect_pages
from tests.webhooks.helpers import settled, text_upsert

HOOK = f"{API}/webhooks/whatsapp"


async def inbound(
    client: httpx.AsyncClient, db: Any, conn: dict[str, Any], phone: str, text: str
) -> tuple[dict[str, Any], str]:
    """Posts a client's text to the connection's webhook; returns (raw delivery once processed,
    the message id it is stored under when it is stored)."""
    key = "3EB0" + uuid.uuid4().hex[:16].upper()
    r = await client.post(
        f"{HOOK}/{conn['_id']}",
        json=text_upsert(phone, key, text, stamped=True),
        headers={"X-Webhook-Token": conn["webhook_token"]},
    )
    assert r.status_code == 200, r.text  # acknowledged: from here on the product promises it is not lost
    return await settled(db, r), message_id_for(conn["_id"], key)


async def ticket_of_phone(db: Any, reseller_id: str, phone: str) -> dict[str, Any]:
    customer = await db.users.find_one({"reseller_id": reseller_id, "role": "client", "phone": phone})
    assert customer is not None
    docs = await db.tickets.find({"client_id": customer["_id"]}).to_list(None)
    assert len(docs) == 1, docs
    return dict(docs[0])


async def visible_ids(client: httpx.AsyncClient, headers: dict[str, str]) -> set[str]:
    """Every ticket id the user's inbox lists, over the three tabs."""
    seen: set[str] = set()
    for status in ("espera", "atendendo", "finalizado"):
        seen |= {t["id"] for t in await collect_pages(client, headers, f"{API}/tickets", status=status)}
    return seen


async def thread_bodies(client: httpx.AsyncClient, headers: dict[str, str], ticket_id: str) -> list[str]:
    r = await client.get(f"{API}/tickets/{ticket_id}/messages", params={"limit": 200}, headers=headers)
    assert r.status_code == 200, r.text
    return [m["body"] for m in r.json()["items"]]
