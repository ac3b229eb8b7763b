"""Races decided by the database: concurrent requests against one ticket, one client, one tenant."""

import asyncio
import itertools
from typing import Any

import httpx
import pytest

from tests.factories import API, Tenant, get_ticket, make_client, make_tenant, make_ticket, ticket_events


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=3)


async def _race_assume(client: httpx.AsyncClient, tenant: Tenant, n: int, db: Any) -> None:
    ticket = await make_ticket(client, tenant)
    agents = [tenant.agents[i % len(tenant.agents)] for i in range(n)]
    results = await asyncio.gather(
        *(client.post(f"{API}/tickets/{ticket['id']}/assume", headers=a["headers"]) for a in agents)
    )
    codes = [r.status_code for r in results]
    assert codes.count(200) == 1 and codes.count(409) == n - 1, codes
    winner = next(r.json() for r in results if r.status_code == 200)
    # Every loser is told the ticket is taken; the ticket itself (phone, last message, holder)
    # only when the loser may still see it, which another agent's ticket it may not.
    for r, a in zip(results, agents, strict=True):
        if r.status_code == 409:
            detail = r.json()["detail"]
            assert detail["status"] == "atendendo", r.text
            if a["id"] == winner["agent_id"]:
                assert detail["ticket"]["agent_id"] == winner["agent_id"], r.text
            else:
                assert "ticket" not in detail, r.text
    stored = await get_ticket(client, tenant.headers, ticket["id"])
    assert (stored["status"], stored["agent_id"], stored["version"]) == ("atendendo", winner["agent_id"], 2)
    events = await ticket_events(client, tenant.headers, ticket["id"])
    assert [e["type"] for e in events] == ["created", "assumed"]
    assert events[1]["actor_id"] == winner["agent_id"]
    assert await db.ticket_events.count_documents({"ticket_id": ticket["id"], "type": "assumed"}) == 1


async def test_two_concurrent_assumes_have_exactly_one_winner(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    await _race_assume(client, tenant, 2, db)


async def test_fifty_concurrent_assumes_have_exactly_one_winner(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    await _race_assume(client, tenant, 50, db)


async def test_concurrent_finalizes_append_one_finalized_event(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    ticket = await make_ticket(client, tenant)
    heads = [tenant.headers] + [a["headers"] for a in tenant.agents]
    results = await asyncio.gather(*(client.post(f"{API}/tickets/{ticket['id']}/finalize", headers=h) for h in heads))
    codes = [r.status_code for r in results]
    assert codes.count(200) == 1 and codes.count(409) == len(heads) - 1, codes
    assert await db.ticket_events.count_documents({"ticket_id": ticket["id"], "type": "finalized"}) == 1


async def test_concurrent_assume_and_finalize_leave_a_consistent_log(client: httpx.AsyncClient, tenant: Tenant) -> None:
    ticket = await make_ticket(client, tenant)
    tid = ticket["id"]
    results = await asyncio.gather(
        client.post(f"{API}/tickets/{tid}/assume", headers=tenant.agents[0]["headers"]),
        client.post(f"{API}/tickets/{tid}/finalize", headers=tenant.headers),
        client.post(f"{API}/tickets/{tid}/assume", headers=tenant.agents[1]["headers"]),
    )
    assert all(r.status_code in (200, 409) for r in results), [r.text for r in results]
    events = await ticket_events(client, tenant.headers, tid)
    assert [e["version"] for e in events] == list(range(1, len(events) + 1))
    assert len(events) == 1 + sum(r.status_code == 200 for r in results)
    # The log is a valid walk through the state machine, and the ticket is where it ends.
    for prev, nxt in itertools.pairwise(events):
        assert nxt["from_status"] == prev["to_status"]
    assert (await get_ticket(client, tenant.headers, tid))["status"] == events[-1]["to_status"]
    assert [e["type"] for e in events].count("assumed") <= 1


async def test_concurrent_creates_for_different_clients_get_distinct_numbers(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    fresh = await make_tenant(client, admin_headers, agents=0)
    customers = [await make_client(client, fresh) for _ in range(20)]
    dept = fresh.departments[0]["id"]
    results = await asyncio.gather(
        *(
            client.post(
                f"{API}/tickets",
                json={"client_id": c["id"], "department_id": dept, "message": "oi"},
                headers=fresh.headers,
            )
            for c in customers
        )
    )
    assert [r.status_code for r in results] == [201] * 20, [r.text for r in results if r.status_code != 201]
    numbers = [r.json()["number"] for r in results]
    assert len(set(numbers)) == 20
    assert len({r.json()["id"] for r in results}) == 20


async def test_two_concurrent_creates_for_one_client_open_one_ticket(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    # Repeated: the interleaving that once gave two 201s does not come every time.
    for _ in range(5):
        customer = await make_client(client, tenant)
        body = {"client_id": customer["id"], "department_id": tenant.departments[0]["id"], "message": "primeira"}
        results = await asyncio.gather(
            *(client.post(f"{API}/tickets", json=body, headers=tenant.headers) for _ in "ab")
        )
        codes = sorted(r.status_code for r in results)
        assert codes == [201, 409], [r.text for r in results]
        created = next(r.json() for r in results if r.status_code == 201)
        refused = next(r.json() for r in results if r.status_code == 409)
        assert refused["detail"]["ticket_id"] == created["id"]
        assert await db.tickets.count_documents({"client_id": customer["id"]}) == 1
        # The refused request wrote no message: the thread has the one first message.
        assert await db.messages.count_documents({"ticket_id": created["id"]}) == 1
        events = await ticket_events(client, tenant.headers, created["id"])
        assert [e["type"] for e in events] == ["created"]


async def test_concurrent_first_tickets_of_new_tenants_all_succeed(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    """The per-tenant number counter does not exist before a tenant's first ticket: concurrent
    first tickets must not trip over creating it (this once answered 500)."""
    for _ in range(3):
        fresh = await make_tenant(client, admin_headers, agents=0)
        customers = [await make_client(client, fresh) for _ in range(4)]
        dept = fresh.departments[0]["id"]
        results = await asyncio.gather(
            *(
                client.post(
                    f"{API}/tickets",
                    json={"client_id": c["id"], "department_id": dept, "message": "oi"},
                    headers=fresh.headers,
                )
                for c in customers
            )
        )
        assert [r.status_code for r in results] == [201] * 4, [r.text for r in results]
        assert len({r.json()["number"] for r in results}) == 4
