"""The inbox list: newest activity first, cursor pages stable while tickets keep arriving."""

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.factories import (
    API,
    Tenant,
    collect_pages,
    make_client_ticket,
    make_open_connection,
    make_tenant,
    make_ticket,
)


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


async def test_list_orders_by_newest_activity_first(client: httpx.AsyncClient, tenant: Tenant, db: Any) -> None:
    conn = await make_open_connection(client, tenant, db)
    created = [await make_client_ticket(client, tenant, db, connection=conn) for _ in range(4)]
    items = await collect_pages(client, tenant.headers, f"{API}/tickets")
    keys = [(i["last_message_at"], i["id"]) for i in items]
    assert keys == sorted(keys, reverse=True)
    assert [i["id"] for i in items][:4] == [t["id"] for t in reversed(created)]
    # A reply moves a ticket to the top.
    oldest = created[0]
    agent = tenant.agents[0]
    r = await client.post(f"{API}/tickets/{oldest['id']}/assume", headers=agent["headers"])
    assert r.status_code == 200
    r = await client.post(f"{API}/tickets/{oldest['id']}/messages", json={"body": "resposta"}, headers=agent["headers"])
    assert r.status_code == 201
    first = (await client.get(f"{API}/tickets", params={"limit": 1}, headers=tenant.headers)).json()["items"][0]
    assert first["id"] == oldest["id"]


async def test_timestamps_have_one_width_so_their_strings_sort_as_the_times_do(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any
) -> None:
    # The live inbox orders tickets by these strings. A time on a whole second used to lose its
    # fraction ("...:05Z") and sort after every later time of that second ("...:05.300Z").
    tenant = await make_tenant(client, admin_headers, agents=0)
    on_the_second, a_bit_later = (await make_ticket(client, tenant))["id"], (await make_ticket(client, tenant))["id"]
    second = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    await db.tickets.update_one({"_id": on_the_second}, {"$set": {"last_message_at": second}})
    later = second + timedelta(milliseconds=300)
    await db.tickets.update_one({"_id": a_bit_later}, {"$set": {"last_message_at": later}})
    items = (await client.get(f"{API}/tickets", headers=tenant.headers)).json()["items"]
    assert [(i["id"], i["last_message_at"]) for i in items] == [
        (a_bit_later, "2031-05-06T07:08:09.300Z"),
        (on_the_second, "2031-05-06T07:08:09.000Z"),
    ]
    fixed = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
    for item in items:
        for field in ("last_message_at", "created_at", "updated_at"):
            assert fixed.match(item[field]), (field, item[field])


async def test_cursor_pages_are_stable_while_new_tickets_arrive(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for _ in range(7):
        await make_ticket(client, tenant)
    everything = [i["id"] for i in await collect_pages(client, tenant.headers, f"{API}/tickets")]
    r = await client.get(f"{API}/tickets", params={"limit": 3}, headers=tenant.headers)
    page1 = r.json()
    assert len(page1["items"]) == 3 and page1["next_cursor"]
    arrived = [(await make_ticket(client, tenant))["id"] for _ in range(3)]
    seen = [i["id"] for i in page1["items"]]
    cursor = page1["next_cursor"]
    while cursor:
        r = await client.get(f"{API}/tickets", params={"limit": 3, "cursor": cursor}, headers=tenant.headers)
        assert r.status_code == 200
        seen.extend(i["id"] for i in r.json()["items"])
        cursor = r.json()["next_cursor"]
    # No duplicates, no skips: exactly the tickets that existed when paging began, in order.
    assert seen == everything
    assert not set(arrived) & set(seen)
    # And the newcomers are at the head of a fresh first page.
    head = (await client.get(f"{API}/tickets", params={"limit": 3}, headers=tenant.headers)).json()["items"]
    assert [i["id"] for i in head] == list(reversed(arrived))


@pytest.fixture(scope="module")
async def probe(client: httpx.AsyncClient, tenant: Tenant) -> dict[str, Any]:
    return await make_ticket(client, tenant)


def _cursor(values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64!!",
        _cursor({"a": 1}),
        _cursor([1, 2, 3]),
        _cursor(["not a date", "x"]),
        _cursor([None, None]),
        _cursor([10**30, 10**30]),
        "W" * 5000,
        _cursor([[[[[[[[1]]]]]]]]),
    ],
)
async def test_garbage_cursor_is_422_on_every_list(
    client: httpx.AsyncClient, tenant: Tenant, probe: dict[str, Any], cursor: str
) -> None:
    ticket = probe
    for path in (
        "/tickets",
        f"/tickets/{ticket['id']}/messages",
        f"/tickets/{ticket['id']}/events",
        f"/tickets/{ticket['id']}/history",
        "/users",
        "/departments",
        "/clients",
    ):
        r = await client.get(f"{API}{path}", params={"cursor": cursor}, headers=tenant.headers)
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert "detail" in r.json()


