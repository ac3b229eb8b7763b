"""The event log is the truth: a change logged but never projected (a crash between the two
writes) is what every read returns, and the events endpoint pages through the history."""

from typing import Any

import httpx
import pytest

from backend.audit.repository import event_id
from backend.core.clock import utcnow
from tests.factories import API, Tenant, assume, get_ticket, make_tenant, make_ticket, ticket_events


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=2)


async def test_event_logged_but_not_projected_is_what_get_returns(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    ticket = await make_ticket(client, tenant)
    agent = tenant.agents[0]
    stored = await db.tickets.find_one({"_id": ticket["id"]})
    assert stored["version"] == 1 and stored["status"] == "espera"
    # A writer logged "assumed" as version 2 and crashed before touching the ticket document.
    now = utcnow()
    state = {
        "status": "atendendo",
        "agent_id": agent["id"],
        "agent_name": agent["name"],
        "department_id": stored["department_id"],
        "finalized_at": None,
        "finalized_by": None,
    }
    await db.ticket_events.insert_one(
        {
            "_id": event_id(ticket["id"], 2),
            "ticket_id": ticket["id"],
            "reseller_id": tenant.id,
            "version": 2,
            "type": "assumed",
            "actor_id": agent["id"],
            "actor_role": "agent",
            "from_status": "espera",
            "to_status": "atendendo",
            "state": state,
            "at": now,
            "data": {"action": "assume"},
        }
    )
    assert (await db.tickets.find_one({"_id": ticket["id"]}))["status"] == "espera"

    healed = await get_ticket(client, tenant.headers, ticket["id"])
    assert (healed["status"], healed["agent_id"], healed["version"]) == ("atendendo", agent["id"], 2)
    # The read rolled the stored projection forward too, so lists and counts agree from now on.
    projected = await db.tickets.find_one({"_id": ticket["id"]})
    assert (projected["status"], projected["agent_id"], projected["version"]) == ("atendendo", agent["id"], 2)
    # And the next move builds on the logged one: another agent cannot assume; the holder finalizes.
    r = await client.post(f"{API}/tickets/{ticket['id']}/assume", headers=tenant.agents[1]["headers"])
    assert r.status_code == 409
    r = await client.post(f"{API}/tickets/{ticket['id']}/finalize", headers=agent["headers"])
    assert r.status_code == 200 and r.json()["version"] == 3
    assert [e["version"] for e in await ticket_events(client, tenant.headers, ticket["id"])] == [1, 2, 3]


async def test_ticket_whose_creation_was_logged_but_not_projected_is_readable(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    """A crash right after event v1: the ticket document is rebuilt from the event."""
    template = await make_ticket(client, tenant)
    created = await db.ticket_events.find_one({"_id": event_id(template["id"], 1)})
    from backend.core.ids import new_id

    tid = new_id()
    doc = {**created["data"]["ticket"], "_id": tid, "number": 900_000}
    await db.ticket_events.insert_one({**created, "_id": event_id(tid, 1), "ticket_id": tid, "data": {"ticket": doc}})
    assert await db.tickets.find_one({"_id": tid}) is None
    got = await get_ticket(client, tenant.headers, tid)
    assert (got["id"], got["number"], got["status"]) == (tid, 900_000, "espera")
    assert await db.tickets.find_one({"_id": tid}) is not None


async def test_events_endpoint_pages_the_history_in_version_order(client: httpx.AsyncClient, tenant: Tenant) -> None:
    a0, a1 = tenant.agents
    ticket = await make_ticket(client, tenant)
    await assume(client, a0["headers"], ticket["id"])
    for holder, target in ((a0, a1), (a1, a0), (a0, a1)):
        r = await client.post(
            f"{API}/tickets/{ticket['id']}/transfer", json={"agent_id": target["id"]}, headers=holder["headers"]
        )
        assert r.status_code == 200
    versions: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        r = await client.get(f"{API}/tickets/{ticket['id']}/events", params=params, headers=tenant.headers)
        assert r.status_code == 200
        versions.extend(e["version"] for e in r.json()["items"])
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    assert versions == [1, 2, 3, 4, 5]
