"""The ticket's timeline names people (issue 17 item 10): who acted, and where a transfer went."""

import httpx

from tests.factories import API, assume, make_department, make_tenant, make_ticket


async def test_events_carry_the_actor_and_target_names(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=2)
    ana, bia = tenant.agents
    queue = await make_department(client, tenant, name="Financeiro")
    ticket = await make_ticket(client, tenant)
    await assume(client, ana["headers"], ticket["id"])
    r = await client.post(
        f"{API}/tickets/{ticket['id']}/transfer", json={"agent_id": bia["id"]}, headers=ana["headers"]
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"{API}/tickets/{ticket['id']}/transfer", json={"department_id": queue["id"]}, headers=tenant.headers
    )
    assert r.status_code == 200, r.text
    r = await client.post(f"{API}/tickets/{ticket['id']}/finalize", headers=tenant.headers)
    assert r.status_code == 200, r.text
    r = await client.get(f"{API}/tickets/{ticket['id']}/events", headers=tenant.headers)
    owner = (await client.get(f"{API}/auth/me", headers=tenant.headers)).json()["name"]
    got = [(e["type"], e["actor_name"], e["target_name"]) for e in r.json()["items"]]
    assert got == [
        ("created", owner, None),
        ("assumed", ana["name"], None),
        ("transferred", ana["name"], bia["name"]),
        ("transferred", owner, "Financeiro"),
        ("finalized", owner, None),
    ]
