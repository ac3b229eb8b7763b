"""Agents send files: uploaded as multipart, stored, queued like text, sent with Evolution's
sendMedia / sendWhatsAppAudio, received byte for byte by the fake provider, ticked like text."""

import hashlib
from typing import Any

import httpx

from tests.factories import make_tenant
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.media.outbound.helpers import fixture, in_status, media_bytes, media_sent_to, post_file, sent_to
from tests.outbound.helpers import held_ticket
from tests.webhooks.helpers import settled


async def test_a_png_a_voice_note_and_a_pdf_reach_the_provider_byte_identical_and_get_their_ticks(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    name = tenant.agents[0]["name"]
    png, ogg, pdf = fixture("photo.png"), fixture("voice.ogg"), fixture("boleto.pdf")

    # The browser may declare anything: the bytes decide (a PNG sent as octet-stream is an image).
    r = await post_file(
        client, ticket_id, agent, name="print.png", data=png, mime="application/octet-stream", body="Veja o erro"
    )
    assert r.status_code == 201, r.text
    image = r.json()
    assert image["type"] == "image" and image["status"] == "pending" and image["body"] == f"*{name}:*\nVeja o erro"
    assert image["media"]["mime"] == "image/png" and image["media"]["size"] == len(png)
    assert image["media"]["sha256"] == hashlib.sha256(png).hexdigest() and image["media"]["name"] == "print.png"
    assert image["media"]["url"] == f"/api/v1/messages/{image['id']}/media" and image["media"]["status"] == "ready"

    r = await post_file(client, ticket_id, agent, name="voz.ogg", data=ogg, mime="audio/ogg; codecs=opus")
    assert r.status_code == 201, r.text
    voice = r.json()
    assert voice["type"] == "audio" and voice["media"]["voice"] is True and voice["body"] == ""

    r = await post_file(client, ticket_id, agent, name="boleto.pdf", data=pdf, mime="application/pdf", body="Boleto")
    assert r.status_code == 201, r.text
    document = r.json()
    assert document["type"] == "document" and document["media"]["mime"] == "application/pdf"

    sent = await wait_for(lambda: media_sent_to(evolution, phone, 3), timeout=60)
    by_kind = {s["media"]["kind"]: s for s in sent}
    assert [s["media"]["kind"] for s in sent] == ["image", "voice", "document"]  # in the order written
    assert await media_bytes(evolution, by_kind["image"]["key_id"]) == png
    assert await media_bytes(evolution, by_kind["voice"]["key_id"]) == ogg
    assert await media_bytes(evolution, by_kind["document"]["key_id"]) == pdf
    assert (
        by_kind["image"]["text"] == f"*{name}:*\nVeja o erro" and by_kind["image"]["media"]["mimetype"] == "image/png"
    )
    assert (
        by_kind["document"]["media"]["fileName"] == "boleto.pdf" and by_kind["document"]["text"] == f"*{name}:*\nBoleto"
    )
    calls = [c["path"] for c in await evolution.control("GET", "calls")]
    assert f"/message/sendWhatsAppAudio/{conn['instance_name']}" in calls

    # The same ticks as text: sent with the provider's id, then delivered and read by receipts.
    for message, kind in ((image, "image"), (voice, "voice"), (document, "document")):
        doc = await wait_for(lambda m=message: in_status(db, m["id"], "sent"))
        assert doc["provider_message_id"] == by_kind[kind]["key_id"]
        for status in ("DELIVERY_ACK", "READ"):
            receipt = await evolution.control(
                "POST",
                "receipt",
                {"instance": conn["instance_name"], "key_id": doc["provider_message_id"], "status": status},
            )
            assert (await settled(db, receipt))["status"] == "processed"
        assert await in_status(db, message["id"], "read") is not None

    # What the agent sent downloads again byte for byte from the API.
    for message, data in ((image, png), (voice, ogg), (document, pdf)):
        r = await client.get(message["media"]["url"], headers=agent)
        assert r.status_code == 200 and r.content == data, r.text[:200]

    # One copy of each file in the tenant's store, and the echoes stored nothing more.
    for data in (png, ogg, pdf):
        record = await db.media.find_one({"_id": f"{tenant.id}:{hashlib.sha256(data).hexdigest()}"})
        assert record is not None and record["size"] == len(data)
    outgoing = await db.messages.count_documents({"ticket_id": ticket_id, "direction": "out"})
    assert outgoing == 3


async def test_a_file_claiming_to_be_an_image_whose_bytes_are_not_one_is_sent_as_a_document(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    html = fixture("evil.html")
    r = await post_file(client, ticket_id, agent, name="foto.png", data=html, mime="image/png")
    assert r.status_code == 201, r.text
    assert r.json()["type"] == "document" and r.json()["media"]["mime"] == "application/octet-stream"
    sent = await wait_for(lambda: sent_to(evolution, phone))
    assert sent[0]["media"]["kind"] == "document" and sent[0]["media"]["mimetype"] == "application/octet-stream"
    assert await media_bytes(evolution, sent[0]["key_id"]) == html


async def test_a_voice_note_takes_no_caption(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, _, agent = await held_ticket(client, tenant, evolution, conn, db)
    before = await db.messages.count_documents({"ticket_id": ticket_id})
    r = await post_file(client, ticket_id, agent, name="v.ogg", data=fixture("voice.ogg"), mime="audio/ogg", body="oi")
    assert r.status_code == 422, r.text
    assert await db.messages.count_documents({"ticket_id": ticket_id}) == before
