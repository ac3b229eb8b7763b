"""Evolution API v2 adapter (REST over httpx; webhook payloads as Evolution posts them).

Idempotency: Evolution's documented sendText body (number, text, delay, quoted, linkPreview,
mentions) has no client-supplied message id or idempotency key, so a resend after an ambiguous
failure (timeout after the request left) can deliver twice; the outbound worker keeps that
window to "the process died or the call timed out mid-send" (see backend/outbound/worker.py).
"""

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx

from backend.clients.phones import remote_jid
from backend.connections.providers.base import (
    CALL,
    NOT_ON_WHATSAPP,
    REVOKE_CHANGE,
    VIDEO_CALL,
    ConnectionChange,
    ConnectionStatus,
    DeliveryStatus,
    FetchedMedia,
    Ignored,
    InboundEvent,
    InboundMessage,
    InstanceCreated,
    MessageChange,
    OutboundMedia,
    ProviderError,
    QrChange,
    QrCode,
    Quote,
    SentMessage,
    StatusUpdate,
    WebhookParseError,
    WebhookSetting,
    change_key,
)

NAME = "evolution"
# MESSAGES_SET: the history sync after a (re)pairing, the only way a message received while the
# instance was logged out reaches us (Evolution's `messaging-history.set` handler). EDITED and
# DELETE: a message's text edited, or the message deleted for everyone. CALL: a client calling
# the number, which nobody in the helpdesk would otherwise know of.
WEBHOOK_EVENTS = [
    "QRCODE_UPDATED",
    "CONNECTION_UPDATE",
    "MESSAGES_UPSERT",
    "MESSAGES_UPDATE",
    "MESSAGES_SET",
    "MESSAGES_EDITED",
    "MESSAGES_DELETE",
    "CALL",
]

# "refused": Evolution gave up on the pairing (its QR code limit was reached) and ended the
# session: the connection is closed and needs a new connect.
_STATES: dict[str, ConnectionStatus] = {
    "open": "open",
    "connecting": "connecting",
    "close": "close",
    "refused": "close",
}
# Baileys' WAMessageStatus, by name (v2) or number (older payloads).
_DELIVERY: dict[str, DeliveryStatus] = {
    "ERROR": "failed",
    "0": "failed",
    "PENDING": "pending",
    "1": "pending",
    "SERVER_ACK": "sent",
    "2": "sent",
    "DELIVERY_ACK": "delivered",
    "3": "delivered",
    "READ": "read",
    "4": "read",
    "PLAYED": "read",
    "5": "read",
}
_TYPES = {
    "conversation": "text",
    "extendedTextMessage": "text",
    "imageMessage": "image",
    "videoMessage": "video",
    "audioMessage": "audio",
    "documentMessage": "document",
    "stickerMessage": "sticker",
    "locationMessage": "location",
    "contactMessage": "contact",
    "contactsArrayMessage": "contact",
    "liveLocationMessage": "location",
    "ptvMessage": "video",
}
_SEND_MEDIA_TYPES = ("image", "video", "audio", "document")  # sendMedia's `mediatype`
# The sends without caption: endpoint and body field (Evolution v2 sendSticker takes a WebP).
_BARE_SENDS = {"voice": ("sendWhatsAppAudio", "audio"), "sticker": ("sendSticker", "sticker")}
# Baileys' media message types (whose bytes are fetched) and the types that carry no bytes.
_MEDIA_TYPES = {"image", "video", "audio", "document", "sticker"}
# Baileys' future-proof wrappers (Utils/messages.ts normalizeMessageContent): the real content is
# in `<wrapper>.message`, possibly wrapped again (a view-once in a disappearing-messages chat).
# Evolution v2 posts them as they come, `messageType` naming the wrapper. Baileys also unwraps
# `editedMessage`; not here: an edit is not a new message (Evolution posts edits as MESSAGES_EDITED).
_WRAPPERS = (
    "ephemeralMessage",
    "viewOnceMessage",
    "documentWithCaptionMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "associatedChildMessage",
    "groupStatusMessage",
    "groupStatusMessageV2",
)
_UNWRAP_DEPTH = 5  # Baileys' bound too: a payload nesting wrappers deeper is not WhatsApp's
# Keys that are never a message's content: delivery metadata (getContentType skips them too).
_NOT_CONTENT = {"senderKeyDistributionMessage", "messageContextInfo"}
# Content keys that announce content and carry none themselves: an album's header (its images
# and videos come as messages of their own). An upsert whose content is only this is no message.
_CONTENTLESS = {"albumMessage"}
# Not conversation messages: revokes/edits/ephemeral settings, and reactions (kept raw, ignored).
_NOT_CONVERSATION = ("protocolMessage",)
# Baileys' proto.Message.ProtocolMessage.Type, by name or number: what Evolution posts as
# MESSAGES_EDITED (any protocol message; only these two change a message a person sees).
_REVOKE, _MESSAGE_EDIT = ("REVOKE", 0), ("MESSAGE_EDIT", 14)
# A client's answer to buttons, a list, a template's buttons or an interactive (native flow)
# message: the option's text as they saw it, else its id.
_REPLIES: dict[str, tuple[tuple[str, ...], ...]] = {
    "buttonsResponseMessage": (("selectedDisplayText",), ("selectedButtonId",)),
    "listResponseMessage": (("title",), ("singleSelectReply", "selectedRowId"), ("description",)),
    "templateButtonReplyMessage": (("selectedDisplayText",), ("selectedId",)),
    "interactiveResponseMessage": (("body", "text"), ("nativeFlowResponseMessage", "name")),
}
_POLLS = ("pollCreationMessage", "pollCreationMessageV2", "pollCreationMessageV3", "pollCreationMessageV5")
# A type this parser does not know keeps its words: the first of these that has some.
_WORDS: tuple[tuple[str, ...], ...] = (
    *((field,) for field in ("caption", "text", "name", "title", "description", "contentText", "selectedDisplayText")),
    ("body", "text"),
)
_LOCATION_TYPES = ("locationMessage", "liveLocationMessage")
_VCARD_TEL = re.compile(r"^(?:item\d+\.)?TEL(?P<params>[^:]*):(?P<value>.*)$", re.IGNORECASE)
_VCARD_WAID = re.compile(r"waid=(\d+)", re.IGNORECASE)
_DIGITS = re.compile(r"^\d{8,15}$")


