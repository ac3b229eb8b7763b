"""Evolution API v2 adapter (REST over httpx; webhook payloads as Evolution posts them).

Idempotency: Evolution's documented sendText body (number, text, delay, quoted, linkPreview,
mentions) has no client-supplied message id or idempotency key, so a resend after an ambiguous
failure (timeout after the request left) can deliver twice; the outbound worker keeps that
window to "the process died or the call timed out mid-send" (see backend/outbound/worker.py).
"""

import re
from datetime import UTC, datetime
from typing import Any

import httpx

from backend.connections.providers.base import (
    NOT_ON_WHATSAPP,
    ConnectionChange,
    ConnectionStatus,
    DeliveryStatus,
    Ignored,
    InboundEvent,
    InboundMessage,
    InstanceCreated,
    ProviderError,
    QrChange,
    QrCode,
    SentMessage,
    StatusUpdate,
    WebhookParseError,
)

NAME = "evolution"
WEBHOOK_EVENTS = ["QRCODE_UPDATED", "CONNECTION_UPDATE", "MESSAGES_UPSERT", "MESSAGES_UPDATE"]

_STATES: dict[str, ConnectionStatus] = {"open": "open", "connecting": "connecting", "close": "close"}
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
    "documentWithCaptionMessage": "document",
    "stickerMessage": "sticker",
    "locationMessage": "location",
    "contactMessage": "contact",
}
_MEDIA_FIELDS = ("url", "mimetype", "fileName", "fileLength", "seconds", "caption", "mediaKey", "directPath")
_DIGITS = re.compile(r"^\d{8,15}$")


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


def _phone_from_jid(key: dict[str, Any]) -> str | None:
    """The client's number, or None for chats that are not one person's (groups, broadcasts)."""
    jid = str(key.get("remoteJid") or "")
    if jid.endswith("@lid"):  # privacy addressing: the number travels in an alternate field
        jid = str(key.get("remoteJidAlt") or key.get("senderPn") or "")
    user, _, server = jid.partition("@")
    if server not in ("s.whatsapp.net", "c.us"):
        return None
    digits = user.split(":", 1)[0]
    return digits if _DIGITS.match(digits) else None


def _timestamp(value: Any) -> datetime | None:
    try:
        seconds = int(value)
        return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None
    except (TypeError, ValueError, OverflowError, OSError):  # not a number, NaN, ±inf, past year 9999
        return None


def _content(message: dict[str, Any], message_type: str) -> tuple[str, str, dict[str, Any] | None]:
    """(type, body, media) from Baileys' message object."""
    if "conversation" in message:
        return "text", str(message.get("conversation") or ""), None
    ext = message.get("extendedTextMessage")
    if isinstance(ext, dict):
        return "text", str(ext.get("text") or ""), None
    if message_type == "documentWithCaptionMessage":
        inner = message.get("documentWithCaptionMessage", {})
        message = (inner.get("message") or {}) if isinstance(inner, dict) else {}
        message_type = "documentMessage"
    part = message.get(message_type)
    if not isinstance(part, dict):
        part = next((v for k, v in message.items() if k.endswith("Message") and isinstance(v, dict)), {})
    media = {k: part[k] for k in _MEDIA_FIELDS if k in part} or None
    if media is not None and "base64" in message:  # webhook_base64 on: media travels inline
        media["base64"] = message["base64"]
    body = str(part.get("caption") or part.get("text") or "")
    kind = _TYPES.get(message_type, message_type or "unknown")
    return kind, body, media


