"""Finalizar sends the closing message and the survey question; a lone digit 1-5 inside the
window rates the finalized ticket (a `rated` event, still finalizado, no new ticket); a digit
after it, or any text, opens a new ticket as always."""

from datetime import timedelta
from typing import Any

import httpx
import pytest

from backend.core.clock import utcnow
from backend.tickets import service as tickets_service
from backend.users.models import User
from tests.automation.helpers import (
    all_sent,
    at,
    automatic,
    company,
    left,
    open_ticket,
    sent_counts,
    tickets_of,
    write,
)
from tests.factories import API, Tenant, make_client, unique_phone
from tests.fakes.harness import FakeEvolution

CLOSING = "Obrigado, {{cliente}}! O protocolo {{protocolo}} foi encerrado."
QUESTION = "De 1 a 5, que nota você dá ao atendimento {{protocolo}}?"
CONFIG = {"closing_message": CLOSING, "csat_enabled": True, "csat_window_hours": 2, "csat_message": QUESTION}


async def _attended_and_finalized(
    client: httpx.AsyncClient, db: Any, evolution: FakeEvolution, tenant: Tenant, conn: dict[str, Any], phone: str
) -> dict[str, Any]:
    await write(evolution, db, conn, phone, "preciso de ajuda")
    ticket = await open_ticket(db, tenant, phone)
    agent = tenant.agents[0]["headers"]
    assert (await client.post(f"{API}/tickets/{ticket['_id']}/assume", headers=agent)).status_code == 200
    assert (await client.post(f"{API}/tickets/{ticket['_id']}/finalize", headers=agent)).status_code == 200
    await left(db, ticket["_id"], "survey")  # the client answers a question it received
    return ticket


async def test_finalize_closes_and_asks_and_a_digit_in_the_window_rates_the_finalized_ticket(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn = await company(client, admin_headers, evolution, config=CONFIG)
    phone = unique_phone()
    ticket = await _attended_and_finalized(client, db, evolution, tenant, conn, phone)
    closing = f"Obrigado, Maria! O protocolo {ticket['number']} foi encerrado."
    question = f"De 1 a 5, que nota você dá ao atendimento {ticket['number']}?"
    stored = await automatic(db, ticket["_id"])
    assert [(m["automatic_purpose"], m["body"], m["sender_type"]) for m in stored] == [
        ("closing", closing, "system"),
        ("survey", question, "system"),
    ]
    sent = await all_sent(evolution, phone, [closing, question])
    assert sent.index(closing) < sent.index(question)

    raw = await write(evolution, db, conn, phone, "5")
    assert raw["result"][0].startswith(f"rating 5 of ticket {ticket['_id']}"), raw["result"]
    assert len(await tickets_of(db, tenant, phone)) == 1  # no new ticket
    r = await client.get(f"{API}/tickets/{ticket['_id']}", headers=tenant.headers)
    assert (r.json()["status"], r.json()["rating"]) == ("finalizado", 5)
    r = await client.get(f"{API}/tickets/{ticket['_id']}/events", headers=tenant.headers)
    rated = r.json()["items"][-1]
    assert (rated["type"], rated["actor_role"], rated["from_status"], rated["to_status"], rated["data"]["rating"]) == (
        "rated",
        "client",
        "finalizado",
        "finalizado",
        5,
    )
    r = await client.get(f"{API}/tickets/{ticket['_id']}/messages", headers=tenant.headers)
    assert [m["body"] for m in r.json()["items"]][-1] == "5"  # the answer shows in the thread it rates

    # Answered once: the next digit is a message like any other, in a new ticket.
    await write(evolution, db, conn, phone, "4")
    newer = await open_ticket(db, tenant, phone)
    assert newer["_id"] != ticket["_id"] and newer["rating"] is None
    r = await client.get(f"{API}/tickets/{ticket['_id']}", headers=tenant.headers)
    assert r.json()["rating"] == 5
    counts = await sent_counts(evolution, phone, {closing: 1, question: 1})
    assert (counts[closing], counts[question]) == (1, 1)


async def test_a_digit_after_the_window_opens_a_new_ticket(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant, conn = await company(client, admin_headers, evolution, config=CONFIG)
    phone = unique_phone()
    ticket = await _attended_and_finalized(client, db, evolution, tenant, conn, phone)
    at(monkeypatch, utcnow() + timedelta(hours=2, minutes=1))
    await write(evolution, db, conn, phone, "5")
    found = await tickets_of(db, tenant, phone)
    assert [t["status"] for t in found] == ["finalizado", "espera"]
    assert found[0]["_id"] == ticket["_id"] and found[0].get("rating") is None
    assert await db.messages.find_one({"ticket_id": found[1]["_id"], "body": "5"}) is not None


async def test_text_in_the_window_opens_a_new_ticket_and_ends_the_survey(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn = await company(client, admin_headers, evolution, config=CONFIG)
    phone = unique_phone()
    ticket = await _attended_and_finalized(client, db, evolution, tenant, conn, phone)
    await write(evolution, db, conn, phone, "nota 5, valeu")
    newer = await open_ticket(db, tenant, phone)
    assert newer["_id"] != ticket["_id"]
    await write(evolution, db, conn, phone, "3")  # still in the window, but a conversation is open
    assert await db.messages.find_one({"ticket_id": newer["_id"], "body": "3"}) is not None
    assert (await db.tickets.find_one({"_id": ticket["_id"]})).get("rating") is None
    assert len(await tickets_of(db, tenant, phone)) == 2


async def test_a_ticket_nobody_held_gets_the_closing_message_but_no_survey_and_api_tickets_nothing(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn = await company(client, admin_headers, evolution, config=CONFIG)
    phone = unique_phone()
    await write(evolution, db, conn, phone, "oi")
    ticket = await open_ticket(db, tenant, phone)
    assert (await client.post(f"{API}/tickets/{ticket['_id']}/finalize", headers=tenant.headers)).status_code == 200
    assert [m["automatic_purpose"] for m in await automatic(db, ticket["_id"])] == ["closing"]
    await write(evolution, db, conn, phone, "5")  # no survey asked: a message like any other
    assert len(await tickets_of(db, tenant, phone)) == 2

    customer = await make_client(client, tenant)
    body = {"client_id": customer["id"], "department_id": tenant.departments[0]["id"], "message": "pelo site"}
    r = await client.post(f"{API}/tickets", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    assert (await client.post(f"{API}/tickets/{r.json()['id']}/finalize", headers=tenant.headers)).status_code == 200
    assert await automatic(db, r.json()["id"]) == []


async def test_a_digit_while_another_conversation_is_open_on_the_number_is_not_a_rating(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn = await company(client, admin_headers, evolution, config=CONFIG)
    phone = unique_phone()
    ticket = await _attended_and_finalized(client, db, evolution, tenant, conn, phone)
    # A conversation opened on the same number by someone else than the client's own message
    # (as an agent starting one does): the survey was not closed by a client's new ticket.
    customer = User.model_validate(await db.users.find_one({"reseller_id": tenant.id, "phone": phone}))
    started, created = await tickets_service.open_for_client(
        db,
        reseller_id=tenant.id,
        client=customer,
        department_id=conn["default_department_id"],
        channel=conn["id"],
        actor_id=tenant.owner_id,
        actor_role="reseller",
    )
    assert created
    await write(evolution, db, conn, phone, "5")
    assert await db.messages.find_one({"ticket_id": started.id, "body": "5"}) is not None
    assert (await db.tickets.find_one({"_id": ticket["_id"]})).get("rating") is None
