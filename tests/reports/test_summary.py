"""`/reports/summary` and `/reports/agents` over a scripted day with known timings (a scripted
clock) and two clients' ratings: every figure asserted, for the reseller, with each filter, for an agent and the admin;
local day boundaries; tenancy and bad input."""

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from backend.reports import rebuild
from backend.tickets import service as tickets
from tests.factories import API, Tenant, make_client_ticket, make_open_connection, make_tenant
from tests.reports.support import scripted

SP = ZoneInfo("America/Sao_Paulo")
T0 = datetime(2026, 3, 10, 13, 0, tzinfo=SP).astimezone(UTC)  # 13:00 local, 16:00 UTC
DAY = "2026-03-10"


async def _post(client: httpx.AsyncClient, url: str, headers: dict[str, str], json: Any = None) -> dict[str, Any]:
    r = await client.post(f"{API}{url}", headers=headers, json=json)
    assert r.status_code in (200, 201), r.text
    body: dict[str, Any] = r.json()
    return body


CONNECTIONS: dict[str, dict[str, Any]] = {}  # tenant -> its WhatsApp connection, made by the fixture


async def _open(client: httpx.AsyncClient, db: Any, tenant: Tenant, department: int) -> str:
    """A client writes in on WhatsApp (replies are only accepted where they reach the client)."""
    dept = tenant.departments[department]["id"]
    ticket = await make_client_ticket(
        client, tenant, db, message="oi", department_id=dept, connection=CONNECTIONS[tenant.id], signed=True
    )
    return str(ticket["id"])


