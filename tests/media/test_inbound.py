"""Inbound media end to end: the fake provider's webhook, the fetch, the download."""

import base64
import hashlib
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from backend.webhooks.service import message_id_for
from tests.factories import Tenant, make_tenant
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.media.helpers import fixture, media_of, send_media, until_media
from tests.webhooks.helpers import settled


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {
        "MEDIA_FETCH_POLL_SECONDS": 0.1,
        "MEDIA_FETCH_BACKOFF_BASE_SECONDS": 0.3,
        "MEDIA_FETCH_BACKOFF_MAX_SECONDS": 1.5,
        "MEDIA_FETCH_MAX_ATTEMPTS": 6,
        "MEDIA_FETCH_LEASE_SECONDS": 10.0,
    }


async def test_inline_base64_image_is_stored_and_served_byte_for_byte(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, conn: dict[str, Any], evolution: FakeEvolution
) -> None:
    fetches_before = len(await evolution.control("GET", "media_fetches"))
    message = await send_media(evolution, db, conn, "photo.png", inline=True, caption="segue o print")
    await until_media(db, message["_id"], "ready")
    shown = await media_of(client, tenant.headers, message)
    data = fixture("photo.png")
    assert shown["type"] == "image" and shown["body"] == "segue o print"
    assert shown["media"]["status"] == "ready"
    assert shown["media"]["mime"] == "image/png"
    assert shown["media"]["size"] == len(data)
    assert shown["media"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert shown["media"]["url"] == f"/api/v1/messages/{message['_id']}/media"
    r = await client.get(shown["media"]["url"], headers=tenant.headers)
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["content-type"] == "image/png"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-disposition"].startswith("inline")
    assert "private" in r.headers["cache-control"]
    # Inline bytes came with the webhook: the provider was never asked for them.
    assert len(await evolution.control("GET", "media_fetches")) == fetches_before


async def test_voice_note_is_fetched_from_the_provider(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, conn: dict[str, Any], evolution: FakeEvolution
) -> None:
    message = await send_media(evolution, db, conn, "voice.ogg", seconds=3, ptt=True)
    await until_media(db, message["_id"], "ready")
    shown = await media_of(client, tenant.headers, message)
    assert shown["type"] == "audio"
    assert shown["media"]["mime"] == "audio/ogg" and shown["media"]["duration"] == 3
    r = await client.get(shown["media"]["url"], headers=tenant.headers)
    assert r.status_code == 200 and r.content == fixture("voice.ogg")
    assert r.headers["content-disposition"].startswith("inline")
    fetches = await evolution.control("GET", "media_fetches")
    asked = [f for f in fetches if f["body"]["message"]["key"]["id"] == message["key_id"]]
    assert len(asked) == 1
    assert asked[0]["instance"] == conn["instance_name"]
    assert asked[0]["body"]["message"]["key"]["remoteJid"].endswith("@s.whatsapp.net")


async def test_media_sent_to_a_deactivated_connection_is_fetched(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, evolution: FakeEvolution
) -> None:
    """A connection deactivated in IAZE may still be connected at the provider, and its clients'
    messages are filed (webhooks.service): their media is fetched too, not failed for good."""
    own = await make_connection(client, tenant, evolution)
    await wait_for(lambda: _status_is(client, tenant, own["id"], "open"))
    r = await client.patch(f"/api/v1/whatsapp-connections/{own['id']}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["active"] is False
    message = await send_media(evolution, db, own, "voice.ogg", seconds=2, ptt=True)
    await until_media(db, message["_id"], "ready")
    shown = await media_of(client, tenant.headers, message)
    r = await client.get(shown["media"]["url"], headers=tenant.headers)
    assert r.status_code == 200 and r.content == fixture("voice.ogg")


async def _status_is(client: httpx.AsyncClient, tenant: Tenant, connection_id: str, status: str) -> bool:
    # The "open" status update is processed in the background: a PATCH racing it could be undone
    # on FerretDB, which writes whole documents back.
    r = await client.get(f"/api/v1/whatsapp-connections/{connection_id}", headers=tenant.headers)
    return bool(r.json()["status"] == status)


async def test_document_keeps_its_name_and_downloads_as_attachment(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, conn: dict[str, Any], evolution: FakeEvolution
) -> None:
    message = await send_media(evolution, db, conn, "boleto.pdf", caption="boleto de dezembro")
    await until_media(db, message["_id"], "ready")
    shown = await media_of(client, tenant.agents[0]["headers"], message)
    assert shown["media"]["name"] == "boleto.pdf" and shown["body"] == "boleto de dezembro"
    r = await client.get(shown["media"]["url"], headers=tenant.agents[0]["headers"])
    assert r.status_code == 200 and r.content == fixture("boleto.pdf")
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"].startswith("attachment;")
    assert "filename*=UTF-8''boleto.pdf" in r.headers["content-disposition"]


async def test_html_sent_by_a_client_is_never_rendered(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, conn: dict[str, Any], evolution: FakeEvolution
) -> None:
    message = await send_media(evolution, db, conn, "evil.html", inline=True)
    await until_media(db, message["_id"], "ready")
    r = await client.get(f"/api/v1/messages/{message['_id']}/media", headers=tenant.headers)
    assert r.status_code == 200 and r.content == fixture("evil.html")
    assert r.headers["content-disposition"].startswith("attachment;")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-type"] == "application/octet-stream"
    assert "sandbox" in r.headers["content-security-policy"]


async def test_ranges_etag_and_not_modified(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, conn: dict[str, Any], evolution: FakeEvolution
) -> None:
    message = await send_media(evolution, db, conn, "voice.ogg", inline=True)
    await until_media(db, message["_id"], "ready")
    url, data = f"/api/v1/messages/{message['_id']}/media", fixture("voice.ogg")
    size = len(data)
    for header, start, end in [("bytes=0-9", 0, 10), ("bytes=100-", 100, size), ("bytes=-50", size - 50, size)]:
        r = await client.get(url, headers={**tenant.headers, "Range": header})
        assert r.status_code == 206, (header, r.status_code)
        assert r.content == data[start:end]
        assert r.headers["content-range"] == f"bytes {start}-{end - 1}/{size}"
        assert r.headers["x-content-type-options"] == "nosniff"
    r = await client.get(url, headers={**tenant.headers, "Range": f"bytes={size}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"
    full = await client.get(url, headers=tenant.headers)
    etag = full.headers["etag"]
    assert etag == f'"{hashlib.sha256(data).hexdigest()}"'
    again = await client.get(url, headers={**tenant.headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["x-content-type-options"] == "nosniff"


async def test_other_tenants_and_strangers_get_nothing(
    client: httpx.AsyncClient,
    db: Any,
    tenant: Tenant,
    conn: dict[str, Any],
    evolution: FakeEvolution,
    admin_headers: dict[str, str],
) -> None:
    message = await send_media(evolution, db, conn, "photo.png", inline=True)
    await until_media(db, message["_id"], "ready")
    url = f"/api/v1/messages/{message['_id']}/media"
    other = await make_tenant(client, admin_headers, agents=1)
    for headers in (other.headers, other.agents[0]["headers"]):
        r = await client.get(url, headers=headers)
        assert r.status_code == 404, r.text
        r = await client.post(f"{url}/retry", headers=headers)
        assert r.status_code == 404, r.text
    assert (await client.get(url)).status_code == 401
    assert (await client.get("/api/v1/messages/not-an-id/media", headers=tenant.headers)).status_code == 404


async def test_a_redelivered_webhook_stores_one_message_one_copy_one_fetch(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, conn: dict[str, Any], evolution: FakeEvolution
) -> None:
    first = await send_media(evolution, db, conn, "boleto.pdf", phone="5511977770001")
    await until_media(db, first["_id"], "ready")
    again = await send_media(evolution, db, conn, "boleto.pdf", phone="5511977770001", key_id=first["key_id"])
    assert again["_id"] == first["_id"]
    raw = await db.webhook_events_raw.find_one({"_id": again["raw_id"]})
    assert raw["result"] == ["duplicate"]
    assert await db.messages.count_documents({"provider_message_id": first["key_id"]}) == 1
    assert await db.media_fetches.count_documents({"message_id": first["_id"]}) == 1
    sha = hashlib.sha256(fixture("boleto.pdf")).hexdigest()
    assert await db["media"].count_documents({"reseller_id": tenant.id, "sha256": sha}) == 1


def _failures(reason: str) -> float:
    return REGISTRY.get_sample_value("iaze_media_fetch_failures_total", {"reason": reason}) or 0.0


async def test_provider_failing_then_recovering_is_retried_until_ready(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, conn: dict[str, Any], evolution: FakeEvolution
) -> None:
    failures = _failures("http_5xx")
    await evolution.mode("ok", media_fail_next=2)
    message = await send_media(evolution, db, conn, "photo.png")
    ready = await until_media(db, message["_id"], "ready")
    attempts = await db.media_fetch_attempts.find({"message_id": message["_id"]}).sort("attempt", 1).to_list(None)
    assert [a["result"] for a in attempts] == ["error", "error", "stored"]
    assert all("500" in a["error"] and a["retryable"] for a in attempts[:2])
    assert _failures("http_5xx") == failures + 2  # README, Metrics: iaze_media_fetch_failures_total
    assert ready["media"]["sha256"] == hashlib.sha256(fixture("photo.png")).hexdigest()
    r = await client.get(f"/api/v1/messages/{message['_id']}/media", headers=tenant.headers)
    assert r.content == fixture("photo.png")


async def test_provider_down_during_the_fetch_then_back(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, conn: dict[str, Any], evolution: FakeEvolution
) -> None:
    # The message arrives while the provider is up, then the provider process goes away before
    # the bytes are fetched (the fetches fail until it is back).
    await evolution.mode("ok", media_fail_next=1)
    message = await send_media(evolution, db, conn, "voice.ogg", ptt=True, seconds=3)
    instance = await evolution.control("GET", f"instances/{conn['instance_name']}")
    evolution.stop()
    try:

        async def unreachable() -> bool:
            found = await db.media_fetch_attempts.find({"message_id": message["_id"]}).to_list(None)
            return any("unreachable" in str(a.get("error")) for a in found)

        await wait_for(unreachable, timeout=30)
        shown = await media_of(client, tenant.headers, message)
        assert shown["media"]["status"] == "pending"  # still on its way, not failed
        r = await client.get(shown["media"]["url"], headers=tenant.headers)
        assert r.status_code == 409
    finally:
        evolution.start()
    # A restarted fake has forgotten its instance and the phone's media: the same again.
    async with httpx.AsyncClient(base_url=evolution.url, headers={"apikey": evolution.api_key}) as fake:
        webhook = {"url": instance["webhook_url"], "headers": instance["webhook_headers"]}
        r = await fake.post("/instance/create", json={"instanceName": conn["instance_name"], "webhook": webhook})
        assert r.status_code == 201, r.text
    payload = {"key_id": message["key_id"], "type": "audio", "mimetype": "audio/ogg; codecs=opus"}
    await evolution.control("POST", "media", {**payload, "base64": base64.b64encode(fixture("voice.ogg")).decode()})
    await until_media(db, message["_id"], "ready")
    r = await client.get(f"/api/v1/messages/{message['_id']}/media", headers=tenant.headers)
    assert r.status_code == 200 and r.content == fixture("voice.ogg")


async def test_permanent_failure_shows_its_reason_and_the_retry_action_works(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, conn: dict[str, Any], evolution: FakeEvolution
) -> None:
    refused = _failures("http_4xx")
    await evolution.mode("ok", media_fail_next=1)
    message = await send_media(evolution, db, conn, "boleto.pdf")
    await evolution.control("POST", "media_gone", {"key_id": message["key_id"]})
    failed = await until_media(db, message["_id"], "failed")
    assert "400" in failed["media"]["error"]
    assert _failures("http_4xx") == refused + 1
    shown = await media_of(client, tenant.headers, message)
    assert shown["media"]["status"] == "failed" and "no longer" in shown["media"]["error"]
    url = f"/api/v1/messages/{message['_id']}/media"
    assert (await client.get(url, headers=tenant.headers)).status_code == 409
    await evolution.control("POST", "media_gone", {"key_id": message["key_id"], "gone": False})
    r = await client.post(f"{url}/retry", headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert r.json()["media"]["status"] == "pending" and r.json()["media"].get("error") is None
    await until_media(db, message["_id"], "ready")
    assert (await client.get(url, headers=tenant.headers)).content == fixture("boleto.pdf")
    again = await client.post(f"{url}/retry", headers=tenant.headers)
    assert again.status_code == 409  # nothing to retry once stored


async def test_max_attempts_end_in_failed(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, conn: dict[str, Any], evolution: FakeEvolution
) -> None:
    await evolution.mode("ok", media_fail_next=1000)
    try:
        message = await send_media(evolution, db, conn, "photo.png")
        failed = await until_media(db, message["_id"], "failed", within=90)
    finally:
        await evolution.mode("ok", media_fail_next=0)
    assert "500" in failed["media"]["error"]
    assert await db.media_fetch_attempts.count_documents({"message_id": message["_id"]}) == 6


async def test_location_and_contact_cards_are_kept(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, conn: dict[str, Any], evolution: FakeEvolution
) -> None:
    phone = "5511966660001"
    vcard = (
        "BEGIN:VCARD\nVERSION:3.0\nN:Souza;Maria;;;\nFN:Maria Souza\n"
        "item1.TEL;waid=5511988887777:+55 11 98888-7777\nitem1.X-ABLabel:Celular\n"
        "TEL;TYPE=WORK:+55 (11) 3333-4444\nEND:VCARD"
    )
    items = {
        "loc": {
            "locationMessage": {
                "degreesLatitude": -23.5505,
                "degreesLongitude": -46.6333,
                "name": "Loja Centro",
                "address": "Praça da Sé, São Paulo",
            }
        },
        "card": {"contactMessage": {"displayName": "Maria", "vcard": vcard}},
    }
    ids = {}
    for key, message in items.items():
        key_id = f"3EB0{key.upper()}{phone}"
        data = {
            "key": {"remoteJid": f"{phone}@s.whatsapp.net", "fromMe": False, "id": key_id},
            "pushName": "Cliente",
            "message": message,
            "messageType": next(iter(message)),
            "messageTimestamp": 1764633600,
        }
        result = await evolution.control(
            "POST", "post", {"instance": conn["instance_name"], "event": "MESSAGES_UPSERT", "data": data}
        )
        await settled(db, result)
        ids[key] = message_id_for(conn["id"], key_id)
    loc = await media_of(client, tenant.headers, await db.messages.find_one({"_id": ids["loc"]}))
    assert loc["type"] == "location" and loc["media"] is None
    assert loc["location"] == {
        "latitude": -23.5505,
        "longitude": -46.6333,
        "name": "Loja Centro",
        "address": "Praça da Sé, São Paulo",
    }
    card = await media_of(client, tenant.headers, await db.messages.find_one({"_id": ids["card"]}))
    assert card["type"] == "contact"
    assert card["contacts"] == [{"name": "Maria Souza", "phones": ["5511988887777", "551133334444"]}]
