"""What a provider (or whoever holds a connection's token) may send that the store cannot take as
is: every delivery is kept raw as it arrived, every message is kept (cleaned, within the API's
limits), and no client or ticket is ever written without its message."""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from backend.webhooks import sanitize
from backend.webhooks.service import message_id_for
from tests.factories import Tenant, make_tenant, unique, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection
from tests.webhooks.helpers import settled

HOOK = "/api/v1/webhooks/whatsapp"
API_LIMIT = 4096
WEBHOOK_LIMIT = 512 * 1024


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"MAX_BODY_BYTES": API_LIMIT, "WEBHOOK_MAX_BODY_BYTES": WEBHOOK_LIMIT}


class Hook:
    def __init__(self, tenant: Tenant, conn: dict[str, Any], token: str) -> None:
        self.tenant = tenant
        self.conn = conn
        self.url = f"{HOOK}/{conn['id']}"
        self.headers = {"X-Webhook-Token": token, "Content-Type": "application/json"}


@pytest.fixture(scope="module")
async def hook(client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any) -> Hook:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    doc = await db.whatsapp_connections.find_one({"_id": conn["id"]})
    return Hook(tenant, conn, str(doc["webhook_token"]))


def upsert(phone: str, key_id: str, message: dict[str, Any], **item: Any) -> dict[str, Any]:
    data = {
        "key": {"remoteJid": f"{phone}@s.whatsapp.net", "fromMe": False, "id": key_id},
        "pushName": "Maria",
        "message": message,
        "messageType": next(iter(message)),
        "messageTimestamp": 1_700_000_000,
        **item,
    }
    return {"event": "messages.upsert", "instance": "x", "data": data}


async def post(client: httpx.AsyncClient, hook: Hook, payload: Any) -> httpx.Response:
    # json.dumps escapes lone surrogates as \\udXXX, as a provider's JSON encoder does.
    return await client.post(hook.url, content=json.dumps(payload).encode(), headers=hook.headers)


async def tickets_without_a_message(db: Any, reseller_id: str) -> list[str]:
    orphans = []
    async for ticket in db.tickets.find({"reseller_id": reseller_id}):
        if await db.messages.count_documents({"ticket_id": ticket["_id"]}) == 0:
            orphans.append(ticket["_id"])
    return orphans


async def delivered(client: httpx.AsyncClient, db: Any, hook: Hook, payload: dict[str, Any]) -> dict[str, Any]:
    """Posts one message delivery and returns its stored message; the raw event must be processed
    and hold exactly what was sent."""
    body = json.dumps(payload)
    r = await client.post(hook.url, content=body.encode(), headers=hook.headers)
    assert r.status_code == 200, r.text
    raw = await settled(db, r)
    assert raw["status"] == "processed", raw
    assert raw["body"] == body  # the raw event keeps the delivery as it arrived
    key_id = payload["data"]["key"]["id"]
    msg = await db.messages.find_one({"_id": message_id_for(hook.conn["id"], sanitize.provider_id(key_id))})
    assert msg is not None, raw
    assert await tickets_without_a_message(db, hook.tenant.id) == []
    return dict(msg)


async def test_json_nested_past_the_parser_is_stored_raw_and_failed_with_the_reason(
    client: httpx.AsyncClient, hook: Hook, db: Any
) -> None:
    body = '{"event": "messages.upsert", "data": ' + "[" * 100_000 + "]" * 100_000 + "}"
    r = await client.post(hook.url, content=body.encode(), headers=hook.headers)
    assert r.status_code == 200, r.text
    raw = await settled(db, r)
    assert raw["status"] == "failed" and raw["body"] == body
    assert "nested deeper than the parser reads" in raw["error"], raw["error"]


async def test_lone_surrogates_and_nul_in_text_and_name_keep_the_message(
    client: httpx.AsyncClient, hook: Hook, db: Any
) -> None:
    phone = unique_phone()
    payload = upsert(phone, unique("SUR"), {"conversation": "oi \ud800 tudo\x00 bem \udfff"}, pushName="Ana \udc00")
    msg = await delivered(client, db, hook, payload)
    assert msg["body"] == "oi \ufffd tudo bem \ufffd" and msg["type"] == "text"
    customer = await db.users.find_one({"_id": msg["sender_id"]})
    assert customer["name"] == "Ana \ufffd" and customer["phone"] == phone
    # A surrogate in the provider's message id: the same id every time, so a redelivery is one message.
    key_id = "3EB0\ud800X" + unique("")
    first = await delivered(client, db, hook, upsert(phone, key_id, {"conversation": "um"}))
    again = await post(client, hook, upsert(phone, key_id, {"conversation": "um"}))
    assert (await settled(db, again))["result"] == ["duplicate"]
    assert await db.messages.count_documents({"ticket_id": first["ticket_id"], "body": "um"}) == 1


