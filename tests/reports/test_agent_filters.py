"""`/reports/agents` honours the summary's filters: each of department, agent and connection keeps
its side's agent and drops the other's, with the figures the summary gives for the same filter;
another tenant's ids, malformed ids and an agent asking for another agent get the summary's answer."""

from typing import Any

import httpx
import pytest

from tests.factories import API
from tests.reports.two_of_each import TwoOfEach, make_two_of_each

FIGURES = ("assumed", "transferred", "finalized", "messages_out", "first_response_seconds", "satisfaction")
FILTERS = ("department_id", "agent_id", "connection_id")


@pytest.fixture(scope="module")
async def two(client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any) -> TwoOfEach:
    return await make_two_of_each(client, admin_headers, db)


async def _get(client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: str) -> httpx.Response:
    return await client.get(f"{API}/reports/{path}", params=params, headers=headers)


async def _rows(client: httpx.AsyncClient, headers: dict[str, str], **params: str) -> dict[str, dict[str, Any]]:
    r = await _get(client, "agents", headers, **params)
    assert r.status_code == 200, r.text
    return {row["agent_id"]: row for row in r.json()["items"]}


async def test_unfiltered_the_table_has_both_agents(client: httpx.AsyncClient, two: TwoOfEach) -> None:
    rows = await _rows(client, two.tenant.headers)
    assert set(rows) == {a["id"] for a in two.tenant.agents}
    assert all(row["messages_out"] == 1 for row in rows.values())


@pytest.mark.parametrize("name", FILTERS)
@pytest.mark.parametrize("side", [0, 1])
async def test_each_filter_keeps_its_sides_agent_only(
    client: httpx.AsyncClient, two: TwoOfEach, name: str, side: int
) -> None:
    value = two.side(side)[name]
    rows = await _rows(client, two.tenant.headers, **{name: value})
    mine = two.tenant.agents[side]["id"]
    assert set(rows) == {mine}, name
    r = await _get(client, "summary", two.tenant.headers, **{name: value})
    assert r.status_code == 200, r.text
    summary = r.json()
    assert {k: rows[mine][k] for k in FIGURES} == {k: summary[k] for k in FIGURES}
    assert (rows[mine]["assumed"], rows[mine]["messages_out"]) == (1, 1)


async def test_filters_combine(client: httpx.AsyncClient, two: TwoOfEach) -> None:
    crossed = {"department_id": two.side(0)["department_id"], "connection_id": two.side(1)["connection_id"]}
    assert await _rows(client, two.tenant.headers, **crossed) == {}
    both = {"department_id": two.side(1)["department_id"], "connection_id": two.side(1)["connection_id"]}
    assert set(await _rows(client, two.tenant.headers, **both)) == {two.tenant.agents[1]["id"]}


@pytest.mark.parametrize("name", FILTERS)
async def test_another_tenants_id_answers_as_the_summary_does(
    client: httpx.AsyncClient, two: TwoOfEach, name: str
) -> None:
    value = two.foreign()[name]
    summary = await _get(client, "summary", two.tenant.headers, **{name: value})
    agents = await _get(client, "agents", two.tenant.headers, **{name: value})
    assert (agents.status_code, summary.status_code) == (200, 200)  # nothing there, never a 404
    assert (summary.json()["assumed"], summary.json()["messages_out"]) == (0, 0)
    assert agents.json()["items"] == []


@pytest.mark.parametrize("params", [{"department_id": "nope"}, {"agent_id": "x" * 24}, {"connection_id": "c" * 65}])
async def test_malformed_ids_are_422_on_both(client: httpx.AsyncClient, two: TwoOfEach, params: dict[str, str]) -> None:
    for path in ("summary", "agents"):
        r = await _get(client, path, two.tenant.headers, **params)
        assert r.status_code == 422, (path, r.text)


async def test_an_agent_filters_its_own_row_and_not_anothers(client: httpx.AsyncClient, two: TwoOfEach) -> None:
    agent = two.tenant.agents[1]
    rows = await _rows(client, agent["headers"], department_id=two.side(0)["department_id"])
    assert set(rows) == {agent["id"]} and rows[agent["id"]]["assumed"] == 0  # its row, nothing of side 0
    for path in ("summary", "agents"):
        r = await _get(client, path, agent["headers"], agent_id=two.tenant.agents[0]["id"])
        assert r.status_code == 403, path