def _quoted_payload(quoted: Quote, *, to: str) -> dict[str, Any]:
    """Evolution's `quoted`: the quoted message's key, and its content so that Evolution need not
    look it up in its own store (which may not hold it). Baileys puts that content in the reply's
    contextInfo as it is: a photo, a video, a voice note, a document or a sticker goes as one (the
    client's phone shows a quote of a photo with its caption, without the thumbnail WhatsApp
    keeps), anything else as its text."""
    caption = {"caption": quoted.body} if quoted.body else {}
    mime = {"mimetype": quoted.mime} if quoted.mime else {}
    as_media: dict[str, dict[str, Any]] = {
        "image": {"imageMessage": {**caption, **mime}},
        "video": {"videoMessage": {**caption, **mime}},
        "audio": {"audioMessage": {**mime, "ptt": quoted.voice}},
        "document": {"documentMessage": {**caption, **mime, "fileName": quoted.name or quoted.body}},
        "sticker": {"stickerMessage": {**mime}},
    }
    return {
        "key": {"id": quoted.provider_message_id, "remoteJid": remote_jid(to), "fromMe": quoted.from_me},
        "message": as_media.get(quoted.type, {"conversation": quoted.body}),
    }


def _default_name(media: OutboundMedia) -> str:
    """WhatsApp shows a document's file name; one without a name gets its type's extension."""
    extension = media.mime.rsplit("/", 1)[-1].split("+", 1)[0] if "/" in media.mime else "bin"
    return f"arquivo.{extension}"


def event_name(value: str) -> str:
    """'messages.upsert', 'MESSAGES_UPSERT' and the by-events path 'messages-upsert' are one event."""
    return value.strip().upper().replace(".", "_").replace("-", "_")


def _state(value: Any) -> ConnectionStatus:
    state = _STATES.get(str(value).lower())
    if state is None:
        raise WebhookParseError(f"unknown connection state {value!r}")
    return state


def _not_on_whatsapp(response: httpx.Response) -> bool:
    """Evolution refuses a send to a number WhatsApp does not know with 400 and that number's
    check in `response.message`: [{"exists": false, "jid": "...@s.whatsapp.net", "number": ...}]."""
    if response.status_code != 400:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    found = _obj(_obj(body).get("response")).get("message")
    return isinstance(found, list) and any(isinstance(m, dict) and m.get("exists") is False for m in found)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _qr_from(data: dict[str, Any]) -> str | None:
    base64 = data.get("base64")
    return str(base64) if base64 else None


# Servers of one person's chat (Baileys 7 jidDecode): by number, and by LID (WhatsApp's privacy
# addressing); "hosted" ones are business accounts hosted by Meta, the same kinds of ids.
_NUMBER_SERVERS = ("s.whatsapp.net", "c.us", "hosted")
_LID_SERVERS = ("lid", "hosted.lid")


def _jid_user(jid: Any, servers: tuple[str, ...]) -> str | None:
    """The user part of a JID on one of `servers` ("5511…:12@s.whatsapp.net" → "5511…", the
    device dropped), or None."""
    user, _, server = str(jid or "").partition("@")
    digits = user.split(":", 1)[0]
    return digits if server in servers and _DIGITS.match(digits) else None


def _chat_address(key: dict[str, Any]) -> tuple[str, str] | None:
    """(number, LID) of a person's chat, either "" when the key does not carry it, or None for
    chats that are not one person's (groups, broadcasts, newsletters). Baileys 7 names the chat
    by `remoteJid` and puts the other form in `remoteJidAlt` when the stanza had it; Evolution
    versions before it used `senderPn` / `senderLid`. A LID chat may come without any number:
    it is still the client's chat (backend/clients/phones.py)."""
    jid, alt = key.get("remoteJid"), key.get("remoteJidAlt")
    if (lid := _jid_user(jid, _LID_SERVERS)) is not None:
        phone = _jid_user(alt, _NUMBER_SERVERS) or _jid_user(key.get("senderPn"), _NUMBER_SERVERS)
        return phone or "", lid
    if (phone := _jid_user(jid, _NUMBER_SERVERS)) is not None:
        lid = _jid_user(alt, _LID_SERVERS) or _jid_user(key.get("senderLid"), _LID_SERVERS)
        return phone, lid or ""
    return None


def _posted_at(payload: dict[str, Any]) -> datetime | None:
    """The envelope's `date_time` (ISO 8601, by Evolution's clock), None when absent or unreadable."""
    value = payload.get("date_time")
    try:
        at = datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
    return at.astimezone(UTC) if at is not None and at.tzinfo is not None else None


