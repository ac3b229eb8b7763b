"""A client who calls the number instead of writing: Evolution API 2.3.6 posts each step of the call
as CALL (Baileys' WACallEvent, `eventHandler`), which the instance now asks for. The offer is
filed in the client's conversation as a message of type "call" / "video_call", once per call;
the later steps, group calls and calls our own number places add nothing. Through the real
webhook and API with the fake Evolution as its own process."""

from typing import Any

import httpx

from backend.connections.providers.base import Ignored, InboundMessage
from backend.connections.providers.evolution import WEBHOOK_EVENTS, parse_webhook
from tests.automation.helpers import automatic, company, open_ticket, write
from tests.factories import API, make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection
from tests.webhooks.evolution_shapes import OWNER, envelope, post, thread, tickets_of


def _call(caller: str, call_id: str, status: str = "offer", **extra: Any) -> dict[str, Any]:
    data = {
        "chatId": caller,
        "from": caller,
        "id": call_id,
        "date": "2026-12-05T12:00:00.000Z",
        "offline": False,
        "status": status,
        "isVideo": False,
        "isGroup": False,
        **extra,
    }
    return envelope("call", data)


def test_the_call_event_is_asked_for_and_parsed_by_step() -> None:
    assert "CALL" in WEBHOOK_EVENTS
    [offer] = parse_webhook(_call("5511987654321@s.whatsapp.net", "C1", isVideo=True), event_hint=None)
    assert isinstance(offer, InboundMessage)
    assert (offer.provider_message_id, offer.phone, offer.type, offer.body, offer.from_me) == (
        "call:C1",
        "5511987654321",
        "video_call",
        "",
        False,
    )
    assert offer.sent_at is not None and offer.sent_at.isoformat() == "2026-12-05T12:00:00+00:00"
    [by_lid] = parse_webhook(
        _call("123456789012345@lid", "C2", callerPn="5511987654321@s.whatsapp.net"), event_hint=None
    )
    assert isinstance(by_lid, InboundMessage) and (by_lid.phone, by_lid.lid) == ("5511987654321", "123456789012345")
    assert parse_webhook(_call("5511987654321@s.whatsapp.net", "C1", "terminate"), event_hint=None) == [
        Ignored("call terminate")
    ]
    assert parse_webhook(_call("120363@g.us", "C3", isGroup=True), event_hint=None) == [Ignored("group call")]
    [ours] = parse_webhook(_call(f"{OWNER}@s.whatsapp.net", "C4"), event_hint=None)
    assert isinstance(ours, Ignored) and ours.reason == "not a person's call"


async def test_a_clients_call_reaches_an_agent_once(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    phone = unique_phone()
    caller = f"{phone}@s.whatsapp.net"
    raw = await post(client, db, conn, _call(caller, "CALL1"))
    assert raw["status"] == "processed", raw["result"]
    for status in ("ringing", "timeout", "terminate"):
        raw = await post(client, db, conn, _call(caller, "CALL1", status))
        assert raw["status"] == "ignored", raw
    raw = await post(client, db, conn, _call(caller, "CALL1"))  # the offer delivered again
    assert raw["result"][0].startswith("duplicate"), raw["result"]

    (ticket,) = await tickets_of(client, tenant)
    assert (ticket["status"], ticket["client_phone"], ticket["last_message_preview"]) == ("espera", phone, "[call]")
    shown = await thread(client, tenant, ticket["id"])
    assert [(m["direction"], m["type"], m["body"], m["sender_type"]) for m in shown] == [("in", "call", "", "client")]


async def test_a_call_while_the_menu_waits_is_filed_and_is_no_answer_to_it(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn = await company(client, admin_headers, evolution, config={})
    menu = {"menu_enabled": True, "menu_department_ids": [d["id"] for d in tenant.departments], "menu_text": "Menu:"}
    r = await client.patch(f"{API}/whatsapp-connections/{conn['id']}", json=menu, headers=tenant.headers)
    assert r.status_code == 200, r.text
    phone = unique_phone()
    await write(evolution, db, conn, phone, "oi")
    ticket = await open_ticket(db, tenant, phone)
    assert [m["automatic_purpose"] for m in await automatic(db, ticket["_id"])] == ["menu"]

    raw = await post(client, db, conn, _call(f"{phone}@s.whatsapp.net", "CALL2"))
    assert raw["status"] == "processed" and "automatic" not in raw["result"][0], raw["result"]
    assert [m["automatic_purpose"] for m in await automatic(db, ticket["_id"])] == ["menu"]  # not repeated
    assert (await db.tickets.find_one({"_id": ticket["_id"]}))["menu_pending"] is True
    types = [m["type"] for m in await thread(client, tenant, ticket["_id"]) if not m["automatic"]]
    assert types == ["text", "call"]