async def test_media_fields_with_operator_keys_keep_the_message(client: httpx.AsyncClient, hook: Hook, db: Any) -> None:
    image = {
        "url": {"$where": "sleep(1000)"},
        "mimetype": "image/jpeg",
        "caption": "foto \ud800",
        "mediaKey": {"$binary": {"base64": "AA==", "subType": "00"}, "a.b": [1, {"$gt": ""}]},
        "fileLength": 10**30,
        "seconds": float("nan"),
        "fileName": "$evil.jpg",
    }
    msg = await delivered(client, db, hook, upsert(unique_phone(), unique("MED"), {"imageMessage": image}))
    assert msg["type"] == "image" and msg["body"] == "foto \ufffd"
    media = msg["media"]
    # Only what the message shows is kept (the raw event keeps the rest): no provider object
    # becomes a field, a number past int64 is text, NaN is no duration. `error`: our own reason,
    # once the fetch worker gave up on this provider-less connection (it may run before we read).
    allowed = {"status", "mime", "name", "size", "duration", "width", "height", "sha256", "round", "error"}
    assert set(media) <= allowed
    assert not isinstance(media.get("error"), dict)
    assert media["size"] == str(10**30) and "duration" not in media
    assert media["mime"] == "image/jpeg" and media["name"] == "$evil.jpg"


@pytest.mark.parametrize("timestamp", [1e20, 10**20, -5, "Infinity", float("inf"), "9" * 5000, 4_102_444_800_000])
async def test_timestamps_out_of_range_keep_the_message_without_a_send_time(
    client: httpx.AsyncClient, hook: Hook, db: Any, timestamp: Any
) -> None:
    payload = upsert(unique_phone(), unique("TS"), {"conversation": "quando?"}, messageTimestamp=timestamp)
    msg = await delivered(client, db, hook, payload)
    assert msg["body"] == "quando?" and msg.get("provider_sent_at") is None


async def test_a_message_the_store_cannot_take_fails_before_any_client_or_ticket_is_written(
    client: httpx.AsyncClient, hook: Hook, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the cleaning to miss something, the check before the first write refuses the
    delivery whole (kept raw and failed, for reprocessing once fixed): no half-write."""
    monkeypatch.setattr(sanitize, "message", lambda event: event)  # cleaning that misses everything
    phone = unique_phone()
    r = await post(client, hook, upsert(phone, unique("RAW"), {"conversation": "oi \ud800"}))
    raw = await settled(db, r)
    assert raw["status"] == "failed" and "cannot be stored" in raw["error"], raw
    assert await db.users.count_documents({"reseller_id": hook.tenant.id, "phone": phone}) == 0
    assert await tickets_without_a_message(db, hook.tenant.id) == []


async def test_inbound_text_and_name_are_held_to_the_api_limits_and_the_raw_event_keeps_them(
    client: httpx.AsyncClient, hook: Hook, db: Any
) -> None:
    text = "a" * 200_000
    name = "N" * 20_000
    payload = upsert(unique_phone(), unique("BIG"), {"extendedTextMessage": {"text": text}}, pushName=name)
    msg = await delivered(client, db, hook, payload)
    assert msg["body"].startswith("a" * sanitize.BODY_MAX_CHARS)
    assert msg["body"][sanitize.BODY_MAX_CHARS :] == sanitize.TRUNCATED_MARKER.format(
        dropped=len(text) - sanitize.BODY_MAX_CHARS
    )
    assert msg["truncated"] == ["body", "push_name"]
    customer = await db.users.find_one({"_id": msg["sender_id"]})
    assert len(customer["name"]) == sanitize.NAME_MAX_CHARS and customer["name"].endswith("…")
    # What the API reads back is within what the API itself accepts.
    r = await client.get(f"/api/v1/clients/{customer['_id']}", headers=hook.tenant.headers)
    assert r.status_code == 200 and len(r.json()["name"]) <= 120


async def test_the_webhook_token_is_checked_before_the_body_is_read(
    client: httpx.AsyncClient, hook: Hook, db: Any
) -> None:
    read: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        read.append(1)
        yield b'{"event": "messages.upsert"}'

    before = await db.webhook_events_raw.count_documents({})
    r = await client.post(hook.url, content=body(), headers={**hook.headers, "X-Webhook-Token": "wrong"})
    assert r.status_code == 401 and read == []
    assert await db.webhook_events_raw.count_documents({}) == before
    r = await client.post(hook.url, content=body(), headers=hook.headers)
    assert r.status_code == 200 and read == [1]


async def test_bodies_over_the_route_limit_get_413_and_change_nothing(
    client: httpx.AsyncClient, hook: Hook, db: Any, backend_port: int
) -> None:
    before = await db.webhook_events_raw.count_documents({})

    def chunked(size: int) -> AsyncIterator[bytes]:
        async def gen() -> AsyncIterator[bytes]:
            for _ in range(size // 1024 + 1):
                yield b" " * 1024

        return gen()

    # Declared too large (a real socket, where Content-Length is what the client says).
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{backend_port}", timeout=60) as real:
        r = await real.post("/api/v1/auth/login", content=b"x" * (API_LIMIT + 1))
        assert r.status_code == 413, r.text
        assert "larger than" in r.json()["detail"]
        r = await real.post(hook.url, content=b" " * (WEBHOOK_LIMIT + 1), headers=hook.headers)
        assert r.status_code == 413, r.text
        # Under the webhook's limit, over the API's: the webhook's own limit applies.
        r = await real.post(hook.url, content=json.dumps({"event": "x", "pad": "p" * 10_000}), headers=hook.headers)
        assert r.status_code == 200, r.text
    # Chunked, no length declared: counted while read.
    r = await client.post(
        "/api/v1/auth/login", content=chunked(API_LIMIT), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413, r.text
    r = await client.post(hook.url, content=chunked(WEBHOOK_LIMIT), headers=hook.headers)
    assert r.status_code == 413, r.text
    assert await db.webhook_events_raw.count_documents({}) == before + 1  # only the one within its limit
