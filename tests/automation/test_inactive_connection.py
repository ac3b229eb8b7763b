"""A connection deactivated in IAZE (PATCH {"active": false}) may still be connected at the
provider: its clients' messages are filed as on any other connection (tests/webhooks/test_inbound.py),
but nothing automatic is queued on it — no greeting, away message, menu, menu repeat, closing
message or survey — whatever the copy of the connection that processes the delivery says: the
store decides when a message would be queued (automation.service `_speaks`). Each test ends with
the same connection reactivated and a client greeted on it, the positive control: the reactions
are configured and work, and the outbox worker had its chance to send what it was given."""

from collections import Counter
from typing import Any

import httpx
import pytest

from backend.webhooks import service as webhooks
from backend.webhooks.models import RawEvent
from tests.automation.helpers import (
    TOKYO_HOURS,
    TUESDAY_NIGHT,
    all_sent,
    at,
    automatic,
    company,
    open_ticket,
    sent_counts,
    sent_to,
    tickets_of,
    write,
)
from tests.factories import API, Tenant, unique_phone
from tests.fakes.harness import FakeEvolution

WELCOME = "Olá {{cliente}}! Protocolo {{protocolo}}."
AWAY = "Estamos fechados agora."
MENU_TEXT = "Escolha o departamento:"
MENU = f"{MENU_TEXT}\n1 - Suporte\n2 - Financeiro"
REPEAT = f"Não entendi sua resposta.\n{MENU}"
CLOSING = "Até logo!"
SURVEY = "De 1 a 5, como foi o atendimento?"
CONFIG = {"welcome_message": WELCOME, "closing_message": CLOSING, "csat_enabled": True, "csat_message": SURVEY}