def _timestamp(value: Any) -> datetime | None:
    try:
        seconds = int(value)
        return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None
    except (TypeError, ValueError, OverflowError, OSError):  # not a number, NaN, ±inf, past year 9999
        return None


@dataclass(frozen=True)
class _Content:
    kind: str
    body: str
    media: dict[str, Any] | None = None
    location: dict[str, Any] | None = None
    contacts: list[dict[str, Any]] | None = None


def _number(value: Any) -> int | None:
    """Baileys' lengths and sizes: a number, a numeric string, or a protobuf Long {low, high}."""
    if isinstance(value, dict) and "low" in value:
        try:
            return (int(value.get("high") or 0) << 32) + (int(value["low"]) & 0xFFFFFFFF)
        except (TypeError, ValueError):
            return None
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number >= 0 else None


def _sha256_hex(value: Any) -> str | None:
    """WhatsApp's fileSha256 (of the decrypted file), base64 in the webhook's JSON."""
    if not isinstance(value, str) or not value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def _media(part: dict[str, Any]) -> dict[str, Any]:
    """What the message shows before the bytes arrive; `status` moves on when they do."""
    media: dict[str, Any] = {"status": "pending", "mime": str(part.get("mimetype") or "").split(";")[0].strip()}
    name = part.get("fileName") or part.get("title")
    if isinstance(name, str) and name:
        media["name"] = name
    for field, key in (("size", "fileLength"), ("duration", "seconds"), ("width", "width"), ("height", "height")):
        value = _number(part.get(key))
        if value is not None and (value > 0 or field == "size"):
            media[field] = value
    if (digest := _sha256_hex(part.get("fileSha256"))) is not None:
        media["sha256"] = digest
    if part.get("ptt") is True:
        media["voice"] = True
    return media


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _location(part: dict[str, Any]) -> dict[str, Any]:
    return {
        "latitude": _float(part.get("degreesLatitude")),
        "longitude": _float(part.get("degreesLongitude")),
        "name": str(part.get("name") or ""),
        "address": str(part.get("address") or ""),
    }


def parse_vcard(vcard: str, display_name: str = "") -> dict[str, Any]:
    """{name, phones} of one vCard: the FN line (else the display name) and every TEL, as the
    WhatsApp id (`waid`) when the card carries one, else the number's digits."""
    name, phones = "", []
    for line in vcard.replace("\r\n", "\n").split("\n"):
        line = line.strip()
        if line.upper().startswith("FN:") or line.upper().startswith("FN;"):
            name = line.split(":", 1)[1].strip()
        elif match := _VCARD_TEL.match(line):
            waid = _VCARD_WAID.search(match["params"])
            digits = waid.group(1) if waid else "".join(ch for ch in match["value"] if ch.isdigit())
            if digits and digits not in phones:
                phones.append(digits)
    return {"name": name or display_name, "phones": phones}


def _contacts(message_type: str, part: dict[str, Any]) -> list[dict[str, Any]]:
    cards = part.get("contacts") if message_type == "contactsArrayMessage" else [part]
    out = []
    for card in cards if isinstance(cards, list) else []:
        if isinstance(card, dict):
            out.append(parse_vcard(str(card.get("vcard") or ""), str(card.get("displayName") or "")))
    return out


def _content_type(message: dict[str, Any], hint: str) -> str:
    """Baileys' getContentType: Evolution's `messageType` when the message holds it, else the
    first key that is 'conversation' or names a ...Message, metadata aside; else a media type
    the hint names (its bytes may still be fetched by the key); "" when none of these."""
    if hint and hint in message and hint not in _NOT_CONTENT:
        return hint
    found = next((k for k in message if (k == "conversation" or "Message" in k) and k not in _NOT_CONTENT), "")
    return found or (hint if _TYPES.get(hint) in _MEDIA_TYPES else "")


def _unwrap(message: dict[str, Any], hint: str) -> tuple[dict[str, Any], str]:
    """The content inside Baileys' wrappers (`_WRAPPERS`, at most `_UNWRAP_DEPTH` deep) and its
    type, taken from the unwrapped content ("" when that holds none). A wrapper without a message
    object stays as it is (the type names the wrapper): something came, kept with that type."""
    kind = _content_type(message, hint)
    for _ in range(_UNWRAP_DEPTH):
        inner = _obj(message.get(kind)).get("message") if kind in _WRAPPERS else None
        if not isinstance(inner, dict):
            break
        message, kind = inner, _content_type(inner, "")
    return message, kind


def _text_at(part: dict[str, Any], path: tuple[str, ...]) -> str:
    value: Any = part
    for step in path:
        value = _obj(value).get(step)
    return value.strip() if isinstance(value, str) else ""


def _words(part: dict[str, Any], paths: tuple[tuple[str, ...], ...]) -> str:
    return next((text for path in paths if (text := _text_at(part, path))), "")


def _poll(part: dict[str, Any]) -> str:
    """A poll as text: its question, then one line per option."""
    options = part.get("options")
    names = [_text_at(o, ("optionName",)) for o in options if isinstance(o, dict)] if isinstance(options, list) else []
    return "\n".join([_text_at(part, ("name",)), *(f"- {name}" for name in names if name)]).strip()


