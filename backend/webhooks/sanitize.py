"""What the provider sends, made storable before anything is written.

A provider's fields reach clients, tickets and messages; one value the store refuses (a lone
surrogate, a `$`-prefixed key) or a value past the API's limits must not fail halfway, after the
client and ticket exist but before the message does. `event` cleans every normalized event the
parser produces, and `check_storable` proves the result encodes, before the first write. Anything
cut keeps a visible marker; the raw event keeps what arrived, whole.
"""

import dataclasses
import hashlib
import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import bson

from backend.connections.providers.base import (
    InboundEvent,
    InboundMessage,
    MessageChange,
    QrChange,
    Quote,
    StatusUpdate,
    WebhookParseError,
)
from backend.core.clock import utcnow

# The API's own limits (backend/tickets/schemas.MessageBody, backend/core/schemas.Name).
BODY_MAX_CHARS = 4096
NAME_MAX_CHARS = 120
PROVIDER_ID_MAX_CHARS = 128
TYPE_MAX_CHARS = 64
MEDIA_FIELD_MAX_CHARS = 2048
QR_MAX_CHARS = 64 * 1024
QUOTE_MAX_CHARS = 300  # a quote shows the start of what it quotes (backend/messages/service.py)
TRUNCATED_MARKER = "\n[IAZE: {dropped} more characters not shown; the raw webhook event keeps the whole text]"
# WhatsApp did not exist before 2009; a clock a day ahead is the most a phone can be off by.
EARLIEST = datetime(2009, 1, 1, tzinfo=UTC)

_UNSTORABLE = re.compile("[\ud800-\udfff\x00]")  # lone surrogates do not encode; NUL ends C strings


def text(value: str) -> str:
    """A lone surrogate (valid in JSON's \\uXXXX, not in UTF-8) becomes U+FFFD; NUL is dropped."""
    if not _UNSTORABLE.search(value):
        return value
    return _UNSTORABLE.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", value)


def bounded(value: str, limit: int) -> tuple[str, bool]:
    """(value cut to `limit` characters with a marker saying so, whether it was cut)."""
    value = text(value)
    if len(value) <= limit:
        return value, False
    marker = TRUNCATED_MARKER.format(dropped=len(value) - limit)
    return value[:limit] + marker, True


def name(value: str) -> tuple[str, bool]:
    """A display name within the API's limit, on one line; an ellipsis marks a cut."""
    value = " ".join(text(value).split())
    return (value, False) if len(value) <= NAME_MAX_CHARS else (value[: NAME_MAX_CHARS - 1] + "…", True)


def provider_id(value: str) -> str:
    """Ids key redeliveries and receipts: the same input must always give the same id."""
    value = text(value)
    if len(value) <= PROVIDER_ID_MAX_CHARS:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def _media_value(value: Any, limit: int) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if not isinstance(value, str):
        # An object or list where a scalar belongs: kept as its JSON text, so no key of it
        # (`$where`, `a.b`) ever becomes a field name in the store.
        try:
            value = json.dumps(value, ensure_ascii=True, default=str)
        except (ValueError, RecursionError):
            value = "[unreadable value]"
    return bounded(value, limit)[0]


def media(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    out: dict[str, Any] = {}
    for key, item in value.items():
        key = text(str(key)).lstrip("$").replace(".", "_")[:64] or "_"
        # Inline media (webhook_base64) is bounded by the raw store's size, not by a text limit.
        out[key] = _media_value(item, 16 * 1024 * 1024 if key == "base64" else MEDIA_FIELD_MAX_CHARS)
    return out


def quote(value: Quote | None) -> Quote | None:
    if value is None:
        return None
    kind = text(value.type) if len(value.type) <= TYPE_MAX_CHARS else "unknown"
    body = bounded(value.body, QUOTE_MAX_CHARS)[0]
    return dataclasses.replace(value, provider_message_id=provider_id(value.provider_message_id), body=body, type=kind)


def location(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    fields = ("latitude", "longitude", "name", "address")
    return {key: _media_value(value.get(key), MEDIA_FIELD_MAX_CHARS) for key in fields}


MAX_CONTACTS = 50  # a WhatsApp contacts message carries a handful; more is not a person's card
MAX_PHONES = 10


def contacts(value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    return [
        {
            "name": name(str(card.get("name") or ""))[0],
            "phones": [text(str(p))[:32] for p in list(card.get("phones") or [])[:MAX_PHONES]],
        }
        for card in value[:MAX_CONTACTS]
    ]


def sent_at(value: datetime | None) -> datetime | None:
    if value is None or not EARLIEST <= value <= utcnow() + timedelta(days=1):
        return None
    return value


def message(event: InboundMessage) -> InboundMessage:
    body, body_cut = bounded(event.body, BODY_MAX_CHARS)
    push_name, name_cut = name(event.push_name)
    return dataclasses.replace(
        event,
        provider_message_id=provider_id(event.provider_message_id),
        phone=text(event.phone),
        lid=text(event.lid),
        push_name=push_name,
        type=text(event.type) if len(event.type) <= TYPE_MAX_CHARS else "unknown",
        body=body,
        media=media(event.media),
        sent_at=sent_at(event.sent_at),
        quoted=quote(event.quoted),
        location=location(event.location),
        contacts=contacts(event.contacts),
        inline_base64=text(event.inline_base64) if event.inline_base64 is not None else None,
        cut=tuple(field for field, was_cut in (("body", body_cut), ("push_name", name_cut)) if was_cut),
    )


def event(value: InboundEvent) -> InboundEvent:
    """The one entry point: every event the provider's parser produced, before it is applied."""
    if isinstance(value, InboundMessage):
        return message(value)
    if isinstance(value, MessageChange):
        return dataclasses.replace(
            value,
            provider_message_id=provider_id(value.provider_message_id),
            change_id=provider_id(value.change_id),
            body=bounded(value.body, BODY_MAX_CHARS)[0],
            at=sent_at(value.at),
            phone=text(value.phone),
            lid=text(value.lid),
        )
    if isinstance(value, StatusUpdate):
        return dataclasses.replace(
            value, provider_message_id=provider_id(value.provider_message_id), reason=bounded(value.reason, 512)[0]
        )
    if isinstance(value, QrChange) and value.qr_code is not None:
        qr = text(value.qr_code)
        return QrChange(qr_code=qr if len(qr) <= QR_MAX_CHARS else None)
    return value


def check_storable(value: InboundMessage) -> None:
    """Raises WebhookParseError (final, nothing written) when the message cannot be encoded."""
    try:
        bson.encode(dataclasses.asdict(value))
    except (bson.errors.BSONError, ValueError, OverflowError, RecursionError) as exc:
        raise WebhookParseError(f"message cannot be stored: {type(exc).__name__}: {exc}"[:500]) from exc
