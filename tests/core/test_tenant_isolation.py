"""Another tenant's ids answer 404 on every endpoint that takes one, and lists never leak rows."""

from typing import Any

import httpx
import pytest

from tests.factories import (
    API,
    Tenant,
    assume,
    collect_pages,
    collection_counts,
    get_ticket,
    make_client,
    make_tenant,
    make_ticket,
    ticket_events,
)


class Victim:
    tenant: Tenant
    client: dict[str, Any]
    espera: dict[str, Any]
    held: dict[str, Any]
    reply: dict[str, Any]


@pytest.fixture(scope="module")
async def victim(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Victim:
    v = Victim()
    v.tenant = await make_tenant(client, admin_headers, departments=1, agents=1)
    v.client = await make_client(client, v.tenant)
    v.espera = await make_ticket(client, v.tenant)
    v.held = await make_ticket(client, v.tenant)
    await assume(client, v.tenant.agents[0]["headers"], v.held["id"])
    r = await client.post(f"{API}/quick-replies", json={"shortcut": "ola", "text": "Olá"}, headers=v.tenant.headers)
    assert r.status_code == 201, r.text
    v.reply = r.json()
    return v


@pytest.fixture(scope="module")
async def intruder(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    t = await make_tenant(client, admin_headers, departments=1, agents=1)
    await make_ticket(client, t)
    return t


def _probes(v: Victim, intruder: Tenant) -> list[tuple[str, str, dict[str, Any] | None]]:
    t = v.tenant
    dept, agent, owner = t.departments[0]["id"], t.agents[0]["id"], t.owner_id
    probes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", f"/departments/{dept}", None),
        ("PATCH", f"/departments/{dept}", {"active": False}),
        ("GET", f"/users/{agent}", None),
        ("PATCH", f"/users/{agent}", {"active": False}),
        ("GET", f"/users/{owner}", None),
        ("PATCH", f"/users/{owner}", {"name": "x"}),
        ("GET", f"/clients/{v.client['id']}", None),
        ("PATCH", f"/clients/{v.client['id']}", {"name": "x"}),
        ("PATCH", f"/quick-replies/{v.reply['id']}", {"text": "x"}),
    ]
    for ticket, sibling in ((v.espera, v.held), (v.held, v.espera)):
        tid = ticket["id"]
        probes += [
            ("GET", f"/tickets/{tid}", None),
            ("POST", f"/tickets/{tid}/assume", None),
            ("POST", f"/tickets/{tid}/transfer", {"agent_id": intruder.agents[0]["id"]}),
            ("POST", f"/tickets/{tid}/transfer", {"department_id": intruder.departments[0]["id"]}),
            ("POST", f"/tickets/{tid}/finalize", None),
            ("GET", f"/tickets/{tid}/messages", None),
            ("POST", f"/tickets/{tid}/messages", {"body": "oi"}),
            ("GET", f"/tickets/{tid}/events", None),
            ("POST", f"/tickets/{tid}/notes", {"body": "x"}),
            ("PUT", f"/tickets/{tid}/tags", {"tags": ["x"]}),
            ("GET", f"/tickets/{tid}/history", None),
            ("GET", f"/tickets/{tid}/history/{sibling['id']}", None),
        ]
    return probes


async def _state(client: httpx.AsyncClient, v: Victim, db: Any) -> Any:
    t = v.tenant
    return (
        await collection_counts(db),
        [await get_ticket(client, t.headers, x["id"]) for x in (v.espera, v.held)],
        [len(await ticket_events(client, t.headers, x["id"])) for x in (v.espera, v.held)],
        (await client.get(f"{API}/departments/{t.departments[0]['id']}", headers=t.headers)).json(),
        (await client.get(f"{API}/users/{t.agents[0]['id']}", headers=t.headers)).json(),
        (await client.get(f"{API}/users/{t.owner_id}", headers=t.headers)).json(),
        (await client.get(f"{API}/clients/{v.client['id']}", headers=t.headers)).json(),
        (await client.get(f"{API}/quick-replies", headers=t.headers)).json(),
    )


@pytest.mark.parametrize("who", ["reseller", "agent"])
async def test_every_id_endpoint_answers_404_for_another_tenants_ids_and_changes_nothing(
    client: httpx.AsyncClient, victim: Victim, intruder: Tenant, db: Any, who: str
) -> None:
    headers = intruder.headers if who == "reseller" else intruder.agents[0]["headers"]
    before = await _state(client, victim, db)
    for method, path, body in _probes(victim, intruder):
        role_forbidden = (who == "agent" and method == "PATCH" and not path.startswith("/clients")) or (
            who == "reseller" and method == "POST" and path.endswith(("/assume", "/messages"))
        )
        # A role that may never do this can be told so (403) before the id is looked at; what
        # matters is that a foreign id answers exactly like an id that exists nowhere (below).
        expected = {403, 404} if role_forbidden else {404}
        r = await client.request(method, f"{API}{path}", json=body, headers=headers)
        assert r.status_code in expected, (who, method, path, r.status_code, r.text)
        assert "detail" in r.json()
        # The answer for a foreign id is the answer for an id that exists nowhere.
        ghost = path.replace(path.split("/")[2], "0" * 24, 1)
        r2 = await client.request(method, f"{API}{ghost}", json=body, headers=headers)
        assert (r2.status_code, r2.json()) == (r.status_code, r.json()), (method, ghost)
    assert await _state(client, victim, db) == before


async def test_lists_and_counts_never_show_another_tenants_rows(
    client: httpx.AsyncClient, victim: Victim, intruder: Tenant
) -> None:
    theirs = {
        victim.espera["id"],
        victim.held["id"],
        victim.client["id"],
        victim.tenant.departments[0]["id"],
        victim.tenant.agents[0]["id"],
        victim.tenant.owner_id,
    }
    for headers in (intruder.headers, intruder.agents[0]["headers"]):
        for path in ("/tickets", "/departments", "/users", "/clients"):
            items = await collect_pages(client, headers, f"{API}{path}")
            assert items, path  # the intruder's own rows are there...
            assert not {i["id"] for i in items} & theirs, path  # ...and never the victim's
            assert {i.get("reseller_id", intruder.id) for i in items} == {intruder.id}
        for params in ({}, {"status": "espera"}, {"department_id": victim.tenant.departments[0]["id"]}):
            items = await collect_pages(client, headers, f"{API}/tickets", **params)
            assert not {i["id"] for i in items} & theirs
        r = await client.get(f"{API}/tickets/counts", headers=headers)
        assert r.json()["atendendo"] == 0  # the victim's held ticket is not counted
        r = await client.get(
            f"{API}/tickets/counts", params={"department_id": victim.tenant.departments[0]["id"]}, headers=headers
        )
        assert r.json() == {"espera": 0, "atendendo": 0, "finalizado": 0}
        r = await client.get(f"{API}/clients", params={"phone": victim.client["phone"]}, headers=headers)
        assert r.json()["items"] == []


async def test_ticket_create_with_another_tenants_client_or_department_is_404(
    client: httpx.AsyncClient, victim: Victim, intruder: Tenant, db: Any
) -> None:
    before = await collection_counts(db)
    own_client = await make_client(client, intruder)
    mid = await collection_counts(db)
    for body in (
        {"client_id": victim.client["id"], "department_id": intruder.departments[0]["id"]},
        {"client_id": own_client["id"], "department_id": victim.tenant.departments[0]["id"]},
    ):
        r = await client.post(f"{API}/tickets", json={**body, "message": "oi"}, headers=intruder.headers)
        assert r.status_code == 404, r.text
    assert await collection_counts(db) == mid != before
