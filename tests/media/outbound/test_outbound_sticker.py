"""A WebP an agent sends "as a sticker" goes with Evolution's sendSticker and is stored as a
sticker message; without the choice the same WebP is an image. A sticker takes no caption, must be
a WebP and stays under WhatsApp's sticker limit (uploads.LIMITS), refused with nothing stored."""

from typing import Any

import httpx

from backend.messages import uploads
from tests.fakes.harness import FakeEvolution, wait_for
from tests.media.outbound.helpers import (
    agent_holding_a_ticket,
    counts,
    fixture,
    in_status,
    media_bytes,
    media_sent_to,
    post_file,
)


async def test_a_webp_sent_as_a_sticker_reaches_the_provider_as_one_byte_identical(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    conn, ticket_id, phone, agent = await agent_holding_a_ticket(client, admin_headers, evolution, db)
    webp = fixture("sticker.webp")

    r = await post_file(client, ticket_id, agent, name="fig.webp", data=webp, mime="image/webp", as_sticker="true")
    assert r.status_code == 201, r.text
    sticker = r.json()
    assert sticker["type"] == "sticker" and sticker["body"] == ""  # no caption, no signature line
    assert sticker["media"]["mime"] == "image/webp" and sticker["media"]["status"] == "ready"
    # The same file without the choice is an image.
    r = await post_file(client, ticket_id, agent, name="foto.webp", data=webp, mime="image/webp", body="foto")
    assert r.status_code == 201, r.text
    assert r.json()["type"] == "image"

    sent = await wait_for(lambda: media_sent_to(evolution, phone, 2), timeout=60)
    assert [s["media"]["kind"] for s in sent] == ["sticker", "image"]
    assert sent[0]["media"]["mimetype"] == "image/webp" and sent[0]["text"] == ""
    assert await media_bytes(evolution, sent[0]["key_id"]) == webp
    calls = [c["path"] for c in await evolution.control("GET", "calls")]
    assert f"/message/sendSticker/{conn['instance_name']}" in calls
    doc = await wait_for(lambda: in_status(db, sticker["id"], "sent"))
    assert doc["provider_message_id"] == sent[0]["key_id"]
    r = await client.get(sticker["media"]["url"], headers=agent)
    assert r.status_code == 200 and r.content == webp


async def test_a_sticker_must_be_a_small_webp_without_caption_and_a_refusal_stores_nothing(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    _, ticket_id, _, agent = await agent_holding_a_ticket(client, admin_headers, evolution, db)
    before = await counts(db)
    webp = fixture("sticker.webp")
    big = webp + b"\0" * uploads.LIMITS[uploads.Kind.STICKER]  # an image's size, past a sticker's

    r = await post_file(client, ticket_id, agent, name="g.webp", data=big, mime="image/webp", as_sticker="true")
    assert r.status_code == 413, r.text
    assert r.json()["detail"] == "Arquivo grande demais: figurinhas podem ter no máximo 500 KB no WhatsApp."
    r = await post_file(
        client, ticket_id, agent, name="p.png", data=fixture("photo.png"), mime="image/png", as_sticker="true"
    )
    assert r.status_code == 422 and "WebP" in r.text, r.text
    r = await post_file(
        client, ticket_id, agent, name="f.webp", data=webp, mime="image/webp", as_sticker="true", body="oi"
    )
    assert r.status_code == 422 and "legenda" in r.text, r.text
    assert await counts(db) == before
