"""Read receipts: when the agent holding a ticket reads it, the client's phone shows its messages
read (Evolution's markMessageAsRead, blue ticks); a glance at the queue, another person's read or a
company that turned it off tells the client nothing. Through the real API, with the fake Evolution
as its own process recording what it was asked."""

import asyncio
from typing import Any

import httpx

from tests.factories import API, make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.outbound.helpers import held_ticket
from tests.webhooks.helpers import settled


async def _receipts(evolution: FakeEvolution, instance: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await evolution.control("GET", f"reads/{instance}")
    return found


async def _writes(evolution: FakeEvolution, db: Any, conn: dict[str, Any], phone: str, text: str) -> str:
    result = await evolution.inbound(conn["instance_name"], phone, text)
    assert (await settled(db, result))["status"] == "processed", result
    return str(result["key_id"])


async def test_the_holder_reading_tells_the_clients_phone_once_per_message_and_nobody_else_does(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=2)
    conn = await make_connection(client, tenant, evolution)
    instance = conn["instance_name"]
    other_agent, owner = tenant.agents[1]["headers"], tenant.headers
    # Before anyone holds it, an agent glances at the waiting ticket; then the first agent assumes
    # it, and the owner and the other agent open it: none of them is the person answering.
    phone = unique_phone()
    first = await _writes(evolution, db, conn, phone, "preciso de ajuda")
    ticket_id = str((await db.tickets.find_one({"reseller_id": tenant.id, "status": "espera"}))["_id"])
    assert (await client.post(f"{API}/tickets/{ticket_id}/read", headers=other_agent)).status_code == 200
    holder = tenant.agents[0]["headers"]
    assert (await client.post(f"{API}/tickets/{ticket_id}/assume", headers=holder)).status_code == 200
    for someone in (owner, other_agent):
        r = await client.post(f"{API}/tickets/{ticket_id}/read", headers=someone)
        assert r.status_code in (200, 404), r.text  # the other agent no longer sees it: 404
    second = await _writes(evolution, db, conn, phone, "o pedido 123")
    third = await _writes(evolution, db, conn, phone, "chegou errado")
    await client.post(f"{API}/tickets/{ticket_id}/read", headers=owner)
    await asyncio.sleep(0.5)
    assert await _receipts(evolution, instance) == []

    # The holder reads: the three messages it had not read, in order, as the client's chat names them.
    r = await client.post(f"{API}/tickets/{ticket_id}/read", headers=holder)
    assert (r.status_code, r.json()["unread_count"]) == (200, 0), r.text
    jid = f"{phone}@s.whatsapp.net"
    expected = [{"remoteJid": jid, "fromMe": False, "id": key} for key in (first, second, third)]
    assert await wait_for(lambda: _receipts(evolution, instance)) == expected
    # Nothing new read: nothing new told. A new message, read: that one.
    await client.post(f"{API}/tickets/{ticket_id}/read", headers=holder)
    fourth = await _writes(evolution, db, conn, phone, "alguém?")
    await client.post(f"{API}/tickets/{ticket_id}/read", headers=holder)

    async def four() -> list[dict[str, Any]] | None:
        found = await _receipts(evolution, instance)
        return found if len(found) > 3 else None

    assert await wait_for(four) == [*expected, {"remoteJid": jid, "fromMe": False, "id": fourth}]


async def test_a_company_that_turned_read_receipts_off_tells_the_client_nothing(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    r = await client.patch(f"{API}/reseller-config", json={"read_receipts": False}, headers=tenant.headers)
    assert (r.status_code, r.json()["read_receipts"]) == (200, False), r.text
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, holder = await held_ticket(client, tenant, evolution, conn, db)
    await _writes(evolution, db, conn, phone, "oi?")
    r = await client.post(f"{API}/tickets/{ticket_id}/read", headers=holder)
    assert (r.status_code, r.json()["unread_count"]) == (200, 0), r.text
    await asyncio.sleep(0.5)
    assert await _receipts(evolution, conn["instance_name"]) == []


async def test_what_the_agent_read_before_taking_the_ticket_is_acknowledged_once_it_holds_it(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """The screen shows a ticket's thread, marking it read, before its Assumir: the holder read
    those messages, but not as the person answering. Once it assumes, they are acknowledged; so are
    those a colleague read before the ticket was transferred to it."""
    tenant = await make_tenant(client, admin_headers, agents=2)
    conn = await make_connection(client, tenant, evolution)
    instance = conn["instance_name"]
    agent, colleague = tenant.agents[0]["headers"], tenant.agents[1]
    phone = unique_phone()
    jid = f"{phone}@s.whatsapp.net"
    first = await _writes(evolution, db, conn, phone, "bom dia")
    second = await _writes(evolution, db, conn, phone, "minha internet caiu")
    ticket_id = str((await db.tickets.find_one({"reseller_id": tenant.id, "client_phone": phone}))["_id"])
    r = await client.post(f"{API}/tickets/{ticket_id}/read", headers=agent)  # opened from the queue
    assert (r.status_code, r.json()["unread_count"]) == (200, 0), r.text
    third = await _writes(evolution, db, conn, phone, "alguém aí?")  # after its look: not read yet
    await asyncio.sleep(0.5)
    assert await _receipts(evolution, instance) == []

    assert (await client.post(f"{API}/tickets/{ticket_id}/assume", headers=agent)).status_code == 200
    read_before = [{"remoteJid": jid, "fromMe": False, "id": key} for key in (first, second)]
    assert await wait_for(lambda: _receipts(evolution, instance)) == read_before
    r = await client.post(f"{API}/tickets/{ticket_id}/read", headers=agent)  # and now the third
    assert r.status_code == 200, r.text

    async def three() -> list[dict[str, Any]] | None:
        found = await _receipts(evolution, instance)
        return found if len(found) > 2 else None

    all_three = [*read_before, {"remoteJid": jid, "fromMe": False, "id": third}]
    assert await wait_for(three) == all_three

    # Another client's ticket, opened from the queue by the colleague, then assumed by the owner (who
    # read nothing) and transferred to the colleague: what the colleague read is acknowledged once
    # it holds it, without another read.
    other_phone = unique_phone()
    looked = await _writes(evolution, db, conn, other_phone, "tem alguém de plantão?")
    other_ticket = str((await db.tickets.find_one({"reseller_id": tenant.id, "client_phone": other_phone}))["_id"])
    r = await client.post(f"{API}/tickets/{other_ticket}/read", headers=colleague["headers"])
    assert (r.status_code, r.json()["unread_count"]) == (200, 0), r.text
    r = await client.post(f"{API}/tickets/{other_ticket}/assume", headers=tenant.headers)  # it read nothing
    assert r.status_code == 200, r.text
    r = await client.post(
        f"{API}/tickets/{other_ticket}/transfer", json={"agent_id": colleague["id"]}, headers=tenant.headers
    )
    assert r.status_code == 200 and r.json()["agent_id"] == colleague["id"], r.text

    async def other() -> list[dict[str, Any]] | None:
        found = await _receipts(evolution, instance)
        return found if len(found) > 3 else None

    assert await wait_for(other) == [
        *all_three,
        {"remoteJid": f"{other_phone}@s.whatsapp.net", "fromMe": False, "id": looked},
    ]