async def test_events_cursor_rejects_numbers_outside_versions(client: httpx.AsyncClient, tenant: Tenant) -> None:
    ticket = await make_ticket(client, tenant)
    for bad in ([10**30], [-1], [True], ["1"]):
        r = await client.get(
            f"{API}/tickets/{ticket['id']}/events", params={"cursor": _cursor(bad)}, headers=tenant.headers
        )
        assert r.status_code == 422, (bad, r.text)


async def test_query_parameters_sent_empty_are_no_filter(client: httpx.AsyncClient, tenant: Tenant) -> None:
    """`?status=espera&department_id=&cursor=&limit=` as a form or a URL template sends it: the
    empty ones are left out, not refused as malformed."""
    await make_ticket(client, tenant)
    plain = await client.get(f"{API}/tickets?status=espera", headers=tenant.headers)
    empty = await client.get(f"{API}/tickets?status=espera&department_id=&cursor=&limit=", headers=tenant.headers)
    assert plain.status_code == empty.status_code == 200, empty.text
    assert [t["id"] for t in empty.json()["items"]] == [t["id"] for t in plain.json()["items"]]
    r = await client.get(f"{API}/clients?q=&tag=&cursor=", headers=tenant.headers)
    assert r.status_code == 200, r.text
    # A value that is there is still checked.
    r = await client.get(f"{API}/tickets?status=espera&department_id=nope&limit=", headers=tenant.headers)
    assert r.status_code == 422


async def test_the_admin_narrows_the_list_to_one_company_and_nobody_else_reaches_another_s(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    mine = await make_tenant(client, admin_headers, agents=1)
    theirs = await make_tenant(client, admin_headers, agents=0)
    own = {(await make_ticket(client, mine))["id"] for _ in range(2)}
    await make_ticket(client, theirs)
    listed = await collect_pages(client, admin_headers, f"{API}/tickets", limit=1, reseller_id=mine.id)
    assert {t["id"] for t in listed} == own
    unmatched = {"reseller_id": mine.id, "q": "nobody-matches-this"}
    r = await client.get(f"{API}/tickets", params=unmatched, headers=admin_headers)
    assert r.status_code == 200 and r.json()["items"] == []
    # Another company's, for anyone else: as if it did not exist.
    for headers, other_id in ((theirs.headers, mine.id), (mine.agents[0]["headers"], theirs.id)):
        r = await client.get(f"{API}/tickets", params={"reseller_id": other_id}, headers=headers)
        assert r.status_code == 404, r.text
    r = await client.get(f"{API}/tickets", params={"reseller_id": mine.id}, headers=mine.headers)  # its own: as without
    assert r.status_code == 200 and {t["id"] for t in r.json()["items"]} == own
    assert (await client.get(f"{API}/tickets", params={"reseller_id": "x"}, headers=admin_headers)).status_code == 422
