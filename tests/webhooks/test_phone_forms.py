"""One WhatsApp account, two numbers: a Brazilian mobile saved with its ninth digit ("55 31 9
8xxx-xxxx") is reached by Evolution at the JID without it ("5531 8xxx-xxxx", createJid's
formatBRNumber: DDD 31 and up, an account from before the ninth digit), and the client's answers
come from that JID. Through the real API and webhook, with the fake Evolution as its own process
(which addresses sends as createJid does): the answer lands in the ticket the agent started, the
echo of our send is known as ours, the other form finds the same client, the survey digit rates
the ticket, and two first messages from the two forms make one client. Landlines and other
countries keep their own numbers (the rule: backend/clients/phones.py)."""

import uuid
from typing import Any

import httpx
import pytest

from backend.clients import service as clients
from backend.core import natural_keys
from backend.core.config import Settings
from backend.webhooks import service as webhooks
from tests.automation.helpers import left
from tests.factories import API, Tenant, collection_counts, make_tenant
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.webhooks.evolution_shapes import clients_of, thread, tickets_of
from tests.webhooks.helpers import settled, text_upsert

HOOK = "/api/v1/webhooks/whatsapp"


def _two_forms(area: str = "31") -> tuple[str, str]:
    """(as typed, the JID's number): a mobile of DDD `area` with and without its ninth digit."""
    rest = "8" + f"{uuid.uuid4().int % 10**7:07d}"
    return f"55{area}9{rest}", f"55{area}{rest}"


def _typed(number: str) -> str:
    """How a person types it: "+55 (31) 9 8xxx-xxxx"."""
    return f"+55 ({number[2:4]}) {number[4]} {number[5:9]}-{number[9:]}"


async def _save(client: httpx.AsyncClient, tenant: Tenant, phone: str, name: str = "João") -> httpx.Response:
    return await client.post(f"{API}/clients", json={"name": name, "phone": phone}, headers=tenant.headers)


async def _start(client: httpx.AsyncClient, tenant: Tenant, conn: dict[str, Any], client_id: str) -> dict[str, Any]:
    agent = tenant.agents[0]
    body = {
        "client_id": client_id,
        "department_id": tenant.departments[0]["id"],
        "message": "Olá João, seu boleto venceu",
        "connection_id": conn["id"],
    }
    r = await client.post(f"{API}/tickets", json=body, headers=agent["headers"])
    assert r.status_code == 201, r.text
    ticket: dict[str, Any] = r.json()
    assert (ticket["status"], ticket["agent_id"]) == ("atendendo", agent["id"])
    return ticket


async def _thread(client: httpx.AsyncClient, tenant: Tenant, ticket_id: str) -> list[tuple[str, str]]:
    return [(m["direction"], m["body"]) for m in await thread(client, tenant, ticket_id)]