def _content(message: dict[str, Any], message_type: str) -> _Content | None:
    """Type, body and what else the message carries, from Baileys' message object, unwrapped
    first; None when it has no content at all (see `_parse_upsert`)."""
    message, message_type = _unwrap(message, message_type)
    if "conversation" in message:
        return _Content("text", str(message.get("conversation") or ""))
    ext = message.get("extendedTextMessage")
    if isinstance(ext, dict):
        return _Content("text", str(ext.get("text") or ""))
    if not message_type or message_type in _CONTENTLESS:
        return None
    part = _obj(message.get(message_type))
    kind = _TYPES.get(message_type, message_type)
    body = str(part.get("caption") or part.get("text") or "")
    if kind in _MEDIA_TYPES:
        return _Content(kind, body, media=_media(part))
    if message_type in _LOCATION_TYPES:
        return _Content("location", body, location=_location(part))
    if message_type in ("contactMessage", "contactsArrayMessage"):
        return _Content("contact", body, contacts=_contacts(message_type, part))
    if message_type in _REPLIES:
        return _Content("text", _words(part, _REPLIES[message_type]))
    if message_type in _POLLS:
        return _Content("text", _poll(part))
    # A type this parser does not know: kept with its own type (the UI says it cannot show it)
    # and its words, if it has any.
    return _Content(kind, _words(part, _WORDS))


def _inline_base64(item: dict[str, Any], message: dict[str, Any]) -> str | None:
    """Evolution with webhook base64 on sends the media's bytes in `message.base64`."""
    value = message.get("base64") or item.get("base64")
    return value if isinstance(value, str) and value else None


def media_contents(payload: Any, *, event_hint: str | None) -> dict[str, dict[str, Any]]:
    """By message key id, the content of each media message an upsert delivery carries, for
    getBase64FromMediaMessage (`message.message`, next to the key): Baileys' message object as
    posted, unwrapped by `_unwrap` (the parser's rule). Evolution v2.3.6 unwraps only its own
    MessageSubtype list itself (ephemeral, view once, view once V2, document with caption) and
    answers 400 "The message is not of the media type" for content inside the others
    (viewOnceMessageV2Extension, Baileys 7's album items in associatedChildMessage); and without
    the content it reads the message from its own store, which it may not keep. The media's
    fields go as received: `mediaKey` as Evolution serialized it (an object of byte values, which
    it reads back into bytes; Baileys also takes base64). Inline bytes (`base64`) are left out.
    Nothing for other events, or for messages that are not media."""
    if not isinstance(payload, dict):
        return {}
    raw_event = payload.get("event") or event_hint
    if not isinstance(raw_event, str) or event_name(raw_event) != "MESSAGES_UPSERT":
        return {}
    data = payload.get("data")
    items = data.get("messages") if isinstance(data, dict) and "messages" in data else data
    found: dict[str, dict[str, Any]] = {}
    for item in map(_obj, items if isinstance(items, list) else [items]):
        key_id = _obj(item.get("key")).get("id")
        message = item.get("message")
        if not isinstance(key_id, str) or not key_id or not isinstance(message, dict):
            continue
        content, kind = _unwrap(message, str(item.get("messageType") or ""))
        if _TYPES.get(kind) in _MEDIA_TYPES and isinstance(content.get(kind), dict):
            found[key_id] = {k: v for k, v in content.items() if k != "base64"}
    return found


def decode_base64(value: str) -> bytes:
    """Plain base64 or a data URL ("data:image/png;base64,..."). Decoded in one pass (strict: only
    the alphabet and its padding); only a value that fails that is read again without its
    whitespace (line-wrapped base64), as strictly, rather than copying every value first."""
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        pass
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(str(exc)) from exc


def _quoted(message: dict[str, Any], message_type: str, item: dict[str, Any]) -> Quote | None:
    """What a client's message quotes: Baileys puts `contextInfo` (`stanzaId`: the quoted message's
    id, `quotedMessage`: its content) on the message's part, inside any wrapper; some Evolution
    versions repeat it on the upsert itself."""
    message, message_type = _unwrap(message, message_type)
    part = _obj(message.get(message_type)) if message_type else {}
    context = part.get("contextInfo") if isinstance(part.get("contextInfo"), dict) else item.get("contextInfo")
    if not isinstance(context, dict) or not isinstance(context.get("stanzaId"), str) or not context["stanzaId"]:
        return None
    content = _content(_obj(context.get("quotedMessage")), "")
    return Quote(
        provider_message_id=context["stanzaId"],
        body=content.body if content is not None else "",
        type=content.kind if content is not None else "text",
    )


def _parse_upsert(data: Any, *, batch: bool = False) -> list[InboundEvent]:
    """`batch`: a history sync's array, where an item this parser refuses is one item left out
    (its raw delivery keeps it), not a delivery refused whole."""
    items = data.get("messages") if isinstance(data, dict) and "messages" in data else data
    items = items if isinstance(items, list) else [items]
    events: list[InboundEvent] = []
    for item in items:
        try:
            events.append(_parse_item(item))
        except WebhookParseError as exc:
            if not batch:
                raise
            events.append(Ignored(f"history item refused: {exc}"))
    return events


