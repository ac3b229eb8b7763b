"""GET /api/v1/tickets: the inbox filters (department, agent, connection, tag, period, the
company's calendar days) and search (#number exactly, client name or phone, message text);
PUT /tickets/{id}/tags."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from backend.core import clock
from backend.core.clock import utcnow
from backend.core.ids import new_id
from backend.tickets import intake
from backend.users.models import User
from tests.factories import API, Tenant, assume, make_client, make_department, make_tenant, open_ticket, unique

URL = f"{API}/tickets"


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    t = await make_tenant(client, admin_headers, departments=1, agents=2)
    t.departments.append(await make_department(client, t))
    return t


@pytest.fixture(scope="module")
async def other(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


async def _ids(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[str]:
    r = await client.get(URL, params={"limit": 200, **params}, headers=headers)
    assert r.status_code == 200, r.text
    return [t["id"] for t in r.json()["items"]]


async def _ticket(client: httpx.AsyncClient, tenant: Tenant, *, dept: int = 0, message: str = "Oi") -> dict[str, Any]:
    customer = await make_client(client, tenant)
    return await open_ticket(
        client, tenant.headers, client_id=customer["id"], department_id=tenant.departments[dept]["id"], message=message
    )


async def test_hash_number_finds_exactly_that_ticket_not_phones_containing_it(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    tickets = [await _ticket(client, tenant) for _ in range(3)]
    second = tickets[1]
    assert second["number"] == 2
    # Every client's phone contains a 2 (unique_phone starts with 55 119…): none of them matches "#2".
    assert await _ids(client, tenant.headers, q="#2") == [second["id"]]
    assert await _ids(client, tenant.headers, q="# 2") == [second["id"]]
    assert await _ids(client, tenant.headers, q="#99") == []


async def test_search_by_message_text_within_what_the_actor_sees(
    client: httpx.AsyncClient, tenant: Tenant, other: Tenant
) -> None:
    word = unique("boleto-")
    mine = await _ticket(client, tenant, message=f"Não recebi o {word.upper()} deste mês")
    theirs = await _ticket(client, other, message=f"Meu {word}")
    assert await _ids(client, tenant.headers, q=word) == [mine["id"]]
    assert await _ids(client, other.headers, q=word) == [theirs["id"]]
    second_dept_ticket = await _ticket(client, tenant, dept=1, message=f"Também {word}")
    first_agent = tenant.agents[0]
    r = await client.patch(
        f"{API}/users/{first_agent['id']}",
        json={"department_ids": [tenant.departments[0]["id"]]},
        headers=tenant.headers,
    )
    assert r.status_code == 200
    # The agent's token is still valid (departments do not end sessions) and it sees department 0 only.
    assert await _ids(client, first_agent["headers"], q=word) == [mine["id"]]
    assert second_dept_ticket["id"] in await _ids(client, tenant.headers, q=word)


async def test_filters_by_department_agent_and_connection(client: httpx.AsyncClient, tenant: Tenant, db: Any) -> None:
    a = await _ticket(client, tenant, dept=1)
    b = await _ticket(client, tenant, dept=0)
    agent = tenant.agents[1]
    await assume(client, agent["headers"], b["id"])
    connection_id = new_id()
    customer = await make_client(client, tenant)
    whatsapp, _, _ = await intake.receive_client_message(
        db,
        reseller_id=tenant.id,
        client=User.model_validate(await db.users.find_one({"_id": customer["id"]})),
        department_id=tenant.departments[0]["id"],
        channel=connection_id,
        body="pelo WhatsApp",
    )
    dept1 = await _ids(client, tenant.headers, department_id=tenant.departments[1]["id"])
    assert a["id"] in dept1 and b["id"] not in dept1
    assert await _ids(client, tenant.headers, agent_id=agent["id"]) == [b["id"]]
    assert await _ids(client, tenant.headers, connection_id=connection_id) == [whatsapp.id]
    assert await _ids(client, tenant.headers, connection_id=new_id()) == []
    r = await client.get(URL, params={"agent_id": "not-an-id"}, headers=tenant.headers)
    assert r.status_code == 422


async def test_period_filter_on_opening_time(client: httpx.AsyncClient, tenant: Tenant) -> None:
    start = utcnow()
    t1 = await _ticket(client, tenant)
    now = utcnow()
    found = await _ids(client, tenant.headers, created_from=(start - timedelta(seconds=1)).isoformat())
    assert t1["id"] in found
    assert t1["id"] not in await _ids(client, tenant.headers, created_to=(start - timedelta(seconds=1)).isoformat())
    assert t1["id"] not in await _ids(client, tenant.headers, created_from=(now + timedelta(days=1)).isoformat())
    r = await client.get(URL, params={"created_from": "ontem"}, headers=tenant.headers)
    assert r.status_code == 422


# 2025-03-10 00:00 in Tokyo (UTC+9 all year): still the 9th by a UTC clock, and by São Paulo's.
TOKYO_MIDNIGHT = datetime(2025, 3, 9, 15, tzinfo=UTC)


async def test_day_filters_are_the_companys_days_in_its_timezone(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    r = await client.patch(f"{API}/reseller-config", json={"timezone": "Asia/Tokyo"}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    opened_at = {
        "9th, last second": TOKYO_MIDNIGHT - timedelta(seconds=1),
        "10th, first instant": TOKYO_MIDNIGHT,
        "10th, last millisecond": TOKYO_MIDNIGHT + timedelta(days=1, milliseconds=-1),
        "11th, first instant": TOKYO_MIDNIGHT + timedelta(days=1),
    }
    ids: dict[str, str] = {}
    for name, at in opened_at.items():
        with clock.override(lambda at=at: at):
            ids[name] = (await _ticket(client, tenant))["id"]

    async def opened(headers: dict[str, str], **days: str) -> set[str]:
        found = set(await _ids(client, headers, **days))
        return {name for name, ticket_id in ids.items() if ticket_id in found}

    tenth = {"opened_from_day": "2025-03-10", "opened_to_day": "2025-03-10"}
    assert await opened(tenant.headers, **tenth) == {"10th, first instant", "10th, last millisecond"}
    # The agent, whatever zone its browser keeps, sends the day and gets the company's day.
    agent = tenant.agents[0]["headers"]
    assert await opened(agent, **tenth) == {"10th, first instant", "10th, last millisecond"}
    assert await opened(agent, opened_from_day="2025-03-10") == set(ids) - {"9th, last second"}
    assert await opened(agent, opened_to_day="2025-03-09") == {"9th, last second"}
    r = await client.get(URL, params={**tenth, "reseller_id": tenant.id}, headers=admin_headers)
    assert {t["id"] for t in r.json()["items"]} == {ids["10th, first instant"], ids["10th, last millisecond"]}

    # The same instants in São Paulo (UTC-3): midday, so the 10th holds the last two.
    r = await client.patch(f"{API}/reseller-config", json={"timezone": "America/Sao_Paulo"}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert await opened(agent, **tenth) == {"10th, last millisecond", "11th, first instant"}


async def test_bad_days_are_422_and_change_nothing(
    client: httpx.AsyncClient, tenant: Tenant, admin_headers: dict[str, str], db: Any
) -> None:
    await _ticket(client, tenant)
    before = await db.tickets.find({"reseller_id": tenant.id}).to_list(None)
    for bad in (
        {"opened_from_day": "ontem"},
        {"opened_from_day": "2025-02-30"},
        {"opened_to_day": "1741564800"},  # a Unix time is not a calendar day
        {"opened_to_day": "2025-03-10T00:00:00"},
        {"opened_from_day": "2025-03-11", "opened_to_day": "2025-03-10"},
        {"opened_to_day": "9999-12-31"},  # its end is past what a date can hold
    ):
        r = await client.get(URL, params=bad, headers=tenant.headers)
        assert r.status_code == 422, (bad, r.text)
        assert "detail" in r.json()
    r = await client.get(
        URL, params={"opened_from_day": "2025-03-11", "opened_to_day": "2025-03-10"}, headers=tenant.headers
    )
    assert r.json() == {"detail": "opened_to_day is before opened_from_day"}
    # Across companies a day names no one period: the admin names the company.
    r = await client.get(URL, params={"opened_from_day": "2025-03-10"}, headers=admin_headers)
    assert r.status_code == 422, r.text
    assert await db.tickets.find({"reseller_id": tenant.id}).to_list(None) == before


async def test_ticket_tags_filter_and_stay_out_of_the_ticket_document(
    client: httpx.AsyncClient, tenant: Tenant, other: Tenant, db: Any
) -> None:
    tag = unique("urgente").lower()
    t1 = await _ticket(client, tenant)
    t2 = await _ticket(client, tenant)
    stored = await db.tickets.find_one({"_id": t1["id"]})
    r = await client.put(
        f"{URL}/{t1['id']}/tags", json={"tags": [tag.upper(), "cobrança"]}, headers=tenant.agents[0]["headers"]
    )
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == ["cobrança", tag]
    assert await db.tickets.find_one({"_id": t1["id"]}) == stored
    assert await _ids(client, tenant.headers, tag=tag) == [t1["id"]]
    assert await _ids(client, tenant.headers, tag=tag.upper()) == [t1["id"]]
    assert (await client.get(f"{URL}/{t1['id']}", headers=tenant.headers)).json()["tags"] == ["cobrança", tag]
    assert t2["id"] not in await _ids(client, tenant.headers, tag=tag)
    assert await _ids(client, other.headers, tag=tag) == []
    # Another tenant cannot tag it, nor learn it exists; bad tags change nothing.
    r = await client.put(f"{URL}/{t1['id']}/tags", json={"tags": ["x"]}, headers=other.headers)
    assert r.status_code == 404
    for bad in ({"tags": ["x" * 33]}, {"tags": "x"}, {"tags": [""]}, {}):
        r = await client.put(f"{URL}/{t1['id']}/tags", json=bad, headers=tenant.headers)
        assert r.status_code == 422, bad
    assert (await client.get(f"{URL}/{t1['id']}", headers=tenant.headers)).json()["tags"] == ["cobrança", tag]
    r = await client.put(f"{URL}/{t1['id']}/tags", json={"tags": []}, headers=tenant.headers)
    assert r.json()["tags"] == []
    assert await _ids(client, tenant.headers, tag=tag) == []


async def test_the_tag_filter_finds_the_tickets_of_clients_tagged_so_as_the_tag_list_offers_them(
    client: httpx.AsyncClient, tenant: Tenant, other: Tenant
) -> None:
    """GET /tags offers tags in use on clients too: picking one lists those clients' tickets."""
    tag = unique("vip").lower()
    vip, plain, tagged = [await _ticket(client, tenant) for _ in range(3)]
    r = await client.patch(f"{API}/clients/{vip['client_id']}", json={"tags": [tag]}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    r = await client.put(f"{URL}/{tagged['id']}/tags", json={"tags": [tag]}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert tag in (await client.get(f"{API}/tags", headers=tenant.headers)).json()["items"]
    ticket_only = unique("cobranca").lower()
    r = await client.put(f"{URL}/{plain['id']}/tags", json={"tags": [ticket_only]}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    on_clients = (await client.get(f"{API}/tags", params={"on": "clients"}, headers=tenant.headers)).json()["items"]
    on_tickets = (await client.get(f"{API}/tags", params={"on": "tickets"}, headers=tenant.headers)).json()["items"]
    assert tag in on_clients and ticket_only not in on_clients  # the contact list filters by client tags
    assert {tag, ticket_only} <= set(on_tickets)
    r = await client.get(f"{API}/tags", params={"on": "users"}, headers=tenant.headers)
    assert r.status_code == 422
    found = await _ids(client, tenant.headers, tag=tag)
    assert sorted(found) == sorted([vip["id"], tagged["id"]]) and plain["id"] not in found
    assert await _ids(client, tenant.headers, tag=tag, q="#" + str(vip["number"])) == [vip["id"]]
    assert await _ids(client, other.headers, tag=tag) == []


async def test_two_first_taggings_of_a_ticket_at_once_both_answer_and_one_set_stays(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    t = await _ticket(client, tenant)
    url = f"{URL}/{t['id']}/tags"
    answers = await asyncio.gather(*(client.put(url, json={"tags": [x]}, headers=tenant.headers) for x in "ab"))
    assert [r.status_code for r in answers] == [200, 200]
    stored = await db.ticket_tags.find_one({"_id": t["id"]})
    assert stored["reseller_id"] == tenant.id and stored["tags"] in (["a"], ["b"])
    assert (await client.get(f"{URL}/{t['id']}", headers=tenant.headers)).json()["tags"] == stored["tags"]
