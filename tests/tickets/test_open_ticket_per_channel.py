"""A client has at most one open ticket per channel (the API, and each WhatsApp number), whatever
is finalized on its other channels and however creates, finalizes and messages interleave."""

import asyncio
import random
from collections import Counter
from typing import Any

import httpx
import pytest

from backend.core.clock import as_utc
from backend.core.ids import new_id
from backend.messages.models import Message
from backend.tickets import intake
from backend.tickets import service as tickets
from backend.tickets.models import Ticket
from backend.tickets.states import is_open
from backend.users import repository as users
from tests.factories import API, Tenant, make_client, make_tenant, open_ticket


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


async def _say(db: Any, tenant: Tenant, client_id: str, channel: str, body: str) -> tuple[Ticket, Message]:
    fresh = await users.get_internal(db, client_id)  # loaded per message, as ingestion does
    assert fresh is not None
    ticket, message, _ = await intake.receive_client_message(
        db,
        reseller_id=tenant.id,
        client=fresh,
        department_id=tenant.departments[0]["id"],
        channel=channel,
        body=body,
        message_id=new_id(),
    )
    return ticket, message


async def _finalize(client: httpx.AsyncClient, tenant: Tenant, ticket_id: str) -> httpx.Response:
    return await client.post(f"{API}/tickets/{ticket_id}/finalize", headers=tenant.headers)


async def _open_per_channel(db: Any, client_ids: list[str]) -> Counter[tuple[str, str]]:
    """Open tickets per (client, channel), as the event log says (load folds it)."""
    found: Counter[tuple[str, str]] = Counter()
    for doc in await db.tickets.find({"client_id": {"$in": client_ids}}).to_list(None):
        ticket = await tickets.load(db, doc["_id"])
        assert ticket is not None
        if is_open(ticket.status):
            found[(ticket.client_id, ticket.channel)] += 1
    return found


async def test_finalizing_an_api_ticket_does_not_open_a_second_whatsapp_ticket(
    client: httpx.AsyncClient, db: Any, tenant: Tenant
) -> None:
    customer = await make_client(client, tenant)
    number_1, number_2 = new_id(), new_id()
    whatsapp, _ = await _say(db, tenant, customer["id"], number_1, "oi pelo WhatsApp")
    api = await open_ticket(client, tenant.headers, client_id=customer["id"], department_id=tenant.departments[0]["id"])
    assert (await _finalize(client, tenant, api["id"])).status_code == 200

    again, _ = await _say(db, tenant, customer["id"], number_1, "continuo aqui")
    assert again.id == whatsapp.id

    # The same for a ticket on the company's second WhatsApp number.
    second, _ = await _say(db, tenant, customer["id"], number_2, "oi pelo outro número")
    assert (await _finalize(client, tenant, second.id)).status_code == 200
    again, _ = await _say(db, tenant, customer["id"], number_1, "e agora?")
    assert again.id == whatsapp.id
    # ... while that number's next message opens its next ticket, and the API channel too.
    after, _ = await _say(db, tenant, customer["id"], number_2, "voltei")
    assert after.id != second.id and after.status == "espera"
    reopened = await open_ticket(
        client, tenant.headers, client_id=customer["id"], department_id=tenant.departments[0]["id"]
    )
    assert reopened["id"] != api["id"]
    assert await _open_per_channel(db, [customer["id"]]) == Counter(
        {(customer["id"], number_1): 1, (customer["id"], number_2): 1, (customer["id"], intake.API_CHANNEL): 1}
    )


