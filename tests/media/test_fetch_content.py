"""The provider's media download is given the message's content from its stored delivery.

Evolution v2.3.6 getBase64FromMediaMessage (whatsapp.baileys.service.ts) downloads from the
content the request carries (`message: {key, message}`); given the key alone it reads the message
from its own store, which fails when it saves no messages, and refuses with 400 "The message is
not of the media type" content inside a wrapper its MessageSubtype list does not unwrap
(viewOnceMessageV2Extension; associatedChildMessage, Baileys 7's album items). The fake does the
same (tests/fakes/evolution_fake.py). Without a stored delivery (the retry action) the request
carries the key alone, as before."""

import hashlib
import json
from typing import Any

import httpx
import pytest

from tests.factories import Tenant
from tests.fakes.harness import FakeEvolution, wait_for
from tests.media.helpers import fixture, send_media, until_media


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"MEDIA_FETCH_POLL_SECONDS": 0.1, "MEDIA_FETCH_BACKOFF_BASE_SECONDS": 0.3, "MEDIA_FETCH_MAX_ATTEMPTS": 3}


async def _settled(db: Any, message_id: str) -> dict[str, Any]:
    """The message once its fetch ended either way (a refusal is final: no 60 s wait for "ready")."""

    async def done() -> dict[str, Any] | None:
        doc: dict[str, Any] | None = await db.messages.find_one({"_id": message_id})
        return doc if doc is not None and (doc.get("media") or {}).get("status") in ("ready", "failed") else None

    result: dict[str, Any] = await wait_for(done, timeout=60)
    return result


async def _posted_message(db: Any, raw_id: str) -> dict[str, Any]:
    """Baileys' message object as the stored webhook delivery carried it."""
    raw = await db.webhook_events_raw.find_one({"_id": raw_id})
    message: dict[str, Any] = json.loads(raw["body"])["data"]["message"]
    return message


async def _fetches(evolution: FakeEvolution, key_id: str) -> list[dict[str, Any]]:
    return [f for f in await evolution.control("GET", "media_fetches") if f["body"]["message"]["key"]["id"] == key_id]


@pytest.mark.parametrize("wrapper", ["viewOnceMessageV2Extension", "associatedChildMessage"])
async def test_an_image_in_a_wrapper_evolution_does_not_unwrap_is_fetched_from_its_content(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, conn: dict[str, Any], evolution: FakeEvolution, wrapper: str
) -> None:
    message = await send_media(evolution, db, conn, "photo.png", caption="comprovante", wrap=wrapper)
    assert message["type"] == "image"
    settled = await _settled(db, message["_id"])
    # Before the fix: "failed", Evolution's 400 "The message is not of the media type" to the key alone.
    assert settled["media"]["status"] == "ready", settled["media"]
    assert settled["media"]["sha256"] == hashlib.sha256(fixture("photo.png")).hexdigest()
    r = await client.get(f"/api/v1/messages/{message['_id']}/media", headers=tenant.headers)
    assert r.status_code == 200 and r.content == fixture("photo.png")
    posted = await _posted_message(db, message["raw_id"])
    (fetch,) = await _fetches(evolution, message["key_id"])
    sent = fetch["body"]["message"]
    assert sent["key"] == {"id": message["key_id"], "remoteJid": sent["key"]["remoteJid"], "fromMe": False}
    # The unwrapped content, as posted: mediaKey unchanged (the object of byte values Evolution's JSON has).
    assert sent["message"] == posted[wrapper]["message"]
    assert set(sent["message"]) == {"imageMessage"}
    assert isinstance(sent["message"]["imageMessage"]["mediaKey"], dict)


async def test_the_fake_refuses_the_key_alone_for_such_a_wrapper_as_evolution_does(
    db: Any, conn: dict[str, Any], evolution: FakeEvolution
) -> None:
    """The old request against the fake: the message as it stored it, wrapped, holds no media
    type for Evolution; the same key with the content is served."""
    message = await send_media(evolution, db, conn, "photo.png", wrap="viewOnceMessageV2Extension")
    await _settled(db, message["_id"])
    key = (await _fetches(evolution, message["key_id"]))[0]["body"]["message"]["key"]
    content = (await _posted_message(db, message["raw_id"]))["viewOnceMessageV2Extension"]["message"]
    url = f"{evolution.url}/chat/getBase64FromMediaMessage/{conn['instance_name']}"
    async with httpx.AsyncClient(headers={"apikey": evolution.api_key}, timeout=30) as http:
        old = await http.post(url, json={"message": {"key": key}, "convertToMp4": False})
        new = await http.post(url, json={"message": {"key": key, "message": content}, "convertToMp4": False})
        wrapped = await http.post(
            url, json={"message": {"key": key, "message": {"viewOnceMessageV2Extension": {"message": content}}}}
        )
    assert old.status_code == 400 and old.json()["response"]["message"] == ["The message is not of the media type"]
    assert new.status_code == 200 and new.json()["mimetype"] == "image/png"
    assert wrapped.status_code == 400  # content given still wrapped: Evolution does not unwrap it either


async def test_a_voice_note_is_fetched_with_its_content(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, conn: dict[str, Any], evolution: FakeEvolution
) -> None:
    message = await send_media(evolution, db, conn, "voice.ogg", seconds=3, ptt=True)
    await until_media(db, message["_id"], "ready")
    r = await client.get(f"/api/v1/messages/{message['_id']}/media", headers=tenant.headers)
    assert r.status_code == 200 and r.content == fixture("voice.ogg")
    (fetch,) = await _fetches(evolution, message["key_id"])
    sent = fetch["body"]["message"]
    assert sent["key"]["id"] == message["key_id"] and sent["key"]["fromMe"] is False
    assert sent["key"]["remoteJid"].endswith("@s.whatsapp.net")
    assert sent["message"] == await _posted_message(db, message["raw_id"])
    assert sent["message"]["audioMessage"]["ptt"] is True


async def test_a_fetch_without_a_stored_delivery_sends_the_key_alone(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, conn: dict[str, Any], evolution: FakeEvolution
) -> None:
    """The retry action's entry names no delivery: the provider is asked by the key, as before."""
    await evolution.mode("ok", media_fail_next=1)  # holds the fetch back until the media is gone
    message = await send_media(evolution, db, conn, "boleto.pdf")
    await evolution.control("POST", "media_gone", {"key_id": message["key_id"]})
    await until_media(db, message["_id"], "failed")
    await evolution.control("POST", "media_gone", {"key_id": message["key_id"], "gone": False})
    url = f"/api/v1/messages/{message['_id']}/media"
    r = await client.post(f"{url}/retry", headers=tenant.headers)
    assert r.status_code == 200, r.text
    await until_media(db, message["_id"], "ready")
    assert (await client.get(url, headers=tenant.headers)).content == fixture("boleto.pdf")
    entries = await db.media_fetches.find({"message_id": message["_id"]}).sort("seq", 1).to_list(None)
    assert [e.get("raw_id") for e in entries] == [message["raw_id"], None]
    fetches = await _fetches(evolution, message["key_id"])
    assert all("message" in f["body"]["message"] for f in fetches[:-1])  # the first round: from the delivery
    assert fetches[-1]["body"]["message"] == {"key": fetches[0]["body"]["message"]["key"]}
