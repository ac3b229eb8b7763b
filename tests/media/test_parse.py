"""What Evolution's webhook says about media, locations and contact cards, normalized (no I/O)."""

import base64
import hashlib
from typing import Any

from backend.connections.providers.base import InboundMessage
from backend.connections.providers.evolution import parse_vcard, parse_webhook


def _upsert(message: dict[str, Any], message_type: str, **extra: Any) -> InboundMessage:
    data = {
        "key": {"remoteJid": "5511912345678@s.whatsapp.net", "fromMe": False, "id": "ABC"},
        "pushName": "Ana",
        "message": message,
        "messageType": message_type,
        "messageTimestamp": 1764633600,
        **extra,
    }
    [event] = parse_webhook({"event": "messages.upsert", "data": data}, event_hint=None)
    assert isinstance(event, InboundMessage)
    return event


def test_document_with_caption_keeps_name_size_and_caption() -> None:
    digest = hashlib.sha256(b"pdf").digest()
    inner = {
        "documentMessage": {
            "mimetype": "application/pdf",
            "fileName": "boleto dezembro.pdf",
            "fileLength": {"low": 4096, "high": 0, "unsigned": True},
            "caption": "segue o boleto",
            "fileSha256": base64.b64encode(digest).decode(),
        }
    }
    event = _upsert({"documentWithCaptionMessage": {"message": inner}}, "documentWithCaptionMessage")
    assert event.type == "document" and event.body == "segue o boleto"
    assert event.media == {
        "status": "pending",
        "mime": "application/pdf",
        "name": "boleto dezembro.pdf",
        "size": 4096,
        "sha256": digest.hex(),
    }
    assert event.inline_base64 is None


def test_voice_note_video_and_sticker() -> None:
    voice = _upsert({"audioMessage": {"mimetype": "audio/ogg; codecs=opus", "seconds": 7, "ptt": True}}, "audioMessage")
    assert voice.type == "audio" and voice.media == {
        "status": "pending",
        "mime": "audio/ogg",
        "duration": 7,
        "voice": True,
    }
    video = _upsert(
        {"videoMessage": {"mimetype": "video/mp4", "seconds": 12, "width": 640, "height": 360, "fileLength": "90000"}},
        "videoMessage",
    )
    assert video.type == "video"
    assert video.media == {
        "status": "pending",
        "mime": "video/mp4",
        "size": 90000,
        "duration": 12,
        "width": 640,
        "height": 360,
    }
    sticker = _upsert({"stickerMessage": {"mimetype": "image/webp", "width": 512, "height": 512}}, "stickerMessage")
    assert sticker.type == "sticker" and sticker.media is not None and sticker.media["mime"] == "image/webp"


def test_inline_base64_is_carried_but_never_part_of_the_media_fields() -> None:
    event = _upsert({"imageMessage": {"mimetype": "image/png"}, "base64": "iVBORw0KGgo="}, "imageMessage")
    assert event.inline_base64 == "iVBORw0KGgo="
    assert event.media is not None and "base64" not in event.media


def test_location_and_several_contact_cards() -> None:
    loc = _upsert(
        {"locationMessage": {"degreesLatitude": -22.9, "degreesLongitude": -43.2, "name": "Loja", "address": "Rua A"}},
        "locationMessage",
    )
    assert loc.type == "location" and loc.media is None
    assert loc.location == {"latitude": -22.9, "longitude": -43.2, "name": "Loja", "address": "Rua A"}
    cards = {
        "contactsArrayMessage": {
            "contacts": [
                {
                    "displayName": "João",
                    "vcard": "BEGIN:VCARD\nFN:João Lima\nTEL;waid=5521999990000:+55 21 99999-0000\nEND:VCARD",
                },
                {"displayName": "Sem FN", "vcard": "BEGIN:VCARD\r\nTEL:+1 (415) 555-0100\r\nEND:VCARD"},
            ]
        }
    }
    event = _upsert(cards, "contactsArrayMessage")
    assert event.type == "contact"
    assert event.contacts == [
        {"name": "João Lima", "phones": ["5521999990000"]},
        {"name": "Sem FN", "phones": ["14155550100"]},
    ]


def test_vcard_without_phones_keeps_the_name() -> None:
    assert parse_vcard("BEGIN:VCARD\nFN:Só nome\nEND:VCARD") == {"name": "Só nome", "phones": []}
