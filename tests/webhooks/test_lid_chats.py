"""WhatsApp's privacy addressing (LID): Baileys 7 names some chats only by "<lid>@lid", a per-account
id that is not a phone number, and gives the number beside it (`remoteJidAlt`) only when the
stanza carries it; Evolution API 2.3.6 posts the key as Baileys made it, and sends to "<lid>@lid"
as it is (src/utils/createJid.ts). Through the real webhook and API, with the fake Evolution as
its own process: every LID chat reaches an agent, with or without a number, and stays one
conversation and one client as its deliveries name it by LID, by number or by both; replies go
where the chat is; a client known only by its LID can be given its number once."""

from typing import Any

import httpx

from backend.clients import service as clients
from backend.core import natural_keys
from tests.automation.helpers import company, left
from tests.factories import API, Tenant, collection_counts, make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.webhooks.evolution_shapes import (
    all_messages,
    clients_of,
    key_id,
    pn_key,
    post,
    shown,
    thread,
    tickets_of,
    upsert,
)


def _lid() -> str:
    return "2" + unique_phone()[-14:]  # a LID's user part: digits, not a number of any plan


def _lid_key(lid: str, *, alt: str | None = None, from_me: bool = False, kid: str | None = None) -> dict[str, Any]:
    key: dict[str, Any] = {"remoteJid": f"{lid}@lid", "fromMe": from_me, "id": kid or key_id(), "addressingMode": "lid"}
    if alt is not None:
        key["remoteJidAlt"] = f"{alt}@s.whatsapp.net"
    return key


def _text(key: dict[str, Any], text: str, *, push_name: str = "Maria") -> dict[str, Any]:
    return upsert(key, {"conversation": text}, "conversation", push_name=push_name)


async def _reply(client: httpx.AsyncClient, tenant: Tenant, ticket_id: str, body: str) -> None:
    agent = tenant.agents[0]
    r = await client.post(f"{API}/tickets/{ticket_id}/assume", headers=agent["headers"])
    assert r.status_code in (200, 409), r.text  # 409: it holds the ticket already
    r = await client.post(f"{API}/tickets/{ticket_id}/messages", json={"body": body}, headers=agent["headers"])
    assert r.status_code == 201, r.text


async def _sent(evolution: FakeEvolution, text: str) -> list[dict[str, Any]]:
    return [s for s in await evolution.sent() if str(s.get("text", "")).endswith(text)]  # signed by the agent


