"""Quoted replies: a client's message quoting an earlier one keeps what it quotes (our id when we
hold it), and an agent's reply quoting a message goes out with Evolution's `quoted`."""

from typing import Any

import httpx

from backend.webhooks.service import message_id_for
from tests.factories import make_tenant
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.media.outbound.helpers import fixture, post_file, sent_to
from tests.outbound.helpers import held_ticket
from tests.webhooks.helpers import settled


async def _thread(client: httpx.AsyncClient, ticket_id: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    r = await client.get(f"/api/v1/tickets/{ticket_id}/messages", headers=headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_a_client_message_quoting_an_agent_reply_or_its_own_message_keeps_the_quote(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    first = await db.messages.find_one({"ticket_id": ticket_id, "sender_type": "client"})
    r = await client.post(f"/api/v1/tickets/{ticket_id}/messages", json={"body": "Qual o pedido?"}, headers=agent)
    reply = r.json()
    sent = await wait_for(lambda: sent_to(evolution, phone))
    await wait_for(lambda: db.messages.find_one({"_id": reply["id"], "status": "sent"}))

    quoting_reply = await evolution.inbound(
        conn["instance_name"], phone, "É o 123", quoted_key_id=sent[0]["key_id"], quoted_text=sent[0]["text"]
    )
    assert (await settled(db, quoting_reply))["status"] == "processed"
    quoting_own = await evolution.inbound(
        conn["instance_name"],
        phone,
        "como eu disse",
        quoted_key_id=first["provider_message_id"],
        quoted_text=first["body"],
    )
    assert (await settled(db, quoting_own))["status"] == "processed"
    unknown = await evolution.inbound(
        conn["instance_name"], phone, "e aquela?", quoted_key_id="3EB0NEVERSEEN", quoted_text="mensagem antiga"
    )
    assert (await settled(db, unknown))["status"] == "processed"

    by_id = {m["id"]: m for m in await _thread(client, ticket_id, agent)}
    got = by_id[message_id_for(conn["id"], quoting_reply["key_id"])]
    assert got["body"] == "É o 123"
    assert got["quoted"] == {"message_id": reply["id"], "body": sent[0]["text"], "type": "text"}
    got = by_id[message_id_for(conn["id"], quoting_own["key_id"])]
    assert got["quoted"] == {"message_id": first["_id"], "body": first["body"], "type": "text"}
    got = by_id[message_id_for(conn["id"], unknown["key_id"])]
    assert got["quoted"] == {"message_id": None, "body": "mensagem antiga", "type": "text"}


async def test_an_agent_reply_quoting_a_message_goes_out_with_evolutions_quoted(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    first = await db.messages.find_one({"ticket_id": ticket_id, "sender_type": "client"})
    url = f"/api/v1/tickets/{ticket_id}/messages"

    r = await client.post(url, json={"body": "Sobre isto:", "quoted_message_id": first["_id"]}, headers=agent)
    assert r.status_code == 201, r.text
    assert r.json()["quoted"] == {"message_id": first["_id"], "body": first["body"], "type": "text"}
    r = await post_file(
        client,
        ticket_id,
        agent,
        name="p.png",
        data=fixture("photo.png"),
        mime="image/png",
        body="e isto",
        quoted_message_id=first["_id"],
    )
    assert r.status_code == 201, r.text
    assert r.json()["quoted"]["message_id"] == first["_id"]

    async def both() -> list[dict[str, Any]] | None:
        sent = await sent_to(evolution, phone)
        return sent if len(sent) == 2 else None

    sent = await wait_for(both, timeout=60)
    expected = {
        "key": {"id": first["provider_message_id"], "remoteJid": f"{phone}@s.whatsapp.net", "fromMe": False},
        "message": {"conversation": first["body"]},
    }
    assert [s.get("quoted") for s in sent] == [expected, expected]
    assert "media" in sent[1]

    # A note or a message of another ticket cannot be quoted.
    r = await client.post(f"/api/v1/tickets/{ticket_id}/notes", json={"body": "nota"}, headers=agent)
    r = await client.post(url, json={"body": "x", "quoted_message_id": r.json()["id"]}, headers=agent)
    assert r.status_code == 404, r.text


async def test_a_reply_quoting_a_clients_photo_or_document_quotes_it_as_one(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """WhatsApp shows a quote of a photo as a photo (with its caption) and of a document by its
    name: the reply's `quoted` carries the quoted message as its kind, not as a text."""
    import base64

    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    photo = await evolution.inbound(conn["instance_name"], phone, "a tela com o erro", image=True)
    assert (await settled(db, photo))["status"] == "processed"
    pdf = {"type": "document", "base64": base64.b64encode(fixture("boleto.pdf")).decode()}
    document = await evolution.inbound(
        conn["instance_name"], phone, "", media={**pdf, "mimetype": "application/pdf", "fileName": "boleto.pdf"}
    )
    assert (await settled(db, document))["status"] == "processed"
    url = f"/api/v1/tickets/{ticket_id}/messages"
    for quoted in (photo, document):
        quoted_id = message_id_for(conn["id"], quoted["key_id"])
        r = await client.post(url, json={"body": "Recebido", "quoted_message_id": quoted_id}, headers=agent)
        assert r.status_code == 201, r.text

    async def both() -> list[dict[str, Any]] | None:
        sent = await sent_to(evolution, phone)
        return sent if len(sent) == 2 else None

    sent = await wait_for(both, timeout=60)
    jid = f"{phone}@s.whatsapp.net"
    assert [s["quoted"] for s in sent] == [
        {
            "key": {"id": photo["key_id"], "remoteJid": jid, "fromMe": False},
            "message": {"imageMessage": {"caption": "a tela com o erro", "mimetype": "image/jpeg"}},
        },
        {
            "key": {"id": document["key_id"], "remoteJid": jid, "fromMe": False},
            "message": {"documentMessage": {"mimetype": "application/pdf", "fileName": "boleto.pdf"}},
        },
    ]