def _parse_item(item: Any) -> InboundEvent:
    """One upsert's message (Evolution's prepareMessage shape)."""
    if not isinstance(item, dict) or not isinstance(item.get("key"), dict):
        raise WebhookParseError("messages.upsert without data.key")
    key = item["key"]
    key_id = key.get("id")
    if not key_id or not isinstance(key_id, str):
        raise WebhookParseError("messages.upsert without data.key.id")
    address = _chat_address(key)
    if address is None:
        return Ignored("not a person's chat", {"remoteJid": key.get("remoteJid")})
    message = item.get("message")
    message_type = str(item.get("messageType") or "")
    if message is None:  # protocol messages (revokes, reactions to nothing) carry none
        return Ignored("no message content", {"messageType": message_type})
    if not isinstance(message, dict):
        raise WebhookParseError("data.message is not an object")
    unwrapped, content_type = _unwrap(message, message_type)
    if "reactionMessage" in (message_type, content_type):
        return _reaction(_obj(unwrapped.get("reactionMessage")), key, item, address)
    if not_conversation := next((t for t in (message_type, content_type) if t in _NOT_CONVERSATION), None):
        return Ignored(f"{not_conversation} is not a conversation message")
    content = _content(message, message_type)
    # No content: nothing but metadata (messageContextInfo, senderKeyDistributionMessage; an
    # empty message; Evolution's messageType "unknown"), or only an album's header. Opening a
    # ticket with an empty message for it would show the agent nothing; the raw event keeps
    # it. Everything else is content: a media message without caption (its bytes are), a
    # wrapper with nothing inside, a type this parser does not know (kept with its type).
    if content is None:
        return Ignored("no content", {"messageType": message_type})
    return InboundMessage(
        provider_message_id=key_id,
        phone=address[0],
        lid=address[1],
        from_me=bool(key.get("fromMe")),
        push_name=str(item.get("pushName") or ""),
        type=content.kind,
        body=content.body,
        media=content.media,
        sent_at=_timestamp(item.get("messageTimestamp")),
        quoted=_quoted(message, message_type, item),
        location=content.location,
        contacts=content.contacts,
        inline_base64=_inline_base64(item, message) if content.media is not None else None,
    )


def _parse_update(data: Any) -> list[InboundEvent]:
    items = data if isinstance(data, list) else [data]
    events: list[InboundEvent] = []
    for item in items:
        if not isinstance(item, dict):
            raise WebhookParseError("messages.update data is not an object")
        key = _obj(item.get("key"))
        key_id = item.get("keyId") or key.get("id")
        raw_status = item.get("status")
        if raw_status is None and isinstance(item.get("update"), dict):
            raw_status = item["update"].get("status")
        if not key_id or raw_status is None:
            raise WebhookParseError("messages.update without keyId/status")
        status = _DELIVERY.get(str(raw_status).upper())
        if status is None:
            # Evolution v2 reports "DELETED" for an update with a status Baileys did not name (a
            # revoke, a poll vote); anything else unknown is as little a delivery state.
            events.append(
                Ignored(f"message status {str(raw_status)[:40]!r} is not a delivery state", {"keyId": str(key_id)})
            )
            continue
        events.append(StatusUpdate(provider_message_id=str(key_id), status=status))
    return events


def _reaction(
    reaction: dict[str, Any], key: dict[str, Any], item: dict[str, Any], address: tuple[str, str]
) -> InboundEvent:
    """A reaction upsert: `reactionMessage.key` names the message reacted to, `text` the emoji
    ("" takes the reaction back); the upsert's own key is this reaction's."""
    target = _obj(reaction.get("key")).get("id")
    if not isinstance(target, str) or not target:
        return Ignored("reaction to no message")
    return MessageChange(
        kind="reaction",
        provider_message_id=target,
        change_id=str(key["id"]),
        body=str(reaction.get("text") or ""),
        from_me=bool(key.get("fromMe")),
        at=_timestamp(item.get("messageTimestamp")),
        phone=address[0],
        lid=address[1],
    )