def _parse_upsert(data: Any) -> list[InboundEvent]:
    items = data.get("messages") if isinstance(data, dict) and "messages" in data else data
    items = items if isinstance(items, list) else [items]
    events: list[InboundEvent] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("key"), dict):
            raise WebhookParseError("messages.upsert without data.key")
        key = item["key"]
        key_id = key.get("id")
        if not key_id or not isinstance(key_id, str):
            raise WebhookParseError("messages.upsert without data.key.id")
        phone = _phone_from_jid(key)
        if phone is None:
            events.append(Ignored("not a person's chat", {"remoteJid": key.get("remoteJid")}))
            continue
        message = item.get("message")
        message_type = str(item.get("messageType") or "")
        if message is None:  # protocol messages (revokes, reactions to nothing) carry none
            events.append(Ignored("no message content", {"messageType": message_type}))
            continue
        if not isinstance(message, dict):
            raise WebhookParseError("data.message is not an object")
        if message_type in ("protocolMessage", "reactionMessage", "senderKeyDistributionMessage"):
            events.append(Ignored(f"{message_type} is not a conversation message"))
            continue
        kind, body, media = _content(message, message_type)
        events.append(
            InboundMessage(
                provider_message_id=key_id,
                phone=phone,
                from_me=bool(key.get("fromMe")),
                push_name=str(item.get("pushName") or ""),
                type=kind,
                body=body,
                media=media,
                sent_at=_timestamp(item.get("messageTimestamp")),
            )
        )
    return events


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
            raise WebhookParseError(f"unknown message status {raw_status!r}")
        events.append(StatusUpdate(provider_message_id=str(key_id), status=status))
    return events


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
    if event == "MESSAGES_UPDATE":
        return _parse_update(data)
    if event == "CONNECTION_UPDATE":
        if not isinstance(data, dict) or "state" not in data:
            raise WebhookParseError("connection.update without data.state")
        return [ConnectionChange(status=_state(data["state"]), reason=str(data.get("statusReason") or ""))]
    if event == "QRCODE_UPDATED":
        qr = data.get("qrcode") if isinstance(data, dict) else None
        if not isinstance(qr, dict):
            raise WebhookParseError("qrcode.updated without data.qrcode")
        return [QrChange(qr_code=_qr_from(qr))]
    return [Ignored(f"event {event} not handled")]


class EvolutionProvider:
    name = NAME

    def __init__(self, http: httpx.AsyncClient, *, base_url: str, api_key: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._headers = {"apikey": api_key}

    async def _call(
        self, method: str, path: str, json: dict[str, Any] | None = None, *, accepted_is_final: bool = False
    ) -> dict[str, Any]:
        """`accepted_is_final`: a 2xx we cannot read still means the provider took the request
        (a send), so retrying it would risk a second delivery."""
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
            raise ProviderError(f"provider answered {response.status_code}: {response.text[:300]}", retryable=retryable)
        try:
            body = response.json()
        except ValueError as exc:
            raise ProviderError("provider answered a body that is not JSON", retryable=not accepted_is_final) from exc
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
                "webhook": {
                    "enabled": True,
                    "url": webhook_url,
                    "headers": webhook_headers,
                    "byEvents": False,
                    "base64": False,
                    "events": WEBHOOK_EVENTS,
                },
            },
        )
        instance = _obj(body.get("instance"))
        qr = _obj(body.get("qrcode"))
        token = body.get("hash")
        if isinstance(token, dict):  # v1 answered {"hash": {"apikey": ...}}
            token = token.get("apikey")
        qr_code = _qr_from(qr)
        state = str(instance.get("status") or "")
        status: ConnectionStatus = "open" if state == "open" else "connecting"
        return InstanceCreated(
            status=status,
            qr_code=qr_code,
            instance_id=str(instance.get("instanceId")) if instance.get("instanceId") else None,
            instance_token=str(token) if token else None,
        )

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

    async def send_text(self, *, instance_name: str, to: str, text: str, idempotency_key: str) -> SentMessage:
        # No idempotency key in Evolution's sendText (see module docstring).
        body = await self._call(
            "POST", f"/message/sendText/{instance_name}", {"number": to, "text": text}, accepted_is_final=True
        )
        key = body.get("key")
        if not isinstance(key, dict) or not isinstance(key.get("id"), str) or not key["id"]:
            # The request was accepted, so the message probably left: not retryable, or we would
            # send it twice. The reason is kept on the message.
            raise ProviderError("sendText answered without key.id", retryable=False)
        return SentMessage(provider_message_id=key["id"])

    def parse_webhook(self, payload: Any, *, event_hint: str | None) -> list[InboundEvent]:
        return parse_webhook(payload, event_hint=event_hint)