async def _by_phone(client: httpx.AsyncClient, tenant: Tenant, phone: str) -> list[str]:
    r = await client.get(f"{API}/clients", params={"phone": phone}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    return [c["id"] for c in r.json()["items"]]


async def _sent_to(evolution: FakeEvolution, number: str) -> list[dict[str, Any]]:
    return [s for s in await evolution.sent() if s["number"] == number]


async def _first_sent(client: httpx.AsyncClient, tenant: Tenant, ticket_id: str) -> bool:
    r = await client.get(f"{API}/tickets/{ticket_id}/messages", headers=tenant.headers)
    return bool(r.json()["items"][0]["status"] == "sent")


async def _write(evolution: FakeEvolution, db: Any, conn: dict[str, Any], phone: str, text: str) -> dict[str, Any]:
    result = await evolution.inbound(conn["instance_name"], phone, text, push_name="João")
    raw = await settled(db, result)
    assert raw["status"] == "processed", raw
    return raw


async def test_the_answer_from_the_jid_without_the_nine_lands_in_the_ticket_the_agent_started(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    with_nine, jid_number = _two_forms()
    r = await _save(client, tenant, _typed(with_nine))
    assert r.status_code == 201, r.text
    customer = r.json()
    started = await _start(client, tenant, conn, customer["id"])

    (send,) = await wait_for(lambda: _sent_to(evolution, with_nine))
    assert send["jid"] == f"{jid_number}@s.whatsapp.net"  # where Evolution delivers it
    await wait_for(lambda: _first_sent(client, tenant, started["id"]))

    await _write(evolution, db, conn, jid_number, "já paguei ontem")

    tickets = await tickets_of(client, tenant)
    assert [(t["id"], t["status"]) for t in tickets] == [(started["id"], "atendendo")], tickets
    thread = await _thread(client, tenant, started["id"])
    assert [d for d, _ in thread] == ["out", "in"] and thread[-1] == ("in", "já paguei ontem")
    # One client, its phone as it was typed; the JID's number finds it.
    assert [(c["id"], c["phone"]) for c in await clients_of(client, tenant)] == [(customer["id"], with_nine)]
    assert await _by_phone(client, tenant, jid_number) == [customer["id"]]


async def test_the_echo_of_the_agents_message_from_the_jid_without_the_nine_is_not_a_second_message(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """Evolution may post the fromMe echo of our send (from the JID it addressed) before it
    answers the send: it is matched by the text sent to this chat (outbound `sending_id`, keyed
    by the chat's number in its canonical form), not stored as a message typed on the phone."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    with_nine, jid_number = _two_forms()
    customer = (await _save(client, tenant, with_nine)).json()
    await evolution.mode("ok", echo_first_seconds=0.5)  # under EVOLUTION_TIMEOUT_SECONDS
    try:
        started = await _start(client, tenant, conn, customer["id"])
        await wait_for(lambda: _first_sent(client, tenant, started["id"]))
    finally:
        await evolution.mode("ok", echo_first_seconds=0.0)

    async def echo_settled() -> bool:
        raw = await db.webhook_events_raw.find_one(
            {"connection_id": conn["id"], "chat": f"{jid_number}@s.whatsapp.net"}
        )
        return raw is not None and raw["status"] != "received"

    await wait_for(echo_settled)
    raw = await db.webhook_events_raw.find_one({"connection_id": conn["id"], "chat": f"{jid_number}@s.whatsapp.net"})
    assert raw["result"] == ["echo of an IAZE reply"], raw
    assert [t["id"] for t in await tickets_of(client, tenant)] == [started["id"]]
    assert [d for d, _ in await _thread(client, tenant, started["id"])] == ["out"]
    assert [c["id"] for c in await clients_of(client, tenant)] == [customer["id"]]


async def test_a_client_who_wrote_from_the_jid_without_the_nine_is_the_one_saved_with_it(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    with_nine, jid_number = _two_forms(area="41")
    await _write(evolution, db, conn, jid_number, "oi, boa tarde")
    (existing,) = await clients_of(client, tenant)
    assert existing["phone"] == jid_number  # as WhatsApp reported it

    before = await collection_counts(db)
    r = await _save(client, tenant, _typed(with_nine), name="João da Silva")
    assert r.status_code == 409, r.text
    assert r.json()["detail"] == {"message": "a client with this phone already exists", "client_id": existing["id"]}
    assert await collection_counts(db) == before
    assert await _by_phone(client, tenant, with_nine) == [existing["id"]]

    # A CSV with the typed number finds the client too, and the two forms are one line's phone.
    csv = f"nome;telefone\nJoão;{_typed(with_nine)}\n"
    r = await client.post(f"{API}/clients/import", json={"csv": csv}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert [row["exists"] for row in r.json()["rows"]] == [True]
    csv = f"nome;telefone\nJoão;{with_nine}\nJoão;{jid_number}\n"
    r = await client.post(f"{API}/clients/import", json={"csv": csv}, headers=tenant.headers)
    assert r.json()["errors"] == [{"line": 3, "field": "phone", "message": "the same phone is on line 2"}]


async def test_landlines_and_other_countries_keep_their_numbers_mexico_and_argentina_their_pairs(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    eight = "3" + f"{uuid.uuid4().int % 10**7:07d}"
    landline, newer_mobile = f"5531{eight}", f"55319{eight}"  # a landline; a mobile of the 9 3xxx range
    uk, uk_with_nine = "447700900123", "4477009900123"  # the Brazilian shape in another country
    for phone in (landline, newer_mobile, uk, uk_with_nine):
        r = await _save(client, tenant, phone, name=f"C {phone}")
        assert (r.status_code, r.json()["phone"]) == (201, phone), r.text
    ids = {c["phone"]: c["id"] for c in await clients_of(client, tenant)}

    await _write(evolution, db, conn, landline, "orçamento do PABX")
    (ticket,) = await tickets_of(client, tenant)
    assert ticket["client_id"] == ids[landline]
    assert await _by_phone(client, tenant, newer_mobile) == [ids[newer_mobile]]

    # Mexico ("52 1" + 10 digits) and Argentina ("54 9" + 10 digits): one account either way.
    for marked, plain in (("5215512345678", "525512345678"), ("5491123456789", "541123456789")):
        first = await _save(client, tenant, marked)
        assert first.status_code == 201, first.text
        r = await _save(client, tenant, plain)
        assert (r.status_code, r.json()["detail"]["client_id"]) == (409, first.json()["id"]), r.text
        assert await _by_phone(client, tenant, plain) == [first.json()["id"]]


async def test_the_survey_digit_from_the_jid_without_the_nine_rates_the_ticket(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """The survey is kept per chat (outbound.chat_key of the ticket's client phone, as saved) and
    looked up by the number of the JID the digit comes from: one chat key for both forms."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    config = {"csat_enabled": True, "csat_window_hours": 2}
    r = await client.patch(f"{API}/reseller-config", json=config, headers=tenant.headers)
    assert r.status_code == 200, r.text
    conn = await make_connection(client, tenant, evolution)
    with_nine, jid_number = _two_forms(area="71")
    customer = (await _save(client, tenant, with_nine)).json()
    started = await _start(client, tenant, conn, customer["id"])
    await _write(evolution, db, conn, jid_number, "resolvido, obrigado")
    r = await client.post(f"{API}/tickets/{started['id']}/finalize", headers=tenant.agents[0]["headers"])
    assert r.status_code == 200, r.text
    await left(db, started["id"], "survey")

    raw = await _write(evolution, db, conn, jid_number, "5")
    assert raw["result"][0].startswith(f"rating 5 of ticket {started['id']}"), raw["result"]
    r = await client.get(f"{API}/tickets/{started['id']}", headers=tenant.headers)
    assert (r.json()["status"], r.json()["rating"]) == ("finalizado", 5)
    assert [t["id"] for t in await tickets_of(client, tenant)] == [started["id"]]


async def test_first_messages_from_both_forms_at_once_make_one_client(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The message from the JID without the nine looks its client up and finds nobody; before it
    claims the phone key, the message from the form with the nine (another lane, so processed
    meanwhile) is processed whole and creates the client. The unique key then arbitrates: the
    first message joins that client and its ticket."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    token = (await db.whatsapp_connections.find_one({"_id": conn["id"]}))["webhook_token"]
    headers = {"X-Webhook-Token": token}
    while True:  # two lanes, so the competitor is processed while the first message waits
        with_nine, jid_number = _two_forms(area="31")
        lanes = {
            webhooks.lane_of(conn["id"], f"{n}@s.whatsapp.net", settings.WEBHOOK_LANES) for n in (with_nine, jid_number)
        }
        if len(lanes) == 2:
            break

    original = natural_keys.lookup
    competitor: list[dict[str, Any]] = []

    async def lookup_then_competitor(db_: Any, kind: str, *parts: str) -> str | None:
        found = await original(db_, kind, *parts)
        if kind == clients.PHONE_KEY and parts[0] == tenant.id and not competitor:
            assert found is None  # the first message found nobody
            competitor.append({})
            ack = await client.post(
                f"{HOOK}/{conn['id']}", json=text_upsert(with_nine, f"B{with_nine}", "segunda via"), headers=headers
            )
            competitor[0] = await settled(db, ack)
        return found

    monkeypatch.setattr(natural_keys, "lookup", lookup_then_competitor)
    ack = await client.post(
        f"{HOOK}/{conn['id']}", json=text_upsert(jid_number, f"A{jid_number}", "boleto vencido"), headers=headers
    )
    first = await settled(db, ack)
    monkeypatch.undo()

    assert competitor and competitor[0]["status"] == "processed", competitor
    assert first["status"] == "processed", first
    (customer,) = await clients_of(client, tenant)
    assert customer["phone"] == with_nine  # created by the competitor, which won the key
    (ticket,) = await tickets_of(client, tenant)
    assert ticket["client_id"] == customer["id"]
    assert await _thread(client, tenant, ticket["id"]) == [("in", "segunda via"), ("in", "boleto vencido")]