def _millis(value: Any) -> datetime | None:
    seconds = _number(value)
    return _timestamp(seconds // 1000) if seconds is not None else None


def _edit_stamp(protocol: dict[str, Any]) -> str | None:
    """An edit's own name: the `timestampMs` Baileys gives its protocol message when it is made,
    the same in the answer to our `updateMessage` and in the MESSAGES_EDITED report of it."""
    stamp = _number(protocol.get("timestampMs"))
    return str(stamp) if stamp is not None else None


def _parse_edited(data: Any) -> list[InboundEvent]:
    """MESSAGES_EDITED: the protocol message itself ({key, type, editedMessage, timestampMs}). Its
    key names the changed message by id (from its sender's side: the id is the connection's) and
    its chat, by which the echo of an agent's edit is told from one made on the phone. Other
    protocol messages come this way too and change nothing a person sees."""
    protocol = _obj(data)
    key = _obj(protocol.get("key"))
    target = key.get("id")
    kind = protocol.get("type")
    if not isinstance(target, str) or not target:
        return [Ignored("protocol message without a key")]
    at = _millis(protocol.get("timestampMs"))
    if kind in _REVOKE:
        return [MessageChange(kind="revoke", provider_message_id=target, change_id=REVOKE_CHANGE, at=at)]
    edited = protocol.get("editedMessage")
    if kind in _MESSAGE_EDIT and isinstance(edited, dict):
        content = _content(edited, "")
        if content is not None:
            stamp = _edit_stamp(protocol) or hashlib.sha256(content.body.encode()).hexdigest()[:16]
            phone, lid = _chat_address(key) or ("", "")
            edit = MessageChange(
                kind="edit", provider_message_id=target, change_id=stamp, body=content.body, at=at, phone=phone, lid=lid
            )
            return [edit]
    return [Ignored("protocol message that changes no message", {"type": str(kind)[:40]})]


def _parse_deleted(data: Any) -> list[InboundEvent]:
    """MESSAGES_DELETE: Evolution's messages.update of a revoke (the update's message null) posts
    the revoked message's key."""
    key = _obj(data.get("key") if isinstance(data, dict) and isinstance(data.get("key"), dict) else data)
    target = key.get("id")
    if not isinstance(target, str) or not target:
        raise WebhookParseError("messages.delete without the message's key.id")
    return [MessageChange(kind="revoke", provider_message_id=target, change_id=REVOKE_CHANGE)]


def _parse_call(call: dict[str, Any], *, owner: str) -> InboundEvent:
    """CALL: Baileys' WACallEvent ({id, from, callerPn, isGroup, isVideo, status, date}), one per
    step of a call. The offer is the client's attempt to reach the business: filed in its
    conversation as a message of type "call" or "video_call" (one per call id), so a client who
    rang instead of writing is seen; the later steps (ringing, accept, reject, timeout,
    terminate) add nothing. A call our own number places (`from` the instance's) is no client's."""
    status = str(call.get("status") or "")
    if status != "offer":
        return Ignored(f"call {status[:40]}")
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise WebhookParseError("call without id")
    if call.get("isGroup"):
        return Ignored("group call")
    address = _chat_address({"remoteJid": call.get("from"), "remoteJidAlt": call.get("callerPn")})
    ours = _jid_user(owner, _NUMBER_SERVERS)
    if address is None or (ours is not None and address[0] == ours):
        return Ignored("not a person's call", {"from": str(call.get("from"))[:80]})
    return InboundMessage(
        provider_message_id=f"call:{call_id}",
        phone=address[0],
        lid=address[1],
        from_me=False,
        push_name="",
        type=VIDEO_CALL if call.get("isVideo") else CALL,
        body="",
        sent_at=_when(call.get("date")),
    )


def _when(value: Any) -> datetime | None:
    """A Date as JSON carries it (ISO 8601), or epoch seconds."""
    if isinstance(value, str) and not value.isdigit():
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return _timestamp(value)


def parse_webhook(payload: Any, *, event_hint: str | None) -> list[InboundEvent]:
    if not isinstance(payload, dict):
        raise WebhookParseError("payload is not a JSON object")
    raw_event = payload.get("event") or event_hint
    if not raw_event or not isinstance(raw_event, str):
        raise WebhookParseError("payload has no event")
    event = event_name(raw_event)
    data = payload.get("data")
    if data is None:
        raise WebhookParseError(f"{event} without data")
    if event == "MESSAGES_UPSERT":
        return _parse_upsert(data)
    if event == "MESSAGES_SET":  # an array of messages shaped as upserts (Evolution's prepareMessage)
        events = _parse_upsert(data, batch=True)
        return [replace(e, synced=True) if isinstance(e, InboundMessage) else e for e in events]
    if event == "MESSAGES_UPDATE":
        return _parse_update(data)
    if event == "MESSAGES_EDITED":
        return _parse_edited(data)
    if event == "MESSAGES_DELETE":
        return _parse_deleted(data)
    if event == "CALL":
        return [_parse_call(_obj(data), owner=str(payload.get("sender") or ""))]
    if event == "CONNECTION_UPDATE":
        if not isinstance(data, dict) or "state" not in data:
            raise WebhookParseError("connection.update without data.state")
        reason = str(data.get("statusReason") or "")
        if str(data["state"]).lower() == "refused":
            reason = f"refused (QR code limit reached){f': {reason}' if reason else ''}"
        return [ConnectionChange(status=_state(data["state"]), reason=reason, at=_posted_at(payload))]
    if event == "QRCODE_UPDATED":
        qr = data.get("qrcode") if isinstance(data, dict) else None
        if isinstance(qr, dict):
            return [QrChange(qr_code=_qr_from(qr), at=_posted_at(payload))]
        # Evolution's "QR code limit reached" notice ({message, statusCode}) carries no code: its
        # connection.update "refused" follows and closes the connection, which clears the QR
        # code. Recording a change here could reopen "connecting" if it arrived after that one.
        notice = _obj(data)
        details = {"message": str(notice.get("message") or "")[:200], "statusCode": str(notice.get("statusCode"))[:40]}
        return [Ignored("qrcode.updated without a QR code", details)]
    return [Ignored(f"event {event} not handled")]


def _webhook(url: str, headers: dict[str, str]) -> dict[str, Any]:
    """The instance's webhook as Evolution's webhookSchema takes it (create and /webhook/set)."""
    return {
        "enabled": True,
        "url": url,
        "headers": headers,
        "byEvents": False,
        "base64": False,
        "events": WEBHOOK_EVENTS,
    }


class EvolutionProvider:
    name = NAME
    webhook_events = WEBHOOK_EVENTS

    def __init__(self, http: httpx.AsyncClient, *, base_url: str, api_key: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._headers = {"apikey": api_key}

    async def _call(
        self,
        method: str,
        path: str,
        json: dict[str, Any] | None = None,
        *,
        accepted_is_final: bool = False,
        null_is_empty: bool = False,
    ) -> dict[str, Any]:
        """`accepted_is_final`: a 2xx we cannot read still means the provider took the request
        (a send), so retrying it would risk a second delivery. `null_is_empty`: a JSON `null`
        answers "none" there (a lookup), given back as {}."""
        if not self._base:
            raise ProviderError("EVOLUTION_BASE_URL is not configured", retryable=False)
        try:
            response = await self._http.request(method, self._base + path, json=json, headers=self._headers)
        except httpx.TimeoutException as exc:
            raise ProviderError(f"provider timeout: {type(exc).__name__}", retryable=True) from exc
        except httpx.HTTPError as exc:
            raise ProviderError(f"provider unreachable: {type(exc).__name__}: {exc}", retryable=True) from exc
        if response.status_code >= 400:
            if _not_on_whatsapp(response):
                raise ProviderError(NOT_ON_WHATSAPP, retryable=False)
            retryable = response.status_code >= 500 or response.status_code in (408, 429)
            # Evolution's instanceExistsGuard: 404 with this sentence (a wrong base URL's 404 has not).
            missing = response.status_code == 404 and "instance does not exist" in response.text
            raise ProviderError(
                f"provider answered {response.status_code}: {response.text[:300]}",
                retryable=retryable,
                instance_missing=missing,
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise ProviderError("provider answered a body that is not JSON", retryable=not accepted_is_final) from exc
        if body is None and null_is_empty:
            return {}
        if not isinstance(body, dict):
            raise ProviderError("provider answered an unexpected JSON shape", retryable=not accepted_is_final)
        return body

    async def create_instance(
        self, *, instance_name: str, webhook_url: str, webhook_headers: dict[str, str]
    ) -> InstanceCreated:
        body = await self._call(
            "POST",
            "/instance/create",
            {
                "instanceName": instance_name,
                "integration": "WHATSAPP-BAILEYS",
                "qrcode": True,
                "groupsIgnore": True,
                "webhook": _webhook(webhook_url, webhook_headers),
            },
        )
        instance = _obj(body.get("instance"))
        token = body.get("hash")
        if isinstance(token, dict):  # v1 answered {"hash": {"apikey": ...}}
            token = token.get("apikey")
        return InstanceCreated(
            status="open" if instance.get("status") == "open" else "connecting",
            qr_code=_qr_from(_obj(body.get("qrcode"))),
            instance_id=str(instance.get("instanceId")) if instance.get("instanceId") else None,
            instance_token=str(token) if token else None,
        )

    async def update_webhook(
        self, *, instance_name: str, webhook_url: str, webhook_headers: dict[str, str]
    ) -> list[str]:
        await self._call("POST", f"/webhook/set/{instance_name}", {"webhook": _webhook(webhook_url, webhook_headers)})
        return list(WEBHOOK_EVENTS)

    async def webhook_of(self, *, instance_name: str) -> WebhookSetting | None:
        """Evolution's /webhook/find: the instance's webhook row (`null` when it has none)."""
        row = await self._call("GET", f"/webhook/find/{instance_name}", null_is_empty=True)
        if not row:
            return None
        headers = _obj(row.get("headers"))
        events = row.get("events")
        return WebhookSetting(
            url=str(row.get("url") or ""),
            headers={str(k): str(v) for k, v in headers.items()},
            enabled=row.get("enabled") is not False,  # Evolution's column defaults to true
            events=tuple(str(e) for e in events) if isinstance(events, list) else (),
            by_events=row.get("webhookByEvents") is True,
            base64=row.get("webhookBase64") is True,
        )

    async def mark_read(self, *, instance_name: str, to: str, provider_message_ids: list[str]) -> None:
        """Evolution's markMessageAsRead (Baileys' readMessages). It passes on only keys of a
        number's chat or a group: a chat WhatsApp names by LID alone gets no receipt there."""
        chat = remote_jid(to)
        keys = [{"remoteJid": chat, "fromMe": False, "id": pid} for pid in dict.fromkeys(provider_message_ids)]
        await self._call("POST", f"/chat/markMessageAsRead/{instance_name}", {"readMessages": keys})

    async def fetch_qr_code(self, *, instance_name: str) -> QrCode:
        state = await self.connection_state(instance_name=instance_name)
        if state == "open":
            return QrCode(status="open", qr_code=None)
        body = await self._call("GET", f"/instance/connect/{instance_name}")
        return QrCode(status="connecting", qr_code=_qr_from(body))

    async def connection_state(self, *, instance_name: str) -> ConnectionStatus:
        body = await self._call("GET", f"/instance/connectionState/{instance_name}")
        instance = body.get("instance")
        if not isinstance(instance, dict) or "state" not in instance:
            raise ProviderError("connectionState answered without instance.state", retryable=True)
        try:
            return _state(instance["state"])
        except WebhookParseError as exc:
            raise ProviderError(str(exc), retryable=True) from exc

    async def _send(self, path: str, body: dict[str, Any], quoted: Quote | None, *, to: str) -> SentMessage:
        if quoted is not None:
            body["quoted"] = _quoted_payload(quoted, to=to)
        answer = await self._call("POST", path, body, accepted_is_final=True)
        key = answer.get("key")
        if not isinstance(key, dict) or not isinstance(key.get("id"), str) or not key["id"]:
            # The request was accepted, so the message probably left: not retryable, or we would
            # send it twice. The reason is kept on the message.
            raise ProviderError(f"{path.split('/')[2]} answered without key.id", retryable=False)
        return SentMessage(provider_message_id=key["id"])

    async def delete_for_everyone(
        self, *, instance_name: str, to: str, provider_message_id: str, from_me: bool
    ) -> SentMessage:
        body = {"id": provider_message_id, "fromMe": from_me, "remoteJid": remote_jid(to)}
        path = f"/chat/deleteMessageForEveryone/{instance_name}"
        answer = await self._call("DELETE", path, body, accepted_is_final=True)
        key = answer.get("key")  # the revoke's own protocol message
        if not isinstance(key, dict) or not isinstance(key.get("id"), str) or not key["id"]:
            raise ProviderError("deleteMessageForEveryone answered without key.id", retryable=False)
        return SentMessage(provider_message_id=key["id"])

    async def find_messages(
        self, *, instance_name: str, since: datetime, until: datetime, page: int, page_size: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Evolution's findMessages: its own store of the instance's messages (kept while
        DATABASE_SAVE_DATA_NEW_MESSAGE is on), filtered by `messageTimestamp` (both bounds, or
        Evolution ignores the filter), newest first, `offset` records a page."""
        where = {"messageTimestamp": {"gte": since.isoformat(), "lte": until.isoformat()}}
        body = {"where": where, "page": page, "offset": page_size}
        answer = await self._call("POST", f"/chat/findMessages/{instance_name}", body)
        found = _obj(answer.get("messages"))
        records = [r for r in found.get("records") or [] if isinstance(r, dict)]
        return records, int(_number(found.get("pages")) or 0)

    async def edit_text(self, *, instance_name: str, to: str, provider_message_id: str, text: str) -> SentMessage:
        """Evolution's updateMessage ({number, text, key}). Its answer is the edit's own message,
        whose protocol message carries the `timestampMs` the MESSAGES_EDITED report of this edit
        names it by: answered as `change_key("edit", …)`, the id that report's record would take,
        so the report is known as this edit's echo. An answer without it (the edit was accepted
        all the same) gives the message's own key id: its report is then kept as a phone's edit."""
        key = {"id": provider_message_id, "remoteJid": remote_jid(to), "fromMe": True}
        path = f"/chat/updateMessage/{instance_name}"
        answer = await self._call("POST", path, {"number": to, "text": text, "key": key}, accepted_is_final=True)
        message = _obj(answer.get("message"))
        protocol = _obj(message.get("protocolMessage")) or _obj(
            _obj(_obj(message.get("editedMessage")).get("message")).get("protocolMessage")
        )
        if (stamp := _edit_stamp(protocol)) is not None:
            return SentMessage(provider_message_id=change_key("edit", provider_message_id, stamp))
        own = _obj(answer.get("key")).get("id")
        if not isinstance(own, str) or not own:
            raise ProviderError("updateMessage answered without the edit's key", retryable=False)
        return SentMessage(provider_message_id=own)

    async def send_text(
        self, *, instance_name: str, to: str, text: str, idempotency_key: str, quoted: Quote | None = None
    ) -> SentMessage:
        # No idempotency key in Evolution's sendText (see module docstring).
        return await self._send(f"/message/sendText/{instance_name}", {"number": to, "text": text}, quoted, to=to)

    async def send_reaction(
        self, *, instance_name: str, to: str, provider_message_id: str, from_me: bool, emoji: str
    ) -> SentMessage:
        key = {"remoteJid": remote_jid(to), "fromMe": from_me, "id": provider_message_id}
        return await self._send(f"/message/sendReaction/{instance_name}", {"key": key, "reaction": emoji}, None, to=to)

    async def send_media(
        self,
        *,
        instance_name: str,
        to: str,
        media: OutboundMedia,
        caption: str,
        idempotency_key: str,
        quoted: Quote | None = None,
    ) -> SentMessage:
        """Inline base64 (Evolution also takes a URL, which would have to be public: ours are not).
        A voice note goes to sendWhatsAppAudio, which WhatsApp shows as recorded (push-to-talk);
        a sticker to sendSticker; other files to sendMedia with their type. No idempotency key here either."""
        data = base64.b64encode(media.data).decode("ascii")
        if media.kind in _BARE_SENDS:
            endpoint, field = _BARE_SENDS[media.kind]
            return await self._send(f"/message/{endpoint}/{instance_name}", {"number": to, field: data}, quoted, to=to)
        body = {
            "number": to,
            "mediatype": media.kind if media.kind in _SEND_MEDIA_TYPES else "document",
            "mimetype": media.mime,
            "caption": caption,
            "media": data,
            "fileName": media.name or _default_name(media),
        }
        return await self._send(f"/message/sendMedia/{instance_name}", body, quoted, to=to)

    async def fetch_media(
        self,
        *,
        instance_name: str,
        provider_message_id: str,
        remote_jid: str,
        from_me: bool,
        content: dict[str, Any] | None = None,
    ) -> FetchedMedia:
        """Evolution v2 `POST /chat/getBase64FromMediaMessage/{instance}`: given the message's key
        and its content (`media_contents`) it downloads and decrypts the media from WhatsApp from
        that content; given the key alone it looks the message up in its own store first (which
        fails when it saves no messages, or holds content in a wrapper it does not unwrap). It
        answers `{mediaType, fileName, size, mimetype, base64}`. A 4xx (message unknown to the
        instance, not a media message) cannot get better by retrying; 5xx and timeouts can."""
        key = {"id": provider_message_id, "remoteJid": remote_jid, "fromMe": from_me}
        message: dict[str, Any] = {"key": key, "message": content} if content else {"key": key}
        body = await self._call(
            "POST", f"/chat/getBase64FromMediaMessage/{instance_name}", {"message": message, "convertToMp4": False}
        )
        encoded = body.get("base64")
        if not isinstance(encoded, str) or not encoded:
            raise ProviderError("getBase64FromMediaMessage answered without base64", retryable=True)
        try:
            data = decode_base64(encoded)
        except ValueError as exc:
            raise ProviderError(f"getBase64FromMediaMessage answered bad base64: {exc}", retryable=True) from exc
        return FetchedMedia(data=data, mime=str(body.get("mimetype") or ""), name=str(body.get("fileName") or ""))
