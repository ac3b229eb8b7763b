"""Greeting and business hours through the real path: the fake Evolution (its own process) posts
the client's message, the webhook processor files it and reacts, the outbox worker sends."""

from collections import Counter
from typing import Any

import httpx
import pytest

from tests.automation.helpers import (
    THURSDAY_MORNING,
    THURSDAY_NIGHT,
    TOKYO_HOURS,
    TUESDAY_NIGHT,
    WEDNESDAY_MORNING,
    all_sent,
    at,
    automatic,
    company,
    open_ticket,
    sent_counts,
    tickets_of,
    write,
)
from tests.factories import API, unique_phone
from tests.fakes.harness import FakeEvolution

WELCOME = "Olá {{cliente}}! Bem-vindo à {{empresa}}. Protocolo {{protocolo}}."
AWAY = "Estamos fechados, {{cliente}}. Seu protocolo é {{protocolo}}; respondemos na abertura."


async def test_a_new_ticket_is_greeted_once_with_its_variables_unsigned_and_labelled(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn = await company(client, admin_headers, evolution, config={"welcome_message": WELCOME})
    phone = unique_phone()
    await write(evolution, db, conn, phone, "oi")
    await write(evolution, db, conn, phone, "tudo bem?")
    ticket = await open_ticket(db, tenant, phone)
    greeting = f"Olá Maria! Bem-vindo à Loja Azul. Protocolo {ticket['number']}."
    assert [(m["automatic_purpose"], m["body"]) for m in await automatic(db, ticket["_id"])] == [("greeting", greeting)]

    r = await client.get(f"{API}/tickets/{ticket['_id']}/messages", headers=tenant.headers)
    shown = [(m["direction"], m["sender_type"], m["automatic"], m["body"]) for m in r.json()["items"]]
    assert shown == [
        ("in", "client", False, "oi"),
        ("out", "system", True, greeting),
        ("in", "client", False, "tudo bem?"),
    ]
    r = await client.get(f"{API}/tickets/{ticket['_id']}", headers=tenant.headers)
    assert r.json()["status"] == "espera" and r.json()["out_of_hours"] is False and r.json()["menu_pending"] is False
    # Sent as written (no agent's signature line), once.
    assert Counter(await all_sent(evolution, phone, [greeting])) == Counter({greeting: 1})

    # The next ticket of the same client is greeted with its own number.
    agent = tenant.agents[0]["headers"]
    assert (await client.post(f"{API}/tickets/{ticket['_id']}/assume", headers=agent)).status_code == 200
    assert (await client.post(f"{API}/tickets/{ticket['_id']}/finalize", headers=agent)).status_code == 200
    await write(evolution, db, conn, phone, "voltei")
    second = await open_ticket(db, tenant, phone)
    again = f"Olá Maria! Bem-vindo à Loja Azul. Protocolo {second['number']}."
    assert [m["body"] for m in await automatic(db, second["_id"])] == [again]
    assert Counter(await all_sent(evolution, phone, [again])) == Counter({greeting: 1, again: 1})


async def test_out_of_hours_in_the_resellers_zone_once_per_closed_period_and_ticket(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = {
        "welcome_message": WELCOME,
        "away_message": AWAY,
        "timezone": "Asia/Tokyo",
        "business_hours": TOKYO_HOURS,
        "closed_dates": ["2026-12-02"],
    }
    tenant, conn = await company(client, admin_headers, evolution, config=config)
    phone = unique_phone()
    at(monkeypatch, TUESDAY_NIGHT)  # 12:00 UTC: inside 09-18 by the server's clock, closed in Tokyo
    await write(evolution, db, conn, phone, "oi, alguém?")
    await write(evolution, db, conn, phone, "alô?")
    ticket = await open_ticket(db, tenant, phone)
    away = f"Estamos fechados, Maria. Seu protocolo é {ticket['number']}; respondemos na abertura."
    greeting = f"Olá Maria! Bem-vindo à Loja Azul. Protocolo {ticket['number']}."
    assert [m["automatic_purpose"] for m in await automatic(db, ticket["_id"])] == ["greeting", "away"]
    r = await client.get(f"{API}/tickets/{ticket['_id']}", headers=tenant.headers)
    assert r.json()["status"] == "espera" and r.json()["out_of_hours"] is True  # nothing dropped, marked

    at(monkeypatch, WEDNESDAY_MORNING)  # a closed date: the same closed period, since Tuesday 18:00
    await write(evolution, db, conn, phone, "feriado?")
    assert [m["automatic_purpose"] for m in await automatic(db, ticket["_id"])] == ["greeting", "away"]
    at(monkeypatch, THURSDAY_MORNING)  # open
    await write(evolution, db, conn, phone, "bom dia")
    assert len(await automatic(db, ticket["_id"])) == 2
    at(monkeypatch, THURSDAY_NIGHT)  # a new closed period: the waiting ticket is told again
    await write(evolution, db, conn, phone, "ainda esperando")
    assert [m["automatic_purpose"] for m in await automatic(db, ticket["_id"])] == ["greeting", "away", "away"]
    assert (await open_ticket(db, tenant, phone))["_id"] == ticket["_id"]
    sent = await all_sent(evolution, phone, [greeting, away])
    assert sent.index(greeting) < sent.index(away)  # greeted, then told the company is closed

    # A ticket someone holds gets no away message: a person is answering.
    agent = tenant.agents[0]["headers"]
    assert (await client.post(f"{API}/tickets/{ticket['_id']}/assume", headers=agent)).status_code == 200
    at(monkeypatch, THURSDAY_NIGHT.replace(day=4))
    await write(evolution, db, conn, phone, "obrigado")
    assert len(await automatic(db, ticket["_id"])) == 3

    # Another client on the holiday: marked and told; one in hours: neither.
    holiday, open_ = unique_phone(), unique_phone()
    at(monkeypatch, WEDNESDAY_MORNING)
    await write(evolution, db, conn, holiday, "oi")
    at(monkeypatch, THURSDAY_MORNING)
    await write(evolution, db, conn, open_, "oi")
    marked = {p: (await tickets_of(db, tenant, p))[0] for p in (holiday, open_)}
    assert marked[holiday]["out_of_hours"] is True and marked[open_]["out_of_hours"] is False
    assert [m["automatic_purpose"] for m in await automatic(db, marked[holiday]["_id"])] == ["greeting", "away"]
    assert [m["automatic_purpose"] for m in await automatic(db, marked[open_]["_id"])] == ["greeting"]
    counts = await sent_counts(evolution, phone, {greeting: 1, away: 2})
    assert counts[greeting] == 1 and counts[away] == 2


async def test_a_message_written_in_hours_and_filed_after_closing_is_not_marked_out_of_hours(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A backlog (or an outage caught up) files a message after closing that the client wrote
    before: the ticket is not marked out of hours (WhatsApp's stamp decides), while the away
    message still goes out, since the company is closed now."""
    config = {"away_message": AWAY, "timezone": "Asia/Tokyo", "business_hours": TOKYO_HOURS}
    tenant, conn = await company(client, admin_headers, evolution, config=config)
    phone, later = unique_phone(), unique_phone()
    at(monkeypatch, TUESDAY_NIGHT)  # 21:00 in Tokyo: closed when filed
    written = int(TUESDAY_NIGHT.replace(hour=17, minute=55).timestamp())  # open when written
    await write(evolution, db, conn, phone, "oi, ainda dá tempo?", at=written)
    ticket = await open_ticket(db, tenant, phone)
    assert ticket["out_of_hours"] is False
    assert [m["automatic_purpose"] for m in await automatic(db, ticket["_id"])] == ["away"]
    # Written at night and filed at night: marked, as ever.
    await write(evolution, db, conn, later, "oi", at=int(TUESDAY_NIGHT.timestamp()))
    assert (await open_ticket(db, tenant, later))["out_of_hours"] is True


async def test_a_history_import_opens_tickets_for_the_agents_and_answers_nothing_automatically(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The history sync after a pairing carries the chats' recent past at once: conversations
    maybe answered on the phone meanwhile, dozens of chats in one delivery. Their tickets open
    for the agents, but no greeting, away message or menu goes out to any of them; a client's
    next live message is answered as usual (here: closed now, so the away message)."""
    import asyncio
    import time

    from tests.webhooks.evolution_shapes import envelope, pn_key, post, upsert

    config = {"welcome_message": WELCOME, "away_message": AWAY, "timezone": "Asia/Tokyo", "business_hours": TOKYO_HOURS}
    tenant, conn = await company(client, admin_headers, evolution, config=config)
    at(monkeypatch, TUESDAY_NIGHT)  # closed: a live message would get the away message
    ids = [d["id"] for d in tenant.departments]
    r = await client.patch(
        f"{API}/whatsapp-connections/{conn['id']}",
        json={"menu_enabled": True, "menu_department_ids": ids, "menu_text": "Escolha:"},
        headers=tenant.headers,
    )
    assert r.status_code == 200, r.text
    await asyncio.sleep(1.1)  # stamped in whole seconds after the connection was made
    now = int(time.time())
    phones = [unique_phone() for _ in range(3)]
    batch = [
        {**upsert(pn_key(phone), {"conversation": f"oi, sou {i}"}, "conversation")["data"], "messageTimestamp": now}
        for i, phone in enumerate(phones)
    ]
    raw = await post(client, db, conn, envelope("messages.set", batch))
    assert raw["status"] == "processed", raw["result"]
    for phone in phones:
        ticket = await open_ticket(db, tenant, phone)
        assert (ticket["status"], ticket["department_id"], ticket["menu_pending"]) == ("espera", ids[0], False)
        assert await automatic(db, ticket["_id"]) == []
    assert [s for s in await evolution.sent() if s["number"] in phones] == []

    await write(evolution, db, conn, phones[0], "ainda estou esperando")
    ticket = await open_ticket(db, tenant, phones[0])
    assert [m["automatic_purpose"] for m in await automatic(db, ticket["_id"])] == ["away"]


async def test_a_live_message_whose_post_was_lost_is_greeted_once_caught_up(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any, settings: Any
) -> None:
    """Unlike a pairing's history, a message IAZE asks Evolution for after an outage (the catch-up
    after a restart or a webhook drift) was live when written: its new ticket is greeted."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    from scripts.catch_up_messages import catch_up
    from tests.fakes.harness import wait_for

    tenant, conn = await company(client, admin_headers, evolution, config={"welcome_message": WELCOME})
    await asyncio.sleep(1.1)  # stamped in whole seconds after the connection was made
    phone = unique_phone()
    await evolution.inbound(conn["instance_name"], phone, "oi", push_name="Maria", deliver=False)
    since, until = datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC)
    assert await catch_up(settings, since=since, until=until, connection_id=conn["id"], dry_run=False) == 0

    async def greeted() -> list[str] | None:
        customer = await db.users.find_one({"reseller_id": tenant.id, "phone": phone})
        ticket = customer and await db.tickets.find_one({"client_id": customer["_id"]})
        found = [m["automatic_purpose"] for m in await automatic(db, ticket["_id"])] if ticket else []
        return found or None

    assert await wait_for(greeted) == ["greeting"]
