"""Who sees which tickets: lists, single reads and counts, per role."""

from typing import Any

import httpx
import pytest

from tests.factories import API, Tenant, assume, collect_pages, make_agent, make_tenant, make_ticket


class World:
    """One tenant with two departments and tickets in every state, plus a second tenant."""

    tenant: Tenant
    other: Tenant
    a_both: dict[str, Any]  # agent in both departments
    a_d1: dict[str, Any]  # agent in department 1 only
    a_d2: dict[str, Any]  # agent in department 2 only
    espera_d1: dict[str, Any]
    espera_d2: dict[str, Any]
    held_by_both: dict[str, Any]
    held_by_d1: dict[str, Any]
    finalized_by_d1: dict[str, Any]
    finalized_by_reseller: dict[str, Any]
    foreign: dict[str, Any]


@pytest.fixture(scope="module")
async def world(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> World:
    w = World()
    w.tenant = t = await make_tenant(client, admin_headers, departments=2, agents=0)
    d1, d2 = t.departments[0]["id"], t.departments[1]["id"]
    w.a_both = await make_agent(client, t, [d1, d2])
    w.a_d1 = await make_agent(client, t, [d1])
    w.a_d2 = await make_agent(client, t, [d2])
    w.espera_d1 = await make_ticket(client, t, department_id=d1)
    w.espera_d2 = await make_ticket(client, t, department_id=d2)
    w.held_by_both = await make_ticket(client, t, department_id=d1)
    await assume(client, w.a_both["headers"], w.held_by_both["id"])
    w.held_by_d1 = await make_ticket(client, t, department_id=d1)
    await assume(client, w.a_d1["headers"], w.held_by_d1["id"])
    w.finalized_by_d1 = await make_ticket(client, t, department_id=d1)
    await assume(client, w.a_d1["headers"], w.finalized_by_d1["id"])
    r = await client.post(f"{API}/tickets/{w.finalized_by_d1['id']}/finalize", headers=w.a_d1["headers"])
    assert r.status_code == 200
    w.finalized_by_reseller = await make_ticket(client, t, department_id=d2)
    r = await client.post(f"{API}/tickets/{w.finalized_by_reseller['id']}/finalize", headers=t.headers)
    assert r.status_code == 200
    w.other = await make_tenant(client, admin_headers, departments=1, agents=1)
    w.foreign = await make_ticket(client, w.other)
    return w


def _ids(items: list[dict[str, Any]]) -> set[str]:
    return {i["id"] for i in items}


async def _visible(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> set[str]:
    return _ids(await collect_pages(client, headers, f"{API}/tickets", **params))


async def test_agent_sees_espera_of_its_departments_and_what_it_holds_or_finalized(
    client: httpx.AsyncClient, world: World
) -> None:
    w = world
    assert await _visible(client, w.a_d1["headers"]) == {
        w.espera_d1["id"],
        w.held_by_d1["id"],
        w.finalized_by_d1["id"],
    }
    assert await _visible(client, w.a_d2["headers"]) == {w.espera_d2["id"]}
    assert await _visible(client, w.a_both["headers"]) == {
        w.espera_d1["id"],
        w.espera_d2["id"],
        w.held_by_both["id"],
    }


async def test_agent_cannot_read_tickets_held_by_others_or_outside_its_departments(
    client: httpx.AsyncClient, world: World
) -> None:
    w = world
    for headers, hidden in (
        (w.a_d1["headers"], [w.held_by_both, w.espera_d2, w.finalized_by_reseller, w.foreign]),
        (w.a_d2["headers"], [w.espera_d1, w.held_by_d1, w.held_by_both, w.finalized_by_d1, w.foreign]),
    ):
        for ticket in hidden:
            for path in ("", "/messages", "/events"):
                r = await client.get(f"{API}/tickets/{ticket['id']}{path}", headers=headers)
                assert r.status_code == 404, (ticket["status"], path, r.text)


async def test_reseller_sees_all_of_its_tickets_and_none_of_another_tenant(
    client: httpx.AsyncClient, world: World
) -> None:
    w = world
    mine = {
        w.espera_d1["id"],
        w.espera_d2["id"],
        w.held_by_both["id"],
        w.held_by_d1["id"],
        w.finalized_by_d1["id"],
        w.finalized_by_reseller["id"],
    }
    assert await _visible(client, w.tenant.headers) == mine
    assert await _visible(client, w.other.headers) == {w.foreign["id"]}


async def test_admin_sees_every_tenant(client: httpx.AsyncClient, world: World, admin_headers: dict[str, str]) -> None:
    seen = await _visible(client, admin_headers)
    assert world.foreign["id"] in seen and world.espera_d1["id"] in seen
    r = await client.get(f"{API}/tickets/{world.foreign['id']}", headers=admin_headers)
    assert r.status_code == 200


async def test_status_and_department_filters(client: httpx.AsyncClient, world: World) -> None:
    w = world
    d1, d2 = w.tenant.departments[0]["id"], w.tenant.departments[1]["id"]
    h = w.tenant.headers
    assert await _visible(client, h, status="espera") == {w.espera_d1["id"], w.espera_d2["id"]}
    assert await _visible(client, h, status="atendendo") == {w.held_by_both["id"], w.held_by_d1["id"]}
    assert await _visible(client, h, status="finalizado") == {w.finalized_by_d1["id"], w.finalized_by_reseller["id"]}
    assert await _visible(client, h, department_id=d2) == {w.espera_d2["id"], w.finalized_by_reseller["id"]}
    assert await _visible(client, h, status="espera", department_id=d1) == {w.espera_d1["id"]}
    # Filters narrow what the role sees; they never widen it.
    assert await _visible(client, w.a_d1["headers"], department_id=d2) == set()
    assert await _visible(client, w.other.headers, department_id=d1) == set()
    for bad in ({"status": "aberto"}, {"department_id": "nope"}, {"limit": 0}, {"limit": 10_000}, {"limit": "x"}):
        r = await client.get(f"{API}/tickets", params=bad, headers=h)
        assert r.status_code == 422, bad


async def test_counts_per_role(client: httpx.AsyncClient, world: World, admin_headers: dict[str, str]) -> None:
    w = world

    async def counts(headers: dict[str, str], **params: Any) -> dict[str, int]:
        r = await client.get(f"{API}/tickets/counts", params=params, headers=headers)
        assert r.status_code == 200, r.text
        body: dict[str, int] = r.json()
        return body

    assert await counts(w.tenant.headers) == {"espera": 2, "atendendo": 2, "finalizado": 2}
    assert await counts(w.tenant.headers, department_id=w.tenant.departments[1]["id"]) == {
        "espera": 1,
        "atendendo": 0,
        "finalizado": 1,
    }
    assert await counts(w.a_d1["headers"]) == {"espera": 1, "atendendo": 1, "finalizado": 1}
    assert await counts(w.a_d2["headers"]) == {"espera": 1, "atendendo": 0, "finalizado": 0}
    assert await counts(w.a_both["headers"]) == {"espera": 2, "atendendo": 1, "finalizado": 0}
    assert await counts(w.other.headers) == {"espera": 1, "atendendo": 0, "finalizado": 0}
    total = await counts(admin_headers)
    assert total["espera"] >= 3 and total["atendendo"] >= 2 and total["finalizado"] >= 2
    # Counts agree with the lists for every role.
    for headers in (w.tenant.headers, w.a_d1["headers"], w.a_both["headers"]):
        c = await counts(headers)
        for status, n in c.items():
            assert len(await _visible(client, headers, status=status)) == n


async def test_refused_action_shows_the_ticket_only_to_who_may_see_it(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    """A 409 names the ticket's status to an agent who may act on it, but shows the ticket (the
    client's phone, the last message, the holder) only to someone who may see it."""
    t = await make_tenant(client, admin_headers, departments=1, agents=2)
    first, second = t.agents
    ticket = await make_ticket(client, t, message="meu cartão final 4321")
    await assume(client, first["headers"], ticket["id"])

    for action in ("assume", "finalize"):
        r = await client.post(f"{API}/tickets/{ticket['id']}/{action}", headers=second["headers"])
        assert r.status_code == 409, r.text
        detail = r.json()["detail"]
        assert detail["status"] == "atendendo" and detail["message"], detail
        assert "ticket" not in detail, detail
        for secret in (ticket["client_phone"], "4321", first["id"], first["name"]):
            assert secret not in r.text, (secret, r.text)
        # It really may not see it: the same ticket is a 404 to read.
        assert (await client.get(f"{API}/tickets/{ticket['id']}", headers=second["headers"])).status_code == 404

    # The holder, who may see it, still gets the ticket as it is.
    r = await client.post(f"{API}/tickets/{ticket['id']}/assume", headers=first["headers"])
    assert r.status_code == 409, r.text
    shown = r.json()["detail"]["ticket"]
    assert (shown["status"], shown["agent_id"], shown["client_phone"]) == (
        "atendendo",
        first["id"],
        ticket["client_phone"],
    )


async def test_finalized_by_is_read_as_stored_so_a_client_can_mirror_visibility(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    """An agent keeps seeing a ticket it finalized straight from espera (no agent on it):
    `finalized_by` is what grants it (tickets/visibility.py), so every read shows it, as stored,
    for the realtime cache to apply the same rule (frontend/src/realtime/cache.ts belongsIn)."""
    t = await make_tenant(client, admin_headers, departments=1, agents=1)
    agent = t.agents[0]
    waiting = await make_ticket(client, t)
    assert waiting["finalized_by"] is None

    r = await client.post(f"{API}/tickets/{waiting['id']}/finalize", headers=agent["headers"])
    assert r.status_code == 200, r.text
    answered = r.json()
    assert (answered["status"], answered["agent_id"], answered["finalized_by"]) == ("finalizado", None, agent["id"])

    listed = await collect_pages(client, agent["headers"], f"{API}/tickets", status="finalizado")
    assert [(i["id"], i["finalized_by"]) for i in listed] == [(waiting["id"], agent["id"])]
    read = await client.get(f"{API}/tickets/{waiting['id']}", headers=agent["headers"])
    assert read.status_code == 200 and read.json()["finalized_by"] == agent["id"], read.text

    by_owner = await make_ticket(client, t)
    r = await client.post(f"{API}/tickets/{by_owner['id']}/finalize", headers=t.headers)
    assert r.status_code == 200, r.text
    assert r.json()["finalized_by"] == t.owner_id
