"""Evolution API v2.3.6 / Baileys 7 payload shapes the parser must read (most found by the audit
in tests/audit_evolution/, where each failed before the fix): Baileys' wrappers (disappearing
messages, view once), button/list/poll answers and types the code does not know, upserts without
content, and the connection and receipt states Evolution documents beyond the usual ones.

Shapes: see tests/webhooks/evolution_shapes.py. Baileys WAProto: ButtonsResponseMessage
{selectedButtonId, selectedDisplayText}, ListResponseMessage {title, singleSelectReply.selectedRowId},
TemplateButtonReplyMessage {selectedId, selectedDisplayText}, InteractiveResponseMessage {body.text,
nativeFlowResponseMessage}, PollCreationMessage(V3) {name, options[].optionName}, EventMessage
{name, description}, AlbumMessage {expectedImageCount}. Evolution wa.types.ts: StateConnection
`state: WAConnectionState | 'refused'`; its `messages.update` handler sends `status[update.status]
?? 'DELETED'`; `connectionUpdate` at the QR code limit posts QRCODE_UPDATED {message, statusCode}
then CONNECTION_UPDATE state 'refused'."""

import base64
import hashlib
import json
from typing import Any

import httpx
import pytest

from backend.connections.providers.base import Ignored, InboundMessage
from backend.connections.providers.evolution import parse_webhook
from tests.automation.helpers import automatic, company, left, write
from tests.factories import API, make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.webhooks.evolution_shapes import (
    MEDIA_KINDS,
    all_messages,
    envelope,
    ephemeral,
    key_id,
    pn_key,
    post,
    shown,
    thread,
    tickets_of,
    upsert,
)

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"MEDIA_FETCH_POLL_SECONDS": 0.1, "MEDIA_FETCH_BACKOFF_BASE_SECONDS": 0.3}


def _parsed(message: dict[str, Any], message_type: str) -> Any:
    """The one event the parser makes of an upsert of `message` from a person's chat."""
    (event,) = parse_webhook(upsert(pn_key("5511999990000"), message, message_type), event_hint=None)
    return event


async def _ready_media(client: httpx.AsyncClient, tenant: Any) -> dict[str, Any]:
    async def ready() -> dict[str, Any] | None:
        (m,) = await all_messages(client, tenant)
        return m if m["media"] and m["media"]["status"] == "ready" else None

    found: dict[str, Any] = await wait_for(ready, timeout=30)
    return found


# ---- A: Baileys' wrappers (disappearing messages, view once) -----------------------------------