async def test_a_random_mix_of_channels_keeps_one_open_ticket_per_client_and_channel(
    client: httpx.AsyncClient, db: Any, tenant: Tenant
) -> None:
    rng = random.Random(2)
    client_ids = [(await make_client(client, tenant))["id"] for _ in range(4)]
    channels = [new_id(), new_id(), intake.API_CHANNEL]  # two WhatsApp numbers and the API
    dept = tenant.departments[0]["id"]
    sent: dict[str, tuple[str, str]] = {}  # message id -> (client, channel)
    codes: Counter[str] = Counter()

    async def message(client_id: str, channel: str, body: str) -> None:
        if channel == intake.API_CHANNEL and rng.random() < 0.3:
            r = await client.post(
                f"{API}/tickets",
                json={"client_id": client_id, "department_id": dept, "message": body},
                headers=tenant.headers,
            )
            assert r.status_code in (201, 409), r.text  # 409: the client's API ticket is open
            codes[f"create {r.status_code}"] += 1
            if r.status_code == 201:
                first = await db.messages.find_one({"ticket_id": r.json()["id"]})
                sent[first["_id"]] = (client_id, channel)
            return
        _, stored = await _say(db, tenant, client_id, channel, body)
        sent[stored.id] = (client_id, channel)
        codes["message"] += 1

    async def finalize(client_id: str) -> None:
        mine = await db.tickets.find({"client_id": client_id}).to_list(None)
        candidates = [
            t["_id"] for t in mine if is_open(getattr(await tickets.load(db, t["_id"]), "status", "finalizado"))
        ]
        if not candidates:
            return
        r = await _finalize(client, tenant, rng.choice(candidates))
        assert r.status_code in (200, 409), r.text  # 409: finalized concurrently
        codes[f"finalize {r.status_code}"] += 1

    for batch in range(30):
        steps = []
        for i in range(6):
            client_id = rng.choice(client_ids)
            if rng.random() < 0.35:
                steps.append(finalize(client_id))
            else:
                steps.append(message(client_id, rng.choice(channels), f"{batch}.{i}"))
        await asyncio.gather(*steps)
        counts = await _open_per_channel(db, client_ids)
        assert all(n == 1 for n in counts.values()), (batch, counts)

    # Every message once, under a ticket of its own client and channel, never in a finalized
    # ticket stamped after it was finalized.
    stored = await db.messages.find({"_id": {"$in": list(sent)}}).to_list(None)
    assert len(stored) == len(sent)
    for m in stored:
        ticket = await tickets.load(db, m["ticket_id"])
        assert ticket is not None
        assert (ticket.client_id, ticket.channel) == sent[m["_id"]]
        if not is_open(ticket.status):
            assert as_utc(m["created_at"]) <= as_utc(ticket.finalized_at)
    assert codes["message"] and codes["finalize 200"] and codes["create 201"] + codes["create 409"], codes


async def test_a_client_from_before_per_channel_hints_keeps_its_open_ticket(
    client: httpx.AsyncClient, db: Any, tenant: Tenant
) -> None:
    """Under the old per-client hint, finalizing an API ticket at slot 0 left `ticket_slot: 1`,
    and the client's first WhatsApp message then claimed slot 1 of that number, leaving its
    slot 0 free. The per-channel walk must find that ticket, not claim the free slot 0."""
    customer = await make_client(client, tenant)
    number = new_id()
    doc = await users.get_internal(db, customer["id"])
    assert doc is not None
    legacy, created = await tickets.open_for_client(
        db,
        reseller_id=tenant.id,
        client=doc.model_copy(update={"ticket_slots": {number: 1}}),  # where the old per-client hint started it
        department_id=tenant.departments[0]["id"],
        channel=number,
        actor_id=None,
        actor_role=None,
    )
    assert created and legacy.open_slot == 1
    await db.users.update_one({"_id": customer["id"]}, {"$set": {"ticket_slot": 1}})  # as stored then

    ticket, _ = await _say(db, tenant, customer["id"], number, "oi de novo")
    assert ticket.id == legacy.id
    assert await _open_per_channel(db, [customer["id"]]) == Counter({(customer["id"], number): 1})
    # Found once, then kept as that number's hint.
    stored = await users.get_internal(db, customer["id"])
    assert stored is not None and stored.ticket_slots[number] == 1
    # After its finalize the next message opens the next slot's ticket.
    assert (await _finalize(client, tenant, legacy.id)).status_code == 200
    after, _ = await _say(db, tenant, customer["id"], number, "voltei")
    assert after.id != legacy.id and after.open_slot == 2