async def _with_menu(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, config: dict[str, Any]
) -> tuple[Tenant, dict[str, Any]]:
    tenant, conn = await company(client, admin_headers, evolution, config=config)
    body = {"menu_enabled": True, "menu_department_ids": [d["id"] for d in tenant.departments], "menu_text": MENU_TEXT}
    r = await client.patch(f"{API}/whatsapp-connections/{conn['id']}", json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    return tenant, r.json()


async def _set_active(client: httpx.AsyncClient, tenant: Tenant, conn: dict[str, Any], active: bool) -> None:
    r = await client.patch(f"{API}/whatsapp-connections/{conn['id']}", json={"active": active}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["active"] is active, r.text


async def _nothing_queued(db: Any, ticket_id: str) -> None:
    """No automatic message stored for the ticket, and nothing of it in the outbox."""
    assert await automatic(db, ticket_id) == []
    assert await db.outbox.count_documents({"ticket_id": ticket_id}) == 0


async def _greeted(
    client: httpx.AsyncClient, db: Any, evolution: FakeEvolution, tenant: Tenant, conn: dict[str, Any]
) -> str:
    """The positive control: a new client on the (active) connection is greeted and offered the
    menu, both sent. Returns the phone."""
    phone = unique_phone()
    await write(evolution, db, conn, phone, "oi")
    ticket = await open_ticket(db, tenant, phone)
    greeting = f"Olá Maria! Protocolo {ticket['number']}."
    assert [m["body"] for m in await automatic(db, ticket["_id"])][:1] == [greeting]
    await all_sent(evolution, phone, [greeting, MENU])
    return phone


async def test_a_conversation_on_an_inactive_connection_is_filed_and_gets_no_automatic_message(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    at(monkeypatch, TUESDAY_NIGHT)  # closed: an active connection's new ticket gets the away message too
    config = {**CONFIG, "away_message": AWAY, "timezone": "Asia/Tokyo", "business_hours": TOKYO_HOURS}
    tenant, conn = await _with_menu(client, admin_headers, evolution, config)
    await _set_active(client, tenant, conn, False)

    phone = unique_phone()
    raw = await write(evolution, db, conn, phone, "oi")
    assert "automatic" not in raw["result"][0], raw["result"]
    ticket = await open_ticket(db, tenant, phone)
    r = await client.get(f"{API}/tickets/{ticket['_id']}", headers=tenant.headers)
    shown = r.json()
    # Filed in espera of the default department; not awaiting a menu nobody sent it.
    assert (shown["status"], shown["department_id"], shown["out_of_hours"], shown["menu_pending"]) == (
        "espera",
        conn["default_department_id"],
        True,
        False,
    )
    await write(evolution, db, conn, phone, "2")  # just a message: there is no menu to answer
    r = await client.get(f"{API}/tickets/{ticket['_id']}/messages", headers=tenant.headers)
    assert [(m["direction"], m["body"]) for m in r.json()["items"]] == [("in", "oi"), ("in", "2")]
    assert (await open_ticket(db, tenant, phone))["department_id"] == conn["default_department_id"]
    await _nothing_queued(db, ticket["_id"])

    # Taken and finalized: its agent cannot reply, and the finalize sends no closing or survey.
    agent = tenant.agents[0]["headers"]
    assert (await client.post(f"{API}/tickets/{ticket['_id']}/assume", headers=agent)).status_code == 200
    r = await client.post(f"{API}/tickets/{ticket['_id']}/messages", json={"body": "Olá"}, headers=agent)
    assert r.status_code == 409 and r.json()["detail"]["reason"] == "connection_inactive", r.text
    assert (await client.post(f"{API}/tickets/{ticket['_id']}/finalize", headers=agent)).status_code == 200
    await _nothing_queued(db, ticket["_id"])

    await _set_active(client, tenant, conn, True)
    control = await _greeted(client, db, evolution, tenant, conn)
    assert AWAY in await sent_to(evolution, control)
    assert await sent_to(evolution, phone) == []


async def test_a_menu_answer_and_a_finalize_after_the_deactivation_send_nothing(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """A conversation greeted and offered the menu while the connection was active: deactivated,
    an invalid answer repeats no menu (the menu ends where the ticket waits), and Finalizar
    queues neither the closing message nor the survey."""
    tenant, conn = await _with_menu(client, admin_headers, evolution, CONFIG)
    phone = unique_phone()
    await write(evolution, db, conn, phone, "oi")
    first = await open_ticket(db, tenant, phone)
    greeting = f"Olá Maria! Protocolo {first['number']}."
    await all_sent(evolution, phone, [greeting, MENU])
    await _set_active(client, tenant, conn, False)

    await write(evolution, db, conn, phone, "quero falar com alguém")  # would repeat the menu
    r = await client.get(f"{API}/tickets/{first['_id']}", headers=tenant.headers)
    assert (r.json()["status"], r.json()["department_id"], r.json()["menu_pending"]) == (
        "espera",
        conn["default_department_id"],
        False,
    )
    r = await client.get(f"{API}/tickets/{first['_id']}/events", headers=tenant.headers)
    routed = r.json()["items"][-1]
    assert (routed["type"], routed["data"]["fallback"]) == ("routed", True)
    agent = tenant.agents[0]["headers"]
    assert (await client.post(f"{API}/tickets/{first['_id']}/assume", headers=agent)).status_code == 200
    assert (await client.post(f"{API}/tickets/{first['_id']}/finalize", headers=agent)).status_code == 200
    assert [m["automatic_purpose"] for m in await automatic(db, first["_id"])] == ["greeting", "menu"]
    r = await client.get(f"{API}/tickets/{first['_id']}/messages", headers=tenant.headers)
    assert [m["body"] for m in r.json()["items"] if m["direction"] == "in"] == ["oi", "quero falar com alguém"]

    # Reactivated: the client's next conversation is greeted; the chat's sends are in order, so
    # anything queued for the first ticket would have gone out before this greeting.
    await _set_active(client, tenant, conn, True)
    await write(evolution, db, conn, phone, "voltei")
    first_again, second = await tickets_of(db, tenant, phone)
    assert first_again["_id"] == first["_id"] and second["status"] == "espera"
    again = f"Olá Maria! Protocolo {second['number']}."
    counts = await sent_counts(evolution, phone, {greeting: 1, again: 1, MENU: 2})
    assert counts == Counter({greeting: 1, MENU: 2, again: 1}), counts


@pytest.mark.parametrize("flip", ["deactivated", "reactivated"])
async def test_the_store_decides_when_the_connection_changes_between_receipt_and_processing(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
    flip: str,
) -> None:
    """The delivery is acknowledged (stored raw, handed to the processor with the connection as
    the webhook read it); the owner (de)activates the connection; only then is it processed. The
    processor's copy says the opposite of the store: the message is filed either way, and the
    automatic messages follow the store — none after a deactivation, as usual after a reactivation."""
    tenant, conn = await _with_menu(client, admin_headers, evolution, {"welcome_message": WELCOME})
    if flip == "reactivated":
        await _set_active(client, tenant, conn, False)
    phone = unique_phone()
    original = webhooks.process
    handed: list[bool | None] = []

    async def flip_first(db_: Any, raw: RawEvent, **kwargs: Any) -> Any:
        """The processor has the delivery and its copy of the connection; the PATCH lands first."""
        if raw.chat.startswith(phone) and not handed:
            copy = kwargs.get("conn")
            handed.append(None if copy is None else copy.active)
            await _set_active(client, tenant, conn, flip == "reactivated")
        return await original(db_, raw, **kwargs)

    monkeypatch.setattr(webhooks, "process", flip_first)
    await write(evolution, db, conn, phone, "oi")
    monkeypatch.undo()
    assert handed == [flip == "deactivated"]  # the processor's copy predates the change

    ticket = await open_ticket(db, tenant, phone)
    r = await client.get(f"{API}/tickets/{ticket['_id']}/messages", headers=tenant.headers)
    assert [(m["direction"], m["sender_type"], m["body"]) for m in r.json()["items"] if not m["automatic"]] == [
        ("in", "client", "oi")
    ]
    if flip == "deactivated":
        assert ticket["menu_pending"] is False
        await _nothing_queued(db, ticket["_id"])
        await _set_active(client, tenant, conn, True)
        await _greeted(client, db, evolution, tenant, conn)
        assert await sent_to(evolution, phone) == []
    else:
        assert ticket["menu_pending"] is True
        greeting = f"Olá Maria! Protocolo {ticket['number']}."
        assert [m["body"] for m in await automatic(db, ticket["_id"])] == [greeting, MENU]
        await all_sent(evolution, phone, [greeting, MENU])


async def test_a_suspended_tenant_files_its_clients_messages_and_sends_nothing_automatic(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
) -> None:
    """A tenant the platform admin suspends may still be connected at the provider: its clients'
    messages are filed, but no greeting, menu or survey goes out in its name while its staff
    cannot sign in to answer. Reactivated, its connection greets again (the positive control)."""
    tenant, conn = await _with_menu(client, admin_headers, evolution, CONFIG)
    r = await client.patch(f"{API}/resellers/{tenant.id}", json={"active": False}, headers=admin_headers)
    assert r.status_code == 200, r.text
    phone = unique_phone()
    raw = await write(evolution, db, conn, phone, "oi")
    assert raw["status"] == "processed" and "automatic" not in raw["result"][0], raw["result"]
    ticket = await open_ticket(db, tenant, phone)
    assert (ticket["status"], ticket["department_id"], ticket.get("menu_pending", False)) == (
        "espera",
        conn["default_department_id"],
        False,
    )
    await write(evolution, db, conn, phone, "2")  # no menu was sent: just a message
    assert [m["body"] for m in await db.messages.find({"ticket_id": ticket["_id"]}).to_list(None)] == ["oi", "2"]
    await _nothing_queued(db, ticket["_id"])

    r = await client.patch(f"{API}/resellers/{tenant.id}", json={"active": True}, headers=admin_headers)
    assert r.status_code == 200, r.text
    await _greeted(client, db, evolution, tenant, conn)
    assert await sent_to(evolution, phone) == []