async def _summary(client: httpx.AsyncClient, headers: dict[str, str], **params: str) -> dict[str, Any]:
    r = await client.get(f"{API}/reports/summary", params={"from": DAY, "to": DAY, **params}, headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


FIGURES = (
    "opened",
    "assumed",
    "transferred",
    "finalized",
    "waiting_now",
    "oldest_wait_seconds",
    "first_response_seconds",
    "resolution_seconds",
    "messages_in",
    "messages_out",
    "satisfaction",
)


def _figures(body: dict[str, Any]) -> dict[str, Any]:
    return {k: body[k] for k in FIGURES}


def _q(median: float | None, p90: float | None) -> dict[str, float | None]:
    return {"median": median, "p90": p90}


def _sat(average: float | None, **grades: int) -> dict[str, Any]:
    """satisfaction with `average` and the given grades' counts (g5=1: one rating of 5)."""
    distribution = {str(g): grades.get(f"g{g}", 0) for g in range(1, 6)}
    return {"average": average, "count": sum(distribution.values()), "distribution": distribution}


NO_RATINGS = _sat(None)


async def _rate(db: Any, ticket_id: str, rating: int) -> None:
    """The client's rating as backend/automation records it (its survey answer's last step)."""
    ticket = await tickets.load(db, ticket_id)
    assert ticket is not None
    await tickets.rate(db, ticket, rating=rating, message_id=f"rating-of-{ticket_id}")


@pytest.fixture(scope="module")
async def scenario(client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any) -> AsyncIterator[Tenant]:
    """Ticket A: opened 13:00 in dept 0, assumed by agent 0 at +60 s, answered at +180 s,
    finalized at +600 s. Ticket B: opened +1000 s in dept 1, assumed by agent 1 at +1100 s,
    answered at +1400 s, transferred to agent 0 at +1500 s, finalized by agent 0 at +1600 s.
    Ticket C: opened +2000 s in dept 0, waiting. Ticket D: opened at 23:30 local in dept 1
    (02:30 UTC the next day), waiting. A's client rates it 5 at +700 s; B's client rates it 2 at
    23:35 local (the next day in UTC). The clock then stops at 23:40 local."""
    tenant = await make_tenant(client, admin_headers, departments=2, agents=2)
    # Logins before the clock is scripted: a token stamped in March would be expired in real time.
    OTHERS.append(await make_tenant(client, admin_headers, departments=1, agents=0))
    CONNECTIONS[tenant.id] = await make_open_connection(client, tenant, db)
    a0, a1 = (a["headers"] for a in tenant.agents)
    with scripted(T0) as clock:
        ticket_a = await _open(client, db, tenant, 0)
        clock.at(T0 + _s(60))
        await _post(client, f"/tickets/{ticket_a}/assume", a0)
        clock.at(T0 + _s(180))
        await _post(client, f"/tickets/{ticket_a}/messages", a0, {"body": "bom dia"})
        await _post(client, f"/tickets/{ticket_a}/notes", a0, {"body": "a note is no message"})
        clock.at(T0 + _s(600))
        await _post(client, f"/tickets/{ticket_a}/finalize", a0)
        clock.at(T0 + _s(700))
        await _rate(db, ticket_a, 5)

        clock.at(T0 + _s(1000))
        ticket_b = await _open(client, db, tenant, 1)
        clock.at(T0 + _s(1100))
        await _post(client, f"/tickets/{ticket_b}/assume", a1)
        clock.at(T0 + _s(1400))
        await _post(client, f"/tickets/{ticket_b}/messages", a1, {"body": "olá"})
        clock.at(T0 + _s(1500))
        await _post(client, f"/tickets/{ticket_b}/transfer", a1, {"agent_id": tenant.agents[0]["id"]})
        clock.at(T0 + _s(1600))
        await _post(client, f"/tickets/{ticket_b}/finalize", a0)

        clock.at(T0 + _s(2000))
        await _open(client, db, tenant, 0)
        clock.at(datetime(2026, 3, 10, 23, 30, tzinfo=SP).astimezone(UTC))
        await _open(client, db, tenant, 1)
        clock.at(datetime(2026, 3, 10, 23, 35, tzinfo=SP).astimezone(UTC))
        await _rate(db, ticket_b, 2)
        clock.at(datetime(2026, 3, 10, 23, 40, tzinfo=SP).astimezone(UTC))
        yield tenant


def _s(seconds: int) -> timedelta:
    return timedelta(seconds=seconds)


OTHERS: list[Tenant] = []  # another tenant, made by the fixture

# C waits since 13:33:20 local, read at 23:40:00: 36_400 s.
OLDEST = 36_400.0


async def test_reseller_sees_every_figure_of_the_scripted_day(client: httpx.AsyncClient, scenario: Tenant) -> None:
    body = await _summary(client, scenario.headers)
    assert _figures(body) == {
        "opened": 4,
        "assumed": 2,
        "transferred": 1,
        "finalized": 2,
        "waiting_now": 2,
        "oldest_wait_seconds": OLDEST,
        "first_response_seconds": _q(290.0, 400.0),
        "resolution_seconds": _q(600.0, 600.0),
        "messages_in": 4,
        "messages_out": 2,
        "satisfaction": _sat(3.5, g2=1, g5=1),
    }
    assert body["timezone"] == "America/Sao_Paulo"
    assert [d["date"] for d in body["per_day"]] == [DAY]
    assert body["per_day"][0] == {"date": DAY, "opened": 4, "finalized": 2, "messages_in": 4, "messages_out": 2}
    hours = [0] * 24
    hours[13], hours[23] = 3, 1
    assert body["per_hour"] == hours and body["per_hour_messages_in"] == hours


async def test_each_filter_narrows_every_figure(client: httpx.AsyncClient, scenario: Tenant) -> None:
    d0, d1 = (d["id"] for d in scenario.departments)
    g0, g1 = (a["id"] for a in scenario.agents)
    assert _figures(await _summary(client, scenario.headers, department_id=d1)) == {
        "opened": 2,
        "assumed": 1,
        "transferred": 1,
        "finalized": 1,
        "waiting_now": 1,
        "oldest_wait_seconds": 600.0,  # D since 23:30
        "first_response_seconds": _q(400.0, 400.0),
        "resolution_seconds": _q(600.0, 600.0),
        "messages_in": 2,
        "messages_out": 1,
        "satisfaction": _sat(2.0, g2=1),  # B's
    }
    # Agent 0: assumed A, finalized A and B (B was transferred to it), answered A. Both agents are
    # in both departments, so the whole queue waits for either.
    assert _figures(await _summary(client, scenario.headers, agent_id=g0)) == {
        "opened": 0,
        "assumed": 1,
        "transferred": 0,
        "finalized": 2,
        "waiting_now": 2,
        "oldest_wait_seconds": OLDEST,
        "first_response_seconds": _q(180.0, 180.0),
        "resolution_seconds": _q(600.0, 600.0),
        "messages_in": 0,
        "messages_out": 1,
        "satisfaction": _sat(3.5, g2=1, g5=1),  # A's and B's: it held both when they were finalized
    }
    assert (await _summary(client, scenario.headers, department_id=d0))["satisfaction"] == _sat(5.0, g5=1)
    assert (await _summary(client, scenario.headers, agent_id=g1))["satisfaction"] == NO_RATINGS
    assert (await _summary(client, scenario.headers, agent_id=g0, department_id=d1))["satisfaction"] == _sat(2.0, g2=1)
    both = await _summary(client, scenario.headers, agent_id=g1, department_id=d0)
    assert (both["assumed"], both["transferred"], both["messages_out"]) == (0, 0, 0)
    conn = await _summary(client, scenario.headers, connection_id=CONNECTIONS[scenario.id]["_id"])
    assert _figures(conn) == _figures(await _summary(client, scenario.headers))
    none = await _summary(client, scenario.headers, connection_id="f" * 24)
    assert (none["opened"], none["waiting_now"], none["first_response_seconds"]) == (0, 0, _q(None, None))
    assert none["satisfaction"] == NO_RATINGS


async def test_an_event_at_2330_local_counts_on_that_local_day(client: httpx.AsyncClient, scenario: Tenant) -> None:
    nxt = await _summary(client, scenario.headers, **{"from": "2026-03-11", "to": "2026-03-11"})
    assert (nxt["opened"], nxt["messages_in"], nxt["satisfaction"]) == (0, 0, NO_RATINGS)  # B's 2 is on the 10th
    both = await _summary(client, scenario.headers, **{"from": "2026-03-09", "to": "2026-03-11"})
    assert [(d["date"], d["opened"]) for d in both["per_day"]] == [
        ("2026-03-09", 0),
        ("2026-03-10", 4),
        ("2026-03-11", 0),
    ]


async def test_agents_table_and_an_agent_sees_only_itself(client: httpx.AsyncClient, scenario: Tenant) -> None:
    g0, g1 = (a["id"] for a in scenario.agents)
    r = await client.get(f"{API}/reports/agents", params={"from": DAY, "to": DAY}, headers=scenario.headers)
    assert r.status_code == 200, r.text
    rows = {row["agent_id"]: row for row in r.json()["items"]}
    assert set(rows) == {g0, g1}
    assert rows[g0]["agent_name"] == scenario.agents[0]["name"]
    assert _figures(rows[g0]) == _figures(await _summary(client, scenario.headers, agent_id=g0))
    assert (rows[g1]["assumed"], rows[g1]["transferred"], rows[g1]["finalized"]) == (1, 1, 0)
    assert rows[g1]["first_response_seconds"] == _q(400.0, 400.0)
    assert (rows[g0]["satisfaction"], rows[g1]["satisfaction"]) == (_sat(3.5, g2=1, g5=1), NO_RATINGS)
    # A month inside the period is read as one cell per agent (the "agent-month" view), the
    # period's partial months a day each: the same figures either way.
    for span in ({"from": "2026-03-01", "to": "2026-03-31"}, {"from": "2026-02-15", "to": "2026-04-15"}):
        r = await client.get(f"{API}/reports/agents", params=span, headers=scenario.headers)
        assert r.status_code == 200, r.text
        wide = {row["agent_id"]: _figures(row) for row in r.json()["items"]}
        assert wide == {agent: _figures(row) for agent, row in rows.items()}, span

    agent = scenario.agents[1]["headers"]
    r = await client.get(f"{API}/reports/agents", params={"from": DAY, "to": DAY}, headers=agent)
    assert [row["agent_id"] for row in r.json()["items"]] == [g1]
    mine = await _summary(client, agent)
    assert _figures(mine) == _figures(rows[g1])
    r = await client.get(f"{API}/reports/summary", params={"agent_id": g0}, headers=agent)
    assert r.status_code == 403


async def test_tenancy_admin_and_bad_input(
    client: httpx.AsyncClient, admin_headers: dict[str, str], scenario: Tenant
) -> None:
    other = OTHERS[0]
    theirs = await _summary(client, other.headers)
    assert (theirs["opened"], theirs["waiting_now"], theirs["satisfaction"]) == (0, 0, NO_RATINGS)
    r = await client.get(f"{API}/reports/summary", params={"reseller_id": scenario.id}, headers=other.headers)
    assert r.status_code == 404
    r = await client.get(f"{API}/reports/agents", params={"reseller_id": scenario.id}, headers=other.headers)
    assert r.status_code == 404
    # The admin names the tenant; without one it gets 422, with an unknown one 404.
    admin = await _summary(client, admin_headers, reseller_id=scenario.id)
    assert _figures(admin) == _figures(await _summary(client, scenario.headers))
    assert (await client.get(f"{API}/reports/summary", headers=admin_headers)).status_code == 422
    r = await client.get(f"{API}/reports/summary", params={"reseller_id": "0" * 24}, headers=admin_headers)
    assert r.status_code == 404
    for params in (
        {"from": "2026-13-01"},
        {"from": "10/03/2026"},
        {"from": "2026-03-11", "to": "2026-03-10"},
        {"from": "2024-01-01", "to": "2026-03-10"},
        {"department_id": "nope"},
        {"to": "0001-01-05"},  # its default start would be before the calendar's first day
    ):
        r = await client.get(f"{API}/reports/summary", params=params, headers=scenario.headers)
        assert r.status_code == 422, (params, r.text)
    r = await client.get(f"{API}/reports/agents", params={"to": "2026-02-30"}, headers=scenario.headers)
    assert r.status_code == 422
    edge = await _summary(client, scenario.headers, **{"from": "9999-12-25", "to": "9999-12-31"})
    assert (len(edge["per_day"]), edge["opened"]) == (7, 0)


async def test_the_rebuild_counts_the_ratings_and_agrees(db: Any, scenario: Tenant) -> None:
    _, months, _ = await rebuild.truth(db, scenario.id)
    cells = rebuild.comparable(months["2026-03"])
    grades = Counter({name: n for row in cells.values() for name, n in row.items() if name.startswith("s")})
    assert grades == {"s5": 1, "s2": 1}  # the view with every dim: one cell per rating
    found = await rebuild.audit(db, scenario.id)
    assert found.clean, (found.month_differences, found.waiting_differences, found.corrupt)
