"""The ticket state machine through the API: every allowed move, every forbidden one, and the
event each move appends."""

from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.factories import (
    API,
    Tenant,
    assume,
    get_ticket,
    make_agent,
    make_client,
    make_department,
    make_tenant,
    make_ticket,
    open_ticket,
    ticket_events,
)


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    t = await make_tenant(client, admin_headers, departments=2, agents=2)
    # A third agent in the second department only.
    t.agents.append(await make_agent(client, t, [t.departments[1]["id"]]))
    return t


@pytest.fixture(scope="module")
async def other(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, departments=1, agents=1)


async def _snapshot(client: httpx.AsyncClient, tenant: Tenant, ticket_id: str) -> tuple[dict[str, Any], int]:
    return await get_ticket(client, tenant.headers, ticket_id), len(
        await ticket_events(client, tenant.headers, ticket_id)
    )


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


async def test_create_opens_ticket_in_espera_with_first_message_and_created_event(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    customer = await make_client(client, tenant)
    dept = tenant.departments[0]["id"]
    ticket = await open_ticket(client, tenant.headers, client_id=customer["id"], department_id=dept, message="Oi!")
    assert ticket["status"] == "espera"
    assert ticket["agent_id"] is None
    assert ticket["client_id"] == customer["id"] and ticket["department_id"] == dept
    assert ticket["number"] >= 1
    for key in ("id", "number", "status", "client_id", "department_id", "agent_id", "last_message_at", "created_at"):
        assert key in ticket
    assert ticket["last_message_preview"] == "Oi!"

    r = await client.get(f"{API}/tickets/{ticket['id']}/messages", headers=tenant.headers)
    assert r.status_code == 200
    msgs = r.json()["items"]
    # Staff typed it and nothing can reach the client: the creator's internal note, never the
    # client's words (issue 16 item 5).
    assert [(m["body"], m["direction"], m["sender_type"], m["sender_id"]) for m in msgs] == [
        ("Oi!", "note", "reseller", tenant.owner_id)
    ]

    events = await ticket_events(client, tenant.headers, ticket["id"])
    assert len(events) == 1
    created = events[0]
    assert created["type"] == "created" and created["from_status"] is None and created["to_status"] == "espera"
    assert created["actor_id"] == tenant.owner_id and created["actor_role"] == "reseller"
    assert created["version"] == 1


async def test_agent_can_open_a_ticket_too(client: httpx.AsyncClient, tenant: Tenant) -> None:
    customer = await make_client(client, tenant)
    agent = tenant.agents[0]
    ticket = await open_ticket(
        client, agent["headers"], client_id=customer["id"], department_id=tenant.departments[0]["id"]
    )
    events = await ticket_events(client, tenant.headers, ticket["id"])
    assert (events[0]["actor_id"], events[0]["actor_role"]) == (agent["id"], "agent")


async def test_assume_moves_espera_to_atendendo_held_by_the_agent(client: httpx.AsyncClient, tenant: Tenant) -> None:
    ticket = await make_ticket(client, tenant)
    agent = tenant.agents[0]
    assumed = await assume(client, agent["headers"], ticket["id"])
    assert assumed["status"] == "atendendo"
    assert assumed["agent_id"] == agent["id"] and assumed["agent_name"] == agent["name"]
    stored = await get_ticket(client, tenant.headers, ticket["id"])
    assert (stored["status"], stored["agent_id"]) == ("atendendo", agent["id"])


async def test_each_transition_appends_exactly_one_event_with_actor_time_from_and_to(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    a0, a1 = tenant.agents[0], tenant.agents[1]
    dept0, dept1 = tenant.departments[0]["id"], tenant.departments[1]["id"]
    ticket = await make_ticket(client, tenant)
    tid = ticket["id"]
    steps: list[tuple[dict[str, str], str, dict[str, Any] | None, str, str, str, str]] = [
        (a0["headers"], "assume", None, a0["id"], "assumed", "espera", "atendendo"),
        (a0["headers"], "transfer", {"agent_id": a1["id"]}, a0["id"], "transferred", "atendendo", "atendendo"),
        (a1["headers"], "transfer", {"department_id": dept1}, a1["id"], "transferred", "atendendo", "espera"),
        (tenant.agents[2]["headers"], "assume", None, tenant.agents[2]["id"], "assumed", "espera", "atendendo"),
        (tenant.headers, "finalize", None, tenant.owner_id, "finalized", "atendendo", "finalizado"),
    ]
    previous_at = _parse(ticket["created_at"])
    for n, (headers, action, body, actor_id, type_, from_, to) in enumerate(steps, start=2):
        before = await ticket_events(client, tenant.headers, tid)
        r = await client.post(f"{API}/tickets/{tid}/{action}", json=body, headers=headers)
        assert r.status_code == 200, (action, r.text)
        after = await ticket_events(client, tenant.headers, tid)
        assert len(after) == len(before) + 1 == n
        event = after[-1]
        assert event["version"] == n
        assert (event["type"], event["from_status"], event["to_status"]) == (type_, from_, to)
        assert event["actor_id"] == actor_id
        at = _parse(event["at"])
        assert at >= previous_at and at.tzinfo is not None
        previous_at = at
        assert r.json()["version"] == n and r.json()["status"] == to
    final = await get_ticket(client, tenant.headers, tid)
    assert final["status"] == "finalizado" and final["finalized_at"] is not None
    assert final["department_id"] == dept1 != dept0


async def test_transfer_to_agent_keeps_atendendo_and_changes_the_holder(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    a0, a1 = tenant.agents[0], tenant.agents[1]
    ticket = await make_ticket(client, tenant)
    await assume(client, a0["headers"], ticket["id"])
    r = await client.post(f"{API}/tickets/{ticket['id']}/transfer", json={"agent_id": a1["id"]}, headers=a0["headers"])
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["agent_id"], r.json()["agent_name"]) == ("atendendo", a1["id"], a1["name"])
    # The previous holder lost sight of it; the new holder sees it.
    assert (await client.get(f"{API}/tickets/{ticket['id']}", headers=a0["headers"])).status_code == 404
    assert (await client.get(f"{API}/tickets/{ticket['id']}", headers=a1["headers"])).status_code == 200


async def test_reseller_can_transfer_a_held_ticket_to_another_agent(client: httpx.AsyncClient, tenant: Tenant) -> None:
    a0, a1 = tenant.agents[0], tenant.agents[1]
    ticket = await make_ticket(client, tenant)
    await assume(client, a0["headers"], ticket["id"])
    r = await client.post(f"{API}/tickets/{ticket['id']}/transfer", json={"agent_id": a1["id"]}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert r.json()["agent_id"] == a1["id"]


async def test_transfer_to_department_returns_ticket_to_espera_without_agent(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    a0 = tenant.agents[0]
    dept1 = tenant.departments[1]["id"]
    ticket = await make_ticket(client, tenant)
    await assume(client, a0["headers"], ticket["id"])
    r = await client.post(
        f"{API}/tickets/{ticket['id']}/transfer", json={"department_id": dept1}, headers=a0["headers"]
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["agent_id"], body["agent_name"], body["department_id"]) == (
        "espera",
        None,
        None,
        dept1,
    )
    # Now in the second department's queue: the agent of that department only can assume it.
    assumed = await assume(client, tenant.agents[2]["headers"], ticket["id"])
    assert assumed["agent_id"] == tenant.agents[2]["id"]


async def test_finalize_from_espera(client: httpx.AsyncClient, tenant: Tenant) -> None:
    ticket = await make_ticket(client, tenant)
    r = await client.post(f"{API}/tickets/{ticket['id']}/finalize", headers=tenant.agents[0]["headers"])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "finalizado" and r.json()["finalized_at"] is not None
    events = await ticket_events(client, tenant.headers, ticket["id"])
    assert [(e["type"], e["from_status"], e["to_status"]) for e in events][-1] == ("finalized", "espera", "finalizado")


async def test_finalize_from_atendendo_by_the_holder(client: httpx.AsyncClient, tenant: Tenant) -> None:
    a0 = tenant.agents[0]
    ticket = await make_ticket(client, tenant)
    await assume(client, a0["headers"], ticket["id"])
    r = await client.post(f"{API}/tickets/{ticket['id']}/finalize", headers=a0["headers"])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "finalizado"
    # The agent that finalized it still sees it (its history).
    assert (await client.get(f"{API}/tickets/{ticket['id']}", headers=a0["headers"])).status_code == 200


async def _ticket_in(client: httpx.AsyncClient, tenant: Tenant, state: str) -> dict[str, Any]:
    ticket = await make_ticket(client, tenant)
    if state in ("atendendo", "finalizado"):
        await assume(client, tenant.agents[0]["headers"], ticket["id"])
    if state == "finalizado":
        r = await client.post(f"{API}/tickets/{ticket['id']}/finalize", headers=tenant.agents[0]["headers"])
        assert r.status_code == 200
    return ticket


# (state, who acts, action, body): every move the state machine forbids for that state or holder.
# who: "holder" = agents[0] (holds atendendo tickets), "peer" = agents[1] (same departments), "reseller".
FORBIDDEN: list[tuple[str, str, str, str | None]] = [
    ("espera", "peer", "transfer", "agent"),
    ("espera", "reseller", "transfer", "agent"),
    ("atendendo", "holder", "assume", None),
    ("atendendo", "peer", "assume", None),
    ("atendendo", "peer", "transfer", "agent"),
    ("atendendo", "peer", "transfer", "department"),
    ("atendendo", "peer", "finalize", None),
    ("finalizado", "holder", "assume", None),
    ("finalizado", "peer", "assume", None),
    ("finalizado", "holder", "transfer", "agent"),
    ("finalizado", "holder", "transfer", "department"),
    ("finalizado", "holder", "finalize", None),
    ("finalizado", "reseller", "transfer", "agent"),
    ("finalizado", "reseller", "transfer", "department"),
    ("finalizado", "reseller", "finalize", None),
]


@pytest.mark.parametrize(("state", "who", "action", "target"), FORBIDDEN)
async def test_forbidden_transition_is_409_and_changes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, state: str, who: str, action: str, target: str | None
) -> None:
    ticket = await _ticket_in(client, tenant, state)
    headers = {
        "holder": tenant.agents[0]["headers"],
        "peer": tenant.agents[1]["headers"],
        "reseller": tenant.headers,
    }[who]
    body = None
    if target == "agent":
        body = {"agent_id": tenant.agents[2]["id"]}
    elif target == "department":
        body = {"department_id": tenant.departments[1]["id"]}
    before = await _snapshot(client, tenant, ticket["id"])
    r = await client.post(f"{API}/tickets/{ticket['id']}/{action}", json=body, headers=headers)
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert detail["status"] == state  # the 409 says where the ticket is
    # ...and shows the ticket itself only to whoever may see it (a peer no longer sees a ticket
    # another agent holds or finalized).
    assert ("ticket" in detail) == (who != "peer" or state == "espera"), detail
    if "ticket" in detail:
        assert detail["ticket"]["status"] == state
    assert await _snapshot(client, tenant, ticket["id"]) == before


# Roles that may never make a move: 403, whatever the state.
ROLE_FORBIDDEN = [
    ("admin", "assume", None),
    ("admin", "finalize", None),
    ("admin", "transfer", "agent"),
]


@pytest.mark.parametrize(("role", "action", "target"), ROLE_FORBIDDEN)
async def test_role_that_cannot_move_tickets_gets_403_and_changes_nothing(
    client: httpx.AsyncClient,
    tenant: Tenant,
    admin_headers: dict[str, str],
    role: str,
    action: str,
    target: str | None,
) -> None:
    ticket = await make_ticket(client, tenant)
    headers = admin_headers if role == "admin" else tenant.headers
    body = {"agent_id": tenant.agents[0]["id"]} if target == "agent" else None
    before = await _snapshot(client, tenant, ticket["id"])
    r = await client.post(f"{API}/tickets/{ticket['id']}/{action}", json=body, headers=headers)
    assert r.status_code == 403, r.text
    assert await _snapshot(client, tenant, ticket["id"]) == before


async def test_transfer_to_the_agent_already_holding_is_409(client: httpx.AsyncClient, tenant: Tenant) -> None:
    a0 = tenant.agents[0]
    ticket = await make_ticket(client, tenant)
    await assume(client, a0["headers"], ticket["id"])
    before = await _snapshot(client, tenant, ticket["id"])
    r = await client.post(f"{API}/tickets/{ticket['id']}/transfer", json={"agent_id": a0["id"]}, headers=a0["headers"])
    assert r.status_code == 409
    assert await _snapshot(client, tenant, ticket["id"]) == before


async def test_transfer_to_unknown_foreign_or_inactive_target_is_422_and_changes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, other: Tenant
) -> None:
    a0 = tenant.agents[0]
    ticket = await make_ticket(client, tenant)
    await assume(client, a0["headers"], ticket["id"])
    inactive_agent = await make_agent(client, tenant, [tenant.departments[0]["id"]])
    r = await client.patch(f"{API}/users/{inactive_agent['id']}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 200
    inactive_dept = await make_department(client, tenant)
    r = await client.patch(f"{API}/departments/{inactive_dept['id']}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 200
    before = await _snapshot(client, tenant, ticket["id"])
    for body in (
        {"agent_id": other.agents[0]["id"]},
        {"agent_id": "0" * 24},
        {"agent_id": inactive_agent["id"]},
        {"agent_id": tenant.owner_id},  # a reseller is not an agent
        {"department_id": other.departments[0]["id"]},
        {"department_id": "f" * 24},
        {"department_id": inactive_dept["id"]},
    ):
        r = await client.post(f"{API}/tickets/{ticket['id']}/transfer", json=body, headers=a0["headers"])
        assert r.status_code == 422, (body, r.text)
    assert await _snapshot(client, tenant, ticket["id"]) == before


async def test_new_ticket_for_same_client_after_finalize_gets_new_id_and_number(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    customer = await make_client(client, tenant)
    dept = tenant.departments[0]["id"]
    first = await open_ticket(client, tenant.headers, client_id=customer["id"], department_id=dept)
    # While it is open, a second one is refused and names the open ticket.
    r = await client.post(
        f"{API}/tickets",
        json={"client_id": customer["id"], "department_id": dept, "message": "de novo"},
        headers=tenant.headers,
    )
    assert r.status_code == 409
    assert r.json()["detail"]["ticket_id"] == first["id"]
    r = await client.post(f"{API}/tickets/{first['id']}/finalize", headers=tenant.headers)
    assert r.status_code == 200
    second = await open_ticket(client, tenant.headers, client_id=customer["id"], department_id=dept, message="voltei")
    assert second["id"] != first["id"] and second["number"] != first["number"]
    assert second["status"] == "espera"
    assert (await get_ticket(client, tenant.headers, first["id"]))["status"] == "finalizado"
    # Each thread kept its own messages.
    r = await client.get(f"{API}/tickets/{second['id']}/messages", headers=tenant.headers)
    assert [m["body"] for m in r.json()["items"]] == ["voltei"]


async def test_create_refuses_foreign_or_inactive_client_and_department(
    client: httpx.AsyncClient, tenant: Tenant, other: Tenant, db: Any
) -> None:
    from tests.factories import collection_counts

    mine = await make_client(client, tenant)
    theirs = await make_client(client, other)
    inactive = await make_department(client, tenant)
    await client.patch(f"{API}/departments/{inactive['id']}", json={"active": False}, headers=tenant.headers)
    before = await collection_counts(db)
    cases = [
        ({"client_id": theirs["id"], "department_id": tenant.departments[0]["id"]}, 404),
        ({"client_id": mine["id"], "department_id": other.departments[0]["id"]}, 404),
        ({"client_id": "a" * 24, "department_id": tenant.departments[0]["id"]}, 404),
        ({"client_id": mine["id"], "department_id": inactive["id"]}, 422),
    ]
    for body, status in cases:
        r = await client.post(f"{API}/tickets", json={**body, "message": "x"}, headers=tenant.headers)
        assert r.status_code == status, (body, r.text)
    assert await collection_counts(db) == before


async def test_ticket_numbers_are_per_tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    t1 = await make_tenant(client, admin_headers, agents=0)
    t2 = await make_tenant(client, admin_headers, agents=0)
    n1 = [(await make_ticket(client, t1))["number"] for _ in range(2)]
    n2 = [(await make_ticket(client, t2))["number"] for _ in range(2)]
    assert n1 == [1, 2] and n2 == [1, 2]
