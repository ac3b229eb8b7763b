"""A ticket's thread: chronological, paginated, append-only; only the holding agent replies."""

from typing import Any

import httpx
import pytest

from tests.factories import API, Tenant, assume, get_ticket, make_client_ticket, make_tenant, make_ticket
from tests.messages.helpers import walk_thread


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=2)


@pytest.fixture(scope="module")
async def other(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


async def test_holding_agent_replies_and_thread_is_chronological_and_paginated(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    agent = tenant.agents[0]
    ticket = await make_client_ticket(client, tenant, db, message="mensagem 0")
    await assume(client, agent["headers"], ticket["id"])
    for i in range(1, 8):
        r = await client.post(
            f"{API}/tickets/{ticket['id']}/messages", json={"body": f"mensagem {i}"}, headers=agent["headers"]
        )
        assert r.status_code == 201, r.text
        msg = r.json()
        assert (msg["direction"], msg["sender_type"], msg["sender_id"], msg["sender_name"]) == (
            "out",
            "agent",
            agent["id"],
            agent["name"],
        )
        assert msg["ticket_id"] == ticket["id"] and msg["status"] == "pending"  # queued for WhatsApp
    thread, sizes = await walk_thread(client, agent["headers"], f"{API}/tickets/{ticket['id']}/messages", limit=3)
    assert sizes == [3, 3, 2]  # the newest page first, back to the first message
    assert [m["body"] for m in thread] == [f"mensagem {i}" for i in range(8)]
    r = await client.get(f"{API}/tickets/{ticket['id']}/messages", params={"limit": 3}, headers=tenant.headers)
    assert [m["body"] for m in r.json()["items"]] == ["mensagem 5", "mensagem 6", "mensagem 7"]


async def test_reply_updates_preview_and_last_message_at(client: httpx.AsyncClient, tenant: Tenant, db: Any) -> None:
    agent = tenant.agents[0]
    ticket = await make_client_ticket(client, tenant, db, message="pergunta do cliente")
    assert ticket["last_message_preview"] == "pergunta do cliente"
    assert ticket["last_message_direction"] == "in"
    await assume(client, agent["headers"], ticket["id"])
    long_body = "r" * 500
    r = await client.post(f"{API}/tickets/{ticket['id']}/messages", json={"body": long_body}, headers=agent["headers"])
    assert r.status_code == 201
    after = await get_ticket(client, tenant.headers, ticket["id"])
    assert after["last_message_at"] == r.json()["created_at"]
    assert after["last_message_at"] >= ticket["last_message_at"]
    assert after["last_message_direction"] == "out"
    assert long_body.startswith(after["last_message_preview"]) and 0 < len(after["last_message_preview"]) < 500


async def test_only_the_holding_agent_can_post(
    client: httpx.AsyncClient, tenant: Tenant, other: Tenant, db: Any
) -> None:
    holder, peer = tenant.agents
    espera = await make_client_ticket(client, tenant, db)
    held = await make_client_ticket(client, tenant, db)
    await assume(client, holder["headers"], held["id"])
    closed = await make_client_ticket(client, tenant, db)
    await assume(client, holder["headers"], closed["id"])
    assert (await client.post(f"{API}/tickets/{closed['id']}/finalize", headers=holder["headers"])).status_code == 200
    before = await db.messages.count_documents({})
    cases = [
        (espera, peer["headers"], 409),  # visible in the queue, but nobody holds it: assume first
        (espera, holder["headers"], 409),
        (held, peer["headers"], 404),  # held by someone else: the peer cannot see it at all
        (closed, holder["headers"], 409),  # finalized: the thread is closed, even for its last holder
        (held, tenant.headers, 409),  # the owner answers only what it assumed itself
        (held, other.agents[0]["headers"], 404),  # another tenant
        (held, other.headers, 404),  # another tenant's owner: the ticket does not exist for it
    ]
    for ticket, headers, status in cases:
        r = await client.post(f"{API}/tickets/{ticket['id']}/messages", json={"body": "olá"}, headers=headers)
        assert r.status_code == status, (ticket["status"], status, r.text)
    assert await db.messages.count_documents({}) == before


async def test_messages_are_append_only_no_delete_or_edit_route(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    agent = tenant.agents[0]
    ticket = await make_client_ticket(client, tenant, db)
    await assume(client, agent["headers"], ticket["id"])
    r = await client.post(f"{API}/tickets/{ticket['id']}/messages", json={"body": "fica"}, headers=agent["headers"])
    msg_id = r.json()["id"]
    for method in ("DELETE", "PUT", "PATCH"):
        r = await client.request(method, f"{API}/tickets/{ticket['id']}/messages", headers=agent["headers"])
        assert r.status_code == 405, (method, r.status_code)
        r = await client.request(method, f"{API}/tickets/{ticket['id']}/messages/{msg_id}", headers=agent["headers"])
        assert r.status_code in (404, 405), (method, r.status_code)
    items, _ = await walk_thread(client, tenant.headers, f"{API}/tickets/{ticket['id']}/messages")
    assert [m["body"] for m in items][-1] == "fica"


async def test_message_body_must_be_a_non_empty_string_of_bounded_size(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    agent = tenant.agents[0]
    ticket = await make_ticket(client, tenant)
    await assume(client, agent["headers"], ticket["id"])
    before = await db.messages.count_documents({})
    for body in ({"body": ""}, {"body": "   "}, {"body": "x" * 4097}, {"body": 5}, {"body": None}, {}, {"text": "a"}):
        r = await client.post(f"{API}/tickets/{ticket['id']}/messages", json=body, headers=agent["headers"])
        assert r.status_code == 422, (body, r.text)
    assert await db.messages.count_documents({}) == before
