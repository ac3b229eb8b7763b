"""Which person's chat an Evolution upsert key names (no I/O): Baileys 7 keys by number or by LID
with the other form in `remoteJidAlt`, older Evolution versions' `senderPn` / `senderLid`, hosted
business accounts, device suffixes; and where each is reached and keyed (backend/clients/phones.py)."""

from typing import Any

import pytest

from backend.clients.phones import address_key, remote_jid, whatsapp_address
from backend.connections.providers.base import Ignored, InboundMessage
from backend.connections.providers.evolution import parse_webhook

PHONE, LID = "5511987654321", "123456789012345"


def _parsed(key: dict[str, Any]) -> InboundMessage | Ignored:
    data = {"key": {"fromMe": False, "id": "3EB0AB", **key}, "message": {"conversation": "oi"}}
    [event] = parse_webhook({"event": "messages.upsert", "data": data}, event_hint=None)
    assert isinstance(event, InboundMessage | Ignored)
    return event


@pytest.mark.parametrize(
    ("key", "phone", "lid"),
    [
        ({"remoteJid": f"{PHONE}@s.whatsapp.net"}, PHONE, ""),
        ({"remoteJid": f"{PHONE}:12@s.whatsapp.net"}, PHONE, ""),
        ({"remoteJid": f"{PHONE}@c.us"}, PHONE, ""),
        ({"remoteJid": f"{PHONE}@s.whatsapp.net", "remoteJidAlt": f"{LID}@lid"}, PHONE, LID),
        ({"remoteJid": f"{PHONE}@s.whatsapp.net", "senderLid": f"{LID}@lid"}, PHONE, LID),
        ({"remoteJid": f"{LID}@lid"}, "", LID),
        ({"remoteJid": f"{LID}@lid", "remoteJidAlt": f"{PHONE}@s.whatsapp.net"}, PHONE, LID),
        ({"remoteJid": f"{LID}@lid", "senderPn": f"{PHONE}@s.whatsapp.net"}, PHONE, LID),
        ({"remoteJid": f"{LID}@lid", "remoteJidAlt": "not-a-jid"}, "", LID),
        ({"remoteJid": f"{PHONE}:99@hosted"}, PHONE, ""),
        ({"remoteJid": f"{LID}:99@hosted.lid"}, "", LID),
    ],
)
def test_a_persons_chat_by_number_lid_or_both(key: dict[str, Any], phone: str, lid: str) -> None:
    event = _parsed(key)
    assert isinstance(event, InboundMessage)
    assert (event.phone, event.lid) == (phone, lid)
    assert event.address == (phone or f"{lid}@lid")


@pytest.mark.parametrize(
    "jid", ["120363000000000000@g.us", "status@broadcast", "1203630@newsletter", "abc@lid", "@lid", "", "5511@lid"]
)
def test_what_is_not_a_persons_chat_is_ignored(jid: str) -> None:
    assert _parsed({"remoteJid": jid}) == Ignored("not a person's chat", {"remoteJid": jid})


def test_addresses_keys_and_jids() -> None:
    assert whatsapp_address(PHONE, LID) == PHONE
    assert whatsapp_address(None, LID) == f"{LID}@lid"
    assert whatsapp_address("", None) == ""
    # The number's key form (the ninth digit) and the LID's own, never mistaken for a number.
    assert address_key("553188887777") == "5531988887777"
    assert address_key("553188887777@lid") == "lid:553188887777"
    assert remote_jid(PHONE) == f"{PHONE}@s.whatsapp.net"
    assert remote_jid(f"{LID}@lid") == f"{LID}@lid"