async def test_a_text_in_a_disappearing_messages_chat_is_shown(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    message = {
        "messageContextInfo": {"messageSecret": "c2VjcmV0"},
        "ephemeralMessage": {
            "message": {
                "extendedTextMessage": {"text": "meu pedido 4412 não chegou", "contextInfo": {"expiration": 604800}}
            }
        },
    }
    await post(client, db, conn, upsert(pn_key(unique_phone()), message, "ephemeralMessage"))
    # Before the fix: [("in", "ephemeralMessage", "")], shown as "[Anexo]".
    assert shown(await all_messages(client, tenant)) == [("in", "text", "meu pedido 4412 não chegou")]


async def test_an_image_in_a_disappearing_messages_chat_is_fetched_by_its_key(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """The fetch sends the message's key: Evolution's getBase64FromMediaMessage reads the message
    from its own store (kept wrapped, as received) and unwraps ephemeral/view-once itself."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    phone, kid = unique_phone(), key_id()
    await evolution.control(
        "POST",
        "media",
        {"key_id": kid, "type": "image", "mimetype": "image/png", "base64": base64.b64encode(PNG).decode()},
    )
    image = {"url": "https://mmg.whatsapp.net/x.enc", "mimetype": "image/png", "caption": "comprovante"}
    payload = upsert(pn_key(phone, kid), {"ephemeralMessage": {"message": {"imageMessage": image}}}, "ephemeralMessage")
    await post(client, db, conn, payload)
    m = await _ready_media(client, tenant)  # before the fix: type "ephemeralMessage", no media, no fetch
    assert (m["type"], m["body"]) == ("image", "comprovante")
    assert m["media"]["sha256"] == hashlib.sha256(PNG).hexdigest()
    fetches = [f for f in await evolution.control("GET", "media_fetches") if f["body"]["message"]["key"]["id"] == kid]
    assert fetches and fetches[0]["body"]["message"]["key"] == {
        "id": kid,
        "remoteJid": f"{phone}@s.whatsapp.net",
        "fromMe": False,
    }


@pytest.mark.parametrize(
    ("wrapper", "inner", "kind", "body"),
    [
        (
            "viewOnceMessage",
            {"imageMessage": {"url": "u", "mimetype": "image/jpeg", "caption": "rg frente", "viewOnce": True}},
            "image",
            "rg frente",
        ),
        (
            "viewOnceMessageV2",
            {"videoMessage": {"url": "u", "mimetype": "video/mp4", "caption": "defeito", "viewOnce": True}},
            "video",
            "defeito",
        ),
        (
            "viewOnceMessageV2Extension",
            {
                "audioMessage": {
                    "url": "u",
                    "mimetype": "audio/ogg; codecs=opus",
                    "ptt": True,
                    "seconds": 4,
                    "viewOnce": True,
                }
            },
            "audio",
            "",
        ),
    ],
)
async def test_view_once_media_shows_as_its_media_kind(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    wrapper: str,
    inner: dict[str, Any],
    kind: str,
    body: str,
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    await post(client, db, conn, upsert(pn_key(unique_phone()), {wrapper: {"message": inner}}, wrapper))
    (m,) = await all_messages(client, tenant)
    assert (m["type"], m["body"]) == (kind, body)  # before the fix: (wrapper, "")
    assert m["media"] is not None  # pending or already settled: its fetch was queued


async def test_a_client_in_a_disappearing_messages_chat_can_answer_the_department_menu(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn = await company(client, admin_headers, evolution, config={})
    ids = [d["id"] for d in tenant.departments]
    menu = {"menu_enabled": True, "menu_department_ids": ids, "menu_text": "Escolha:"}
    r = await client.patch(f"{API}/whatsapp-connections/{conn['id']}", json=menu, headers=tenant.headers)
    assert r.status_code == 200, r.text
    phone = unique_phone()
    await post(client, db, conn, upsert(pn_key(phone), ephemeral("oi"), "ephemeralMessage"))
    (ticket,) = await tickets_of(client, tenant)
    await left(db, ticket["id"], "menu")  # the client has the menu "1 - Suporte / 2 - Financeiro"
    raw = await post(client, db, conn, upsert(pn_key(phone), ephemeral("2"), "ephemeralMessage"))
    # Before the fix: the answer read as "" ("automatic: menu repeated"), the ticket stayed in Suporte.
    got = (await client.get(f"{API}/tickets/{ticket['id']}", headers=tenant.headers)).json()
    assert got["department_id"] == ids[1], (raw["result"], [m["body"] for m in await automatic(db, ticket["id"])])


async def test_the_fake_phone_in_a_disappearing_messages_chat_quotes_answers_and_sends_view_once_media(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """The fake's `wrap` option: the same conversation as in a plain chat, through the fake."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    phone = unique_phone()
    first = await write(evolution, db, conn, phone, "oi, tudo bem?", wrap="ephemeralMessage")
    (ticket,) = await tickets_of(client, tenant)
    (stored,) = await thread(client, tenant, ticket["id"])
    assert (stored["type"], stored["body"]) == ("text", "oi, tudo bem?"), first
    raw = json.loads((await db.webhook_events_raw.find_one({"_id": first["_id"]}))["body"])
    assert raw["data"]["messageType"] == "ephemeralMessage"  # the shape really was wrapped
    quoted_id = raw["data"]["key"]["id"]
    await write(
        evolution, db, conn, phone, "e o boleto?", wrap="ephemeralMessage", quoted_key_id=quoted_id, quoted_text="oi"
    )
    media = {"type": "image", "mimetype": "image/png", "base64": base64.b64encode(PNG).decode()}
    await write(evolution, db, conn, phone, "", wrap=["ephemeralMessage", "viewOnceMessageV2"], media=media)

    async def settled_thread() -> list[dict[str, Any]] | None:
        items = await thread(client, tenant, ticket["id"])
        return items if len(items) == 3 and items[2]["media"]["status"] == "ready" else None

    _, reply, image = await wait_for(settled_thread, timeout=30)
    assert (reply["type"], reply["body"]) == ("text", "e o boleto?")
    assert reply["quoted"]["body"] == "oi"
    assert (image["type"], image["body"]) == ("image", "")
    assert image["media"]["sha256"] == hashlib.sha256(PNG).hexdigest()


def test_wrappers_are_unwrapped_at_any_depth_up_to_a_bound_and_the_type_comes_from_the_content() -> None:
    """The unwrap rule, read straight off the parser."""
    nested = {"ephemeralMessage": {"message": {"viewOnceMessageV2": {"message": {"imageMessage": {"caption": "x"}}}}}}
    event = _parsed(nested, "ephemeralMessage")
    assert isinstance(event, InboundMessage) and (event.type, event.body) == ("image", "x") and event.media
    album_item = _parsed({"associatedChildMessage": {"message": {"imageMessage": {"caption": "1 de 3"}}}}, "")
    assert (album_item.type, album_item.body) == ("image", "1 de 3")  # Baileys 7 album items
    document = {"documentWithCaptionMessage": {"message": {"documentMessage": {"fileName": "a.pdf", "caption": "nf"}}}}
    event = _parsed(document, "documentWithCaptionMessage")
    assert (event.type, event.body, event.media["name"]) == ("document", "nf", "a.pdf")
    # What a wrapped message quotes is read inside the wrapper, and a wrapped quote is unwrapped too.
    context = {
        "stanzaId": "3EB0Q",
        "quotedMessage": {"viewOnceMessageV2": {"message": {"videoMessage": {"caption": "o defeito"}}}},
    }
    event = _parsed(
        {"ephemeralMessage": {"message": {"extendedTextMessage": {"text": "veja", "contextInfo": context}}}}, ""
    )
    assert event.quoted is not None and (event.quoted.type, event.quoted.body) == ("video", "o defeito")
    # A protocol message (a revoke, the chat's timer) inside a wrapper is still no conversation message.
    wrapped_protocol = {"ephemeralMessage": {"message": {"protocolMessage": {"type": "EPHEMERAL_SETTING"}}}}
    assert isinstance(_parsed(wrapped_protocol, "ephemeralMessage"), Ignored)
    # Past the bound (Baileys' 5), or a wrapper without a message: kept as the wrapper's type.
    deep: dict[str, Any] = {"conversation": "fundo"}
    for _ in range(6):
        deep = {"ephemeralMessage": {"message": deep}}
    assert _parsed(deep, "ephemeralMessage").type == "ephemeralMessage"
    assert _parsed({"viewOnceMessageV2": {}}, "viewOnceMessageV2").type == "viewOnceMessageV2"
    # Metadata beside the content is not the content (old getContentType could name it first).
    sender_key = {"senderKeyDistributionMessage": {"groupId": "g"}, "conversation": "oi"}
    sender_key = _parsed(sender_key, "senderKeyDistributionMessage")
    assert (sender_key.type, sender_key.body) == ("text", "oi")


# ---- B: answers to buttons/lists, polls, types the code does not know ---------------------------


@pytest.mark.parametrize(
    ("message_type", "part"),
    [
        (
            "buttonsResponseMessage",
            {"selectedButtonId": "fin", "selectedDisplayText": "Financeiro", "type": "DISPLAY_TEXT"},
        ),
        (
            "listResponseMessage",
            {"title": "Financeiro", "listType": "SINGLE_SELECT", "singleSelectReply": {"selectedRowId": "fin"}},
        ),
        ("templateButtonReplyMessage", {"selectedId": "fin", "selectedDisplayText": "Financeiro", "selectedIndex": 1}),
        (
            "interactiveResponseMessage",
            {
                "body": {"text": "Financeiro", "format": "DEFAULT"},
                "nativeFlowResponseMessage": {"name": "menu", "paramsJson": '{"id":"fin"}', "version": 1},
            },
        ),
    ],
)
async def test_a_button_or_list_reply_shows_the_option_the_client_chose(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    message_type: str,
    part: dict[str, Any],
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    await post(client, db, conn, upsert(pn_key(unique_phone()), {message_type: part}, message_type))
    (m,) = await all_messages(client, tenant)
    # Before the fix: (message_type, "") — the UI showed "[Anexo]".
    assert (m["type"], m["body"]) == ("text", "Financeiro")


@pytest.mark.parametrize(
    ("message_type", "part", "kind", "words"),
    [
        (
            "pollCreationMessageV3",
            {
                "name": "Qual horário?",
                "options": [{"optionName": "manhã"}, {"optionName": "tarde"}],
                "selectableOptionsCount": 1,
            },
            "text",
            ["Qual horário?", "manhã", "tarde"],
        ),
        (
            "eventMessage",
            {"name": "Visita técnica", "description": "sexta 10h", "startTime": "1760000000"},
            "eventMessage",  # not known: keeps its type, so the UI can say it cannot show it
            ["Visita técnica"],
        ),
    ],
)
async def test_a_poll_or_a_message_of_a_type_the_code_does_not_know_keeps_its_words(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    message_type: str,
    part: dict[str, Any],
    kind: str,
    words: list[str],
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    await post(client, db, conn, upsert(pn_key(unique_phone()), {message_type: part}, message_type))
    (m,) = await all_messages(client, tenant)
    assert m["type"] == kind, m  # before the fix: body "" with type == message_type
    assert all(w in m["body"] for w in words), m["body"]


# ---- C: upserts without content ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message_type", "message"),
    [
        ("albumMessage", {"albumMessage": {"expectedImageCount": 3}, "messageContextInfo": {"messageSecret": "eA=="}}),
        ("unknown", {"messageContextInfo": {"messageSecret": "eA=="}}),  # getContentType found nothing
        ("unknown", {"senderKeyDistributionMessage": {"groupId": "x"}, "messageContextInfo": {}}),
        ("ephemeralMessage", {"ephemeralMessage": {"message": {"messageContextInfo": {}}}}),
    ],
)
async def test_an_upsert_without_content_does_not_open_a_ticket(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    message_type: str,
    message: dict[str, Any],
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    raw = await post(client, db, conn, upsert(pn_key(unique_phone()), message, message_type))
    # Before the fix: one espera ticket whose only message was (message_type, "") — "[Anexo]".
    assert (raw["status"], raw["result"]) == ("ignored", ["ignored: no content"]), raw
    assert await tickets_of(client, tenant) == []
    assert json.loads(raw["body"])["data"]["message"] == message  # kept raw


async def test_media_without_caption_and_a_type_the_code_does_not_know_are_content(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """Only a truly contentless upsert is ignored: an image without a caption is a message (its
    bytes are the content), and so is a type without words the code does not know."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    phone = unique_phone()
    image = {"imageMessage": {"url": "u", "mimetype": "image/jpeg"}, "messageContextInfo": {}}
    await post(client, db, conn, upsert(pn_key(phone), image, "imageMessage"))
    await post(client, db, conn, upsert(pn_key(phone), {"lottieStickerMessage": {}}, "lottieStickerMessage"))
    messages = await all_messages(client, tenant)
    assert shown(messages) == [("in", "image", ""), ("in", "lottieStickerMessage", "")]
    assert messages[0]["media"] is not None and messages[0]["type"] in MEDIA_KINDS


# ---- D: the QR code limit -------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["as_sent", "reversed"])
async def test_qr_code_limit_reached_is_recorded_on_the_connection(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any, order: str
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution, open_=False)  # waiting for the QR scan
    qr = envelope("qrcode.updated", {"message": "QR code limit reached, please login again", "statusCode": 500})
    state = envelope(
        "connection.update",
        {"instance": conn["instance_name"], "state": "refused", "statusReason": 428, "wuid": None, "profileName": None},
    )
    # Evolution does not await one post before the next: they can arrive in either order.
    payloads = (qr, state) if order == "as_sent" else (state, qr)
    raws = [await post(client, db, conn, p) for p in payloads]
    # Before the fix: both "failed" ("qrcode.updated without data.qrcode", "unknown connection state 'refused'").
    assert [r["status"] for r in raws] == (["ignored", "processed"] if order == "as_sent" else ["processed", "ignored"])
    got = (await client.get(f"{API}/whatsapp-connections/{conn['id']}", headers=tenant.headers)).json()
    # Before the fix: still "connecting" with the last (dead) QR code shown.
    assert got["status"] == "close" and got["qr_code"] is None, got


# ---- E: receipts with a status that is no delivery state ------------------------------------------


@pytest.mark.parametrize("status", ["DELETED", "SOMETHING_NEW", 9])
async def test_a_receipt_with_a_status_the_code_does_not_know_is_ignored_not_failed(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any, status: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    data = {"keyId": "3EB0ABC", "remoteJid": "5511999990000@s.whatsapp.net", "fromMe": True, "status": status}
    raw = await post(client, db, conn, envelope("messages.update", data))
    # Before the fix: "failed", "unknown message status 'DELETED'".
    assert raw["status"] == "ignored", (raw["status"], raw.get("error"), raw.get("result"))
    assert raw["result"] == [f"ignored: message status {str(status)!r} is not a delivery state"]
    assert await db.receipts_parked.find_one({"_id": f"{conn['id']}:3EB0ABC"}) is None  # nothing kept aside
