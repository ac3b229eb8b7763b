"""Inbound media end to end: the fake provider's webhook, the fetch, the download."""

import hashlib
from typing import Any

import httpx
import pytest

from tests.factories import Tenant, make_tenant
from tests.fakes.harness import FakeEvolution, make_connection
from tests.media.helpers import fixture, media_of, send_media, until_media


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {
        "MEDIA_FETCH_POLL_SECONDS": 0.1,
        "MEDIA_FETCH_BACKOFF_BASE_SECONDS": 0.3,
        "MEDIA_FETCH_BACKOFF_MAX_SECONDS": 1.5,
        "MEDIA_FETCH_MAX_ATTEMPTS": 6,
        "MEDIA_FETCH_LEASE_SECONDS": 10.0,
    }


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers)


@pytest.fixture(scope="module")
async def conn(client: httpx.AsyncClient, tenant: Tenant, evolution: FakeEvolution) -> dict[str, Any]:
    return await make_connection(client, tenant, evolution)


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
