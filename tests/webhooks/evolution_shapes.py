"""Evolution API v2 (2.3.6, Baileys 7.0.0-rc.6) webhook payloads as Evolution really posts them,
posted through the real webhook endpoint, and what an agent then sees through the API.

Shapes follow EvolutionAPI/evolution-api
src/api/integrations/channel/whatsapp/whatsapp.baileys.service.ts (`prepareMessage`, the
`messages.upsert` / `messages.update` handlers, `connectionUpdate`) and
src/api/integrations/event/webhook/webhook.controller.ts (the envelope). `prepareMessage` keeps
the message as Baileys decoded it: `messageType` is Baileys' getContentType (the first key that
is 'conversation' or contains 'Message'), so wrappers such as ephemeralMessage / viewOnceMessageV2
arrive wrapped; only a top-level extendedTextMessage / documentWithCaptionMessage is rewritten.

(Started as tests/audit_evolution/helpers.py, which the audit's remaining tests still use.)"""

import uuid
from typing import Any

import httpx

from tests.factories import API, Tenant
from tests.webhooks.helpers import settled

HOOK = "/api/v1/webhooks/whatsapp"
OWNER = "5511900000000"  # the connection's own number (the fake's default)
MEDIA_KINDS = {"image", "video", "audio", "document", "sticker", "location", "contact"}


def key_id() -> str:
    return "3A" + uuid.uuid4().hex[:18].upper()  # a phone-made id (Baileys' own start with 3EB0)


def envelope(event: str, data: Any, instance: str = "inst") -> dict[str, Any]:
    """webhook.controller.ts `webhookData`: the event keeps its dotted name."""
    return {
        "event": event,
        "instance": instance,
        "data": data,
        "destination": "http://iaze/webhook",
        "date_time": "2025-10-21T11:40:39.000Z",
        "sender": f"{OWNER}@s.whatsapp.net",
        "server_url": "http://evolution:8080",
        "apikey": "instance-token",
    }


def upsert(
    key: dict[str, Any],
    message: dict[str, Any],
    message_type: str,
    *,
    push_name: str = "Maria",
    context_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """prepareMessage(): key as Baileys made it, message as received, messageType =
    getContentType(message) (Evolution writes "unknown" when there is none)."""
    data = {
        "key": key,
        "pushName": push_name,
        "status": "DELIVERY_ACK",
        "message": message,
        "contextInfo": context_info,
        "messageType": message_type,
        "messageTimestamp": 1_760_000_000,
        "instanceId": "7c1f1d7e-0000-4000-8000-000000000000",
        "source": "android",
    }
    return envelope("messages.upsert", data)


def pn_key(phone: str, kid: str | None = None, *, from_me: bool = False) -> dict[str, Any]:
    return {"remoteJid": f"{phone}@s.whatsapp.net", "fromMe": from_me, "id": kid or key_id(), "addressingMode": "pn"}


def ephemeral(text: str) -> dict[str, Any]:
    """A text in a chat with disappearing messages on: WhatsApp sends an extended text carrying
    the chat's timer, inside ephemeralMessage."""
    part = {"text": text, "contextInfo": {"expiration": 86400}}
    return {
        "messageContextInfo": {"messageSecret": "c2VjcmV0"},
        "ephemeralMessage": {"message": {"extendedTextMessage": part}},
    }


async def token(db: Any, connection_id: str) -> str:
    doc = await db.whatsapp_connections.find_one({"_id": connection_id})
    return str(doc["webhook_token"])


async def post(client: httpx.AsyncClient, db: Any, conn: dict[str, Any], payload: Any) -> dict[str, Any]:
    """Posts like Evolution (webhook_by_events off) and waits for the processor's outcome."""
    r = await client.post(
        f"{HOOK}/{conn['id']}", json=payload, headers={"X-Webhook-Token": await token(db, conn["id"])}
    )
    assert r.status_code == 200, r.text
    return await settled(db, r)


async def tickets_of(client: httpx.AsyncClient, tenant: Tenant) -> list[dict[str, Any]]:
    """Every ticket the tenant's owner sees, any state."""
    found: list[dict[str, Any]] = []
    for status in ("espera", "atendendo", "finalizado"):
        r = await client.get(f"{API}/tickets", params={"status": status}, headers=tenant.headers)
        assert r.status_code == 200, r.text
        found.extend(r.json()["items"])
    return found


async def clients_of(client: httpx.AsyncClient, tenant: Tenant) -> list[dict[str, Any]]:
    """The tenant's clients as its owner lists them."""
    r = await client.get(f"{API}/clients", headers=tenant.headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def thread(client: httpx.AsyncClient, tenant: Tenant, ticket_id: str) -> list[dict[str, Any]]:
    r = await client.get(f"{API}/tickets/{ticket_id}/messages", headers=tenant.headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def all_messages(client: httpx.AsyncClient, tenant: Tenant) -> list[dict[str, Any]]:
    """Every message in every ticket the owner can open (what any agent could ever see)."""
    out: list[dict[str, Any]] = []
    for t in await tickets_of(client, tenant):
        out.extend(await thread(client, tenant, t["id"]))
    return out


def shown(messages: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(direction, type, body) as the thread shows them."""
    return [(m["direction"], m["type"], m["body"]) for m in messages]
