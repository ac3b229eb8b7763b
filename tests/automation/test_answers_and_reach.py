"""What the audit found (through the real path: fake Evolution, webhook processor, outbox worker):
odd client texts never fail a delivery; the menu reads common answer forms, ends when a person
answers from the phone, and repeats only what can still be chosen; nothing automatic is queued on
a closed connection at Finalizar; the survey is asked about attendances the client took part in."""

from typing import Any

import httpx

from tests.automation.helpers import automatic, company, left, open_ticket, tickets_of, write
from tests.factories import API, Tenant, make_client, unique_phone
from tests.fakes.harness import FakeEvolution
from tests.webhooks.helpers import connection_state, settled

MENU_TEXT = "Escolha o departamento:"
CONFIG = {"closing_message": "Tchau {{cliente}}", "csat_enabled": True, "csat_window_hours": 24}
# isdigit() but not int()-readable, other scripts' digits, digits glued to words or marks.
ODD = [
    "²",
    "¹",
    "③",
    "①",
    "³",
    "½",
    "Ⅻ",
    "⑴",
    "⒈",
    "1️⃣2",
    "1\u20e3\u20e3",
    "-1",
    "99999999999999999999",
    "1..",
    "0",
]


async def _with_menu(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    *,
    departments: int = 2,
    **menu: Any,
) -> tuple[Tenant, dict[str, Any]]:
    tenant, conn = await company(client, admin_headers, evolution, config={}, departments=departments)
    ids = [d["id"] for d in tenant.departments]
    body = {"menu_enabled": True, "menu_department_ids": ids, "menu_text": MENU_TEXT, **menu}
    r = await client.patch(f"{API}/whatsapp-connections/{conn['id']}", json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    return tenant, r.json()


async def test_odd_digits_and_marks_are_stored_as_messages_in_the_menu_and_after_a_survey(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn = await _with_menu(client, admin_headers, evolution, menu_max_invalid=10)
    r = await client.patch(f"{API}/reseller-config", json=CONFIG, headers=tenant.headers)
    assert r.status_code == 200, r.text
    phone = unique_phone()
    await write(evolution, db, conn, phone, "oi")
    ticket = await open_ticket(db, tenant, phone)
    for i, body in enumerate(ODD):  # each one an invalid menu answer: stored, never a failed delivery
        raw = await write(evolution, db, conn, phone, body)
        expected = "menu repeated" if i < 10 else ("menu fallback" if i == 10 else None)
        assert expected is None or raw["result"][0].endswith(f"automatic: {expected}"), (body, raw["result"])
        assert await db.messages.find_one({"ticket_id": ticket["_id"], "body": body}) is not None, body

    # The same texts right after a survey question the client received: messages, not ratings.
    agent = tenant.agents[0]["headers"]
    assert (await client.post(f"{API}/tickets/{ticket['_id']}/assume", headers=agent)).status_code == 200
    assert (await client.post(f"{API}/tickets/{ticket['_id']}/finalize", headers=agent)).status_code == 200
    await left(db, ticket["_id"], "survey")
    for body in ODD:
        await write(evolution, db, conn, phone, body)
        assert await db.messages.find_one({"body": body, "ticket_id": {"$ne": ticket["_id"]}}) is not None, body
    assert (await db.tickets.find_one({"_id": ticket["_id"]})).get("rating") is None


async def test_common_answer_forms_choose_and_a_number_with_words_does_not(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn = await _with_menu(client, admin_headers, evolution, menu_max_invalid=3)
    financeiro = tenant.departments[1]
    for answer in ["2.", "2)", "2️⃣", "2 -", " 2: "]:
        phone = unique_phone()
        await write(evolution, db, conn, phone, "oi")
        ticket = await open_ticket(db, tenant, phone)
        raw = await write(evolution, db, conn, phone, answer)
        assert raw["result"][0].endswith("automatic: menu choice 2"), (answer, raw["result"])
        assert (await db.tickets.find_one({"_id": ticket["_id"]}))["department_id"] == financeiro["id"]
    phone = unique_phone()
    await write(evolution, db, conn, phone, "oi")
    ticket = await open_ticket(db, tenant, phone)
    raw = await write(evolution, db, conn, phone, "2 boletos atrasados")
    assert raw["result"][0].endswith("automatic: menu repeated"), raw["result"]
    assert (await db.tickets.find_one({"_id": ticket["_id"]}))["menu_pending"] is True


async def test_a_reply_typed_on_the_phone_ends_the_menu_as_a_person_taking_the_ticket_does(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn = await _with_menu(client, admin_headers, evolution, menu_max_invalid=1)
    suporte = tenant.departments[0]
    phone = unique_phone()
    await write(evolution, db, conn, phone, "oi")
    ticket = await open_ticket(db, tenant, phone)
    result = await evolution.inbound(
        conn["instance_name"], phone, "Oi, aqui é o João da loja, pode falar", from_me=True
    )
    raw = await settled(db, result)
    assert raw["status"] == "processed" and raw["result"][0].endswith("menu ended: answered from the phone"), raw
    stored = await db.tickets.find_one({"_id": ticket["_id"]})
    assert (stored["status"], stored["department_id"], stored["menu_pending"]) == ("espera", suporte["id"], False)
    routed = await db.ticket_events.find_one({"ticket_id": ticket["_id"], "type": "routed"})
    assert routed is not None and routed["data"]["by_phone"] is True and routed["data"]["fallback"] is False
    for text in ["meu boleto não chegou", "consegue ver?", "2"]:
        raw = await write(evolution, db, conn, phone, text)
        assert "automatic" not in raw["result"][0], raw["result"]
    assert [m["automatic_purpose"] for m in await automatic(db, ticket["_id"])] == ["menu"]
    assert (await db.tickets.find_one({"_id": ticket["_id"]}))["department_id"] == suporte["id"]


async def test_the_repeated_menu_offers_only_active_departments_and_reads_the_answer_against_it(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn = await _with_menu(client, admin_headers, evolution, departments=3, menu_max_invalid=3)
    _, financeiro, comercial = tenant.departments
    phone = unique_phone()
    await write(evolution, db, conn, phone, "oi")
    ticket = await open_ticket(db, tenant, phone)
    r = await client.patch(f"{API}/departments/{financeiro['id']}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    raw = await write(evolution, db, conn, phone, "2")  # Financeiro in the menu shown, inactive now
    assert raw["result"][0].endswith("automatic: menu repeated"), raw["result"]
    menus = [m["body"] for m in await automatic(db, ticket["_id"])]
    assert menus[-1] == f"Não entendi sua resposta.\n{MENU_TEXT}\n1 - Suporte\n2 - Comercial"
    raw = await write(evolution, db, conn, phone, "2")  # "2" of the menu the client saw last
    assert raw["result"][0].endswith("automatic: menu choice 2"), raw["result"]
    stored = await db.tickets.find_one({"_id": ticket["_id"]})
    assert (stored["department_id"], stored["menu_pending"]) == (comercial["id"], False)


async def test_finalize_on_a_closed_connection_queues_no_closing_message_and_no_survey(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn = await company(client, admin_headers, evolution, config=CONFIG)
    phone = unique_phone()
    await write(evolution, db, conn, phone, "preciso de ajuda")
    ticket = await open_ticket(db, tenant, phone)
    agent = tenant.agents[0]["headers"]
    assert (await client.post(f"{API}/tickets/{ticket['_id']}/assume", headers=agent)).status_code == 200
    await connection_state(evolution, db, conn, "close")
    try:
        assert (await client.post(f"{API}/tickets/{ticket['_id']}/finalize", headers=agent)).status_code == 200
        assert await automatic(db, ticket["_id"]) == []
        assert await db.outbox.count_documents({"ticket_id": ticket["_id"]}) == 0
        assert await db.automation_surveys.find_one({"ticket_id": ticket["_id"]}) is None
    finally:
        await connection_state(evolution, db, conn, "open")
    # No survey: the client's digit once the phone is back opens a conversation.
    await write(evolution, db, conn, phone, "5")
    found = await tickets_of(db, tenant, phone)
    assert [t["status"] for t in found] == ["finalizado", "espera"]


async def test_the_survey_asks_about_attendances_the_client_took_part_in(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn = await company(client, admin_headers, evolution, config=CONFIG)
    agent = tenant.agents[0]["headers"]
    # An agent starts a conversation the client never answers: closing message, no survey.
    customer = await make_client(client, tenant, phone=unique_phone())
    body = {
        "client_id": customer["id"],
        "department_id": tenant.departments[0]["id"],
        "message": "Seu boleto vence amanhã",
        "connection_id": conn["id"],
    }
    r = await client.post(f"{API}/tickets", json=body, headers=agent)
    assert r.status_code == 201, r.text
    started = r.json()["id"]
    assert (await client.post(f"{API}/tickets/{started}/finalize", headers=agent)).status_code == 200
    assert [m["automatic_purpose"] for m in await automatic(db, started)] == ["closing"]

    # The same, answered by the client: asked.
    customer = await make_client(client, tenant, phone=unique_phone())
    r = await client.post(f"{API}/tickets", json={**body, "client_id": customer["id"]}, headers=agent)
    assert r.status_code == 201, r.text
    answered = r.json()["id"]
    await write(evolution, db, conn, customer["phone"], "obrigada, já paguei")
    assert await db.messages.find_one({"ticket_id": answered, "body": "obrigada, já paguei"}) is not None
    assert (await client.post(f"{API}/tickets/{answered}/finalize", headers=agent)).status_code == 200
    assert [m["automatic_purpose"] for m in await automatic(db, answered)] == ["closing", "survey"]

    # Handled by an agent, sent back to a queue, finalized from espera by the owner: asked.
    phone = unique_phone()
    await write(evolution, db, conn, phone, "preciso de ajuda")
    ticket = await open_ticket(db, tenant, phone)
    assert (await client.post(f"{API}/tickets/{ticket['_id']}/assume", headers=agent)).status_code == 200
    r = await client.post(
        f"{API}/tickets/{ticket['_id']}/transfer", json={"department_id": tenant.departments[1]["id"]}, headers=agent
    )
    assert r.status_code == 200, r.text
    assert (await client.post(f"{API}/tickets/{ticket['_id']}/finalize", headers=tenant.headers)).status_code == 200
    assert [m["automatic_purpose"] for m in await automatic(db, ticket["_id"])] == ["closing", "survey"]