async def test_a_lid_chat_without_its_number_reaches_an_agent_and_gets_the_reply(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    lid = _lid()
    raw = await post(client, db, conn, _text(_lid_key(lid), "preciso de ajuda"))
    assert raw["status"] == "processed", raw["result"]
    (ticket,) = await tickets_of(client, tenant)
    assert ticket["status"] == "espera"
    assert shown(await thread(client, tenant, ticket["id"])) == [("in", "text", "preciso de ajuda")]
    (customer,) = await clients_of(client, tenant)
    assert (customer["name"], customer["phone"]) == ("Maria", "")  # WhatsApp hid the number
    assert (ticket["client_id"], ticket["client_name"], ticket["client_phone"]) == (customer["id"], "Maria", "")

    await _reply(client, tenant, ticket["id"], "Olá Maria, em que posso ajudar?")
    (send,) = await wait_for(lambda: _sent(evolution, "Olá Maria, em que posso ajudar?"))
    assert (send["number"], send["jid"]) == (f"{lid}@lid", f"{lid}@lid")  # where the chat is

    # The client answers on the same LID chat: the same ticket, the same client.
    await post(client, db, conn, _text(_lid_key(lid), "meu pedido não chegou"))
    assert [t["id"] for t in await tickets_of(client, tenant)] == [ticket["id"]]
    assert [m["body"].split("\n")[-1] for m in await thread(client, tenant, ticket["id"])] == [
        "preciso de ajuda",
        "Olá Maria, em que posso ajudar?",
        "meu pedido não chegou",
    ]
    assert [c["id"] for c in await clients_of(client, tenant)] == [customer["id"]]

    # A reply quoting the client's message: the quote's key names the same LID chat.
    quoted = (await thread(client, tenant, ticket["id"]))[-1]
    body = {"body": "Vou verificar o pedido", "quoted_message_id": quoted["id"]}
    r = await client.post(f"{API}/tickets/{ticket['id']}/messages", json=body, headers=tenant.agents[0]["headers"])
    assert r.status_code == 201, r.text
    (send,) = await wait_for(lambda: _sent(evolution, "Vou verificar o pedido"))
    assert send["quoted"]["key"]["remoteJid"] == f"{lid}@lid"


async def test_the_reply_typed_on_the_phone_in_a_lid_chat_shows_in_the_ticket(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    lid, phone = _lid(), unique_phone()
    await post(client, db, conn, _text(_lid_key(lid, alt=phone), "oi"))
    # Our own device's stanza names the peer by its LID alone.
    raw = await post(client, db, conn, _text(_lid_key(lid, from_me=True), "Já verifico seu pedido", push_name="Loja"))
    assert raw["status"] == "processed", raw["result"]
    (ticket,) = await tickets_of(client, tenant)
    assert shown(await thread(client, tenant, ticket["id"])) == [
        ("in", "text", "oi"),
        ("out", "text", "Já verifico seu pedido"),
    ]
    (customer,) = await clients_of(client, tenant)
    assert (customer["name"], customer["phone"]) == ("Maria", phone)


async def test_deliveries_naming_the_chat_by_lid_by_number_or_both_are_one_client_and_one_ticket(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """The order a LID chat's deliveries come in decides nothing: first without the number (a
    client known only by its LID), then with it (the number joins that client), then by the
    number alone (a PN-addressed delivery finds the same client by its number's key)."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    lid, phone = _lid(), unique_phone()
    await post(client, db, conn, _text(_lid_key(lid), "um"))
    await post(client, db, conn, _text(_lid_key(lid, alt=phone), "dois"))
    await post(client, db, conn, _text(pn_key(phone), "três"))
    key = {**pn_key(phone), "remoteJidAlt": f"{lid}@lid"}  # Baileys 7: a PN chat names its LID beside
    await post(client, db, conn, _text(key, "quatro"))

    (ticket,) = await tickets_of(client, tenant)
    assert [m["body"] for m in await thread(client, tenant, ticket["id"])] == ["um", "dois", "três", "quatro"]
    (customer,) = await clients_of(client, tenant)
    assert (customer["id"], customer["phone"]) == (ticket["client_id"], phone)
    reseller = tenant.id
    assert await clients.id_for_chat(db, reseller, phone="", lid=lid) == customer["id"]
    assert await clients.id_for_chat(db, reseller, phone=phone, lid="") == customer["id"]

    # The ticket opened while the client was known by its LID alone: its replies go to the LID.
    await _reply(client, tenant, ticket["id"], "Anotado!")
    (send,) = await wait_for(lambda: _sent(evolution, "Anotado!"))
    assert send["number"] == f"{lid}@lid"
    await post(client, db, conn, _text(pn_key(phone), "obrigado"))
    assert [m["body"] for m in await thread(client, tenant, ticket["id"])][-1] == "obrigado"


async def test_a_client_known_by_number_is_found_when_its_chat_turns_to_lid(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """A client saved (or seen) by number; its chat then moves to LID addressing. The first LID
    delivery that carries the number binds the LID to that client; later ones without it find
    the client by the LID, and replies in the new tickets still go to the number."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    lid, phone = _lid(), unique_phone()
    r = await client.post(f"{API}/clients", json={"name": "João", "phone": phone}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    saved = r.json()
    await post(client, db, conn, _text(_lid_key(lid, alt=phone), "bom dia"))
    await post(client, db, conn, _text(_lid_key(lid), "tem boleto?"))
    (ticket,) = await tickets_of(client, tenant)
    assert ticket["client_id"] == saved["id"]
    assert [m["body"] for m in await thread(client, tenant, ticket["id"])] == ["bom dia", "tem boleto?"]
    assert [(c["id"], c["name"], c["phone"]) for c in await clients_of(client, tenant)] == [
        (saved["id"], "João", phone)
    ]
    await _reply(client, tenant, ticket["id"], "Segue o boleto")
    (send,) = await wait_for(lambda: _sent(evolution, "Segue o boleto"))
    assert send["number"] == phone


async def test_hosted_business_chats_reach_an_agent(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """Baileys 7: accounts hosted by Meta chat from "<number>:<device>@hosted" or
    "<lid>:<device>@hosted.lid" — one person's chat all the same."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    phone, lid = unique_phone(), _lid()
    for jid, text in ((f"{phone}:99@hosted", "cotação"), (f"{lid}:99@hosted.lid", "pedido")):
        raw = await post(client, db, conn, _text({"remoteJid": jid, "fromMe": False, "id": key_id()}, text))
        assert raw["status"] == "processed", raw["result"]
    assert sorted(m["body"] for m in await all_messages(client, tenant)) == ["cotação", "pedido"]
    assert sorted(c["phone"] for c in await clients_of(client, tenant)) == ["", phone]


async def test_groups_and_broadcasts_are_still_not_a_persons_chat(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    for jid in ("120363000000000000@g.us", "status@broadcast", "120363000000000001@newsletter", "abc@lid"):
        raw = await post(client, db, conn, _text({"remoteJid": jid, "fromMe": False, "id": key_id()}, "x"))
        assert raw["result"] == ["ignored: not a person's chat"], (jid, raw)
    assert await tickets_of(client, tenant) == []


async def test_a_lid_client_is_given_its_number_once_and_never_anothers(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    lid, phone, taken = _lid(), unique_phone(), unique_phone()
    await post(client, db, conn, _text(_lid_key(lid), "oi"))
    (customer,) = await clients_of(client, tenant)
    r = await client.post(f"{API}/clients", json={"name": "Outro", "phone": taken}, headers=tenant.headers)
    other = r.json()

    before = await collection_counts(db)
    r = await client.patch(f"{API}/clients/{customer['id']}", json={"phone": taken}, headers=tenant.headers)
    assert r.status_code == 409, r.text
    assert r.json()["detail"] == {"message": "a client with this phone already exists", "client_id": other["id"]}
    assert await collection_counts(db) == before

    r = await client.patch(f"{API}/clients/{customer['id']}", json={"phone": f"+{phone}"}, headers=tenant.headers)
    assert (r.status_code, r.json()["phone"]) == (200, phone), r.text
    r = await client.get(f"{API}/clients", params={"phone": phone}, headers=tenant.headers)
    assert [c["id"] for c in r.json()["items"]] == [customer["id"]]
    # The same number again changes nothing; another one is refused: a client's number stays.
    r = await client.patch(f"{API}/clients/{customer['id']}", json={"phone": phone}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    r = await client.patch(f"{API}/clients/{customer['id']}", json={"phone": unique_phone()}, headers=tenant.headers)
    assert r.status_code == 422, r.text
    # A message by number now reaches the same client's open ticket.
    await post(client, db, conn, _text(pn_key(phone), "sou eu"))
    (ticket,) = await tickets_of(client, tenant)
    assert [m["body"] for m in await thread(client, tenant, ticket["id"])] == ["oi", "sou eu"]


async def test_a_process_killed_between_the_lid_key_and_the_client_is_completed_by_the_redelivery(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """The writes of a new LID client are a claim of its LID key, a claim of its number's key and
    the client document. A process killed after the keys left them bound to an id with no
    document: the delivery's retry (or the chat's next message) makes that very client."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    lid, phone = _lid(), unique_phone()
    reseller = tenant.id
    orphan = "0" * 8 + key_id()[-16:].lower()
    await natural_keys.claim(db, clients.LID_KEY, reseller, lid, target=orphan)
    await clients.claim_phone_key(db, reseller_id=reseller, phone=phone, target=orphan)
    raw = await post(client, db, conn, _text(_lid_key(lid, alt=phone), "alguém?"))
    assert raw["status"] == "processed", raw["result"]
    (customer,) = await clients_of(client, tenant)
    assert (customer["id"], customer["phone"]) == (orphan, phone)
    (ticket,) = await tickets_of(client, tenant)
    assert ticket["client_id"] == orphan


async def test_the_number_joins_a_lid_client_even_when_the_document_write_was_lost(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """Linking a number to a client known by LID claims the number's key, then writes the number
    on the client: a process killed between the two (the key bound, the document without it) is
    completed by the chat's next delivery that carries the number."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    lid, phone = _lid(), unique_phone()
    await post(client, db, conn, _text(_lid_key(lid), "oi"))
    (customer,) = await clients_of(client, tenant)
    await clients.claim_phone_key(db, reseller_id=tenant.id, phone=phone, target=customer["id"])
    assert (await clients_of(client, tenant))[0]["phone"] == ""
    await post(client, db, conn, _text(_lid_key(lid, alt=phone), "de novo"))
    assert [(c["id"], c["phone"]) for c in await clients_of(client, tenant)] == [(customer["id"], phone)]


async def test_an_agent_starts_a_conversation_with_a_client_known_only_by_its_lid(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    lid = _lid()
    await post(client, db, conn, _text(_lid_key(lid), "oi"))
    (first,) = await tickets_of(client, tenant)
    await _reply(client, tenant, first["id"], "Resolvido, até mais")
    agent = tenant.agents[0]
    r = await client.post(f"{API}/tickets/{first['id']}/finalize", headers=agent["headers"])
    assert r.status_code == 200, r.text

    body = {
        "client_id": first["client_id"],
        "department_id": tenant.departments[0]["id"],
        "message": "Maria, seu pedido saiu para entrega",
        "connection_id": conn["id"],
    }
    r = await client.post(f"{API}/tickets", json=body, headers=agent["headers"])
    assert r.status_code == 201, r.text
    (send,) = await wait_for(lambda: _sent(evolution, "Maria, seu pedido saiu para entrega"))
    assert send["number"] == f"{lid}@lid"
    # Her answer on the LID chat lands in the ticket the agent started.
    await post(client, db, conn, _text(_lid_key(lid), "obrigada!"))
    assert [m["body"] for m in await thread(client, tenant, r.json()["id"])][-1] == "obrigada!"


async def test_the_echo_of_a_reply_sent_by_number_is_known_when_it_names_the_chat_by_lid(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """Evolution may post the fromMe echo of our send before it answers the send, when only the
    text sent to this chat can tell it (outbound `from_me_verdict`). The reply went to the number;
    the echo names the chat by its LID alone. The send was marked under both forms the ticket
    knows, so the echo is known as ours, not stored as a second message typed on the phone."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    lid, phone = _lid(), unique_phone()
    await post(client, db, conn, _text(_lid_key(lid, alt=phone), "oi"))
    (ticket,) = await tickets_of(client, tenant)
    await evolution.mode("ok", echo_first_seconds=0.5, echo_as={phone: f"{lid}@lid"})
    try:
        await _reply(client, tenant, ticket["id"], "Bom dia!")
        (send,) = await wait_for(lambda: _sent(evolution, "Bom dia!"))
    finally:
        await evolution.mode("ok", echo_first_seconds=0.0)
    assert (send["number"], send["jid"]) == (phone, f"{lid}@lid")

    async def both_settled() -> list[dict[str, Any]] | None:
        raws = await db.webhook_events_raw.find({"connection_id": conn["id"], "chat": f"{lid}@lid"}).to_list(None)
        return raws if len(raws) == 2 and all(r["status"] != "received" for r in raws) else None

    raws = await wait_for(both_settled)  # the client's "oi", then the echo
    assert ["echo of an IAZE reply"] in [r["result"] for r in raws], raws
    assert [(m["direction"], m["body"].split("\n")[-1]) for m in await thread(client, tenant, ticket["id"])] == [
        ("in", "oi"),
        ("out", "Bom dia!"),
    ]


async def test_the_survey_answer_names_the_chat_by_its_lid_and_still_rates_the_ticket(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """The survey is keyed by the address its ticket had (the number); the client's "5" comes
    naming the chat by its LID alone. The client is known by both: the digit rates the ticket."""
    config = {"csat_enabled": True, "csat_window_hours": 2, "csat_message": "De 1 a 5?"}
    tenant, conn = await company(client, admin_headers, evolution, config=config)
    lid, phone = _lid(), unique_phone()
    await post(client, db, conn, _text(_lid_key(lid, alt=phone), "preciso de ajuda"))
    (ticket,) = await tickets_of(client, tenant)
    assert ticket["client_phone"] == phone
    agent = tenant.agents[0]["headers"]
    assert (await client.post(f"{API}/tickets/{ticket['id']}/assume", headers=agent)).status_code == 200
    assert (await client.post(f"{API}/tickets/{ticket['id']}/finalize", headers=agent)).status_code == 200
    await left(db, ticket["id"], "survey")
    raw = await post(client, db, conn, _text(_lid_key(lid), "5"))
    assert raw["result"][0].startswith(f"rating 5 of ticket {ticket['id']}"), raw["result"]
    r = await client.get(f"{API}/tickets/{ticket['id']}", headers=tenant.headers)
    assert (r.json()["status"], r.json()["rating"]) == ("finalizado", 5)
    assert [t["id"] for t in await tickets_of(client, tenant)] == [ticket["id"]]


async def test_a_number_given_by_a_request_killed_after_its_key_is_completed_by_the_retry(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """Giving a LID client its number claims the number's key, then writes the number on the
    client. A request killed between the two (never answered) left the key bound to the client and
    the document without it: the retry finds the key its own and writes the number, and a message
    by that number reaches the client's conversation."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    lid, phone = _lid(), unique_phone()
    await post(client, db, conn, _text(_lid_key(lid), "oi"))
    (customer,) = await clients_of(client, tenant)
    await clients.claim_phone_key(db, reseller_id=tenant.id, phone=phone, target=customer["id"])  # the killed request
    assert (await clients_of(client, tenant))[0]["phone"] == ""
    r = await client.patch(f"{API}/clients/{customer['id']}", json={"phone": phone}, headers=tenant.headers)
    assert (r.status_code, r.json()["phone"]) == (200, phone), r.text
    await post(client, db, conn, _text(pn_key(phone), "por número"))
    (ticket,) = await tickets_of(client, tenant)
    assert [m["body"] for m in await thread(client, tenant, ticket["id"])] == ["oi", "por número"]
