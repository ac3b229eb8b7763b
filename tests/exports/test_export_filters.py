"""Both CSV exports honour the dashboard's filters (the summary's, one definition): each of
department, agent and connection keeps its side's ticket and messages and drops the other's, the
file's name says which filters it covers, another tenant's ids give an empty file (the summary's
empty answer), malformed ids 422; and the longest period is the reports' own."""

import csv
import io
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from backend.reports import service as reports
from tests.factories import API
from tests.reports.two_of_each import TwoOfEach, around_today, make_two_of_each

FILTERS = ("department_id", "agent_id", "connection_id")
FILES = ("tickets.csv", "messages.csv")


@pytest.fixture(scope="module")
async def two(client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any) -> TwoOfEach:
    return await make_two_of_each(client, admin_headers, db)


async def _export(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: str
) -> tuple[list[list[str]], str]:
    r = await client.get(f"{API}/exports/{path}", params={**around_today(), **params}, headers=headers)
    assert r.status_code == 200, r.text
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"), newline=""), delimiter=";"))
    return rows, r.headers["content-disposition"]


def _ticket_numbers(rows: list[list[str]], column: int) -> set[str]:
    return {row[column] for row in rows[1:]}


NUMBER_COLUMN = {"tickets.csv": 0, "messages.csv": 1}  # the ticket's number in each file


async def test_unfiltered_both_sides_are_in_each_file(client: httpx.AsyncClient, two: TwoOfEach) -> None:
    numbers = {str(t["number"]) for t in two.tickets}
    for path in FILES:
        rows, disposition = await _export(client, path, two.tenant.headers)
        assert _ticket_numbers(rows, NUMBER_COLUMN[path]) == numbers, path
        assert "departamento" not in disposition and "agente" not in disposition


@pytest.mark.parametrize("path", FILES)
@pytest.mark.parametrize("name", FILTERS)
@pytest.mark.parametrize("side", [0, 1])
async def test_each_filter_keeps_its_sides_rows_only(
    client: httpx.AsyncClient, two: TwoOfEach, path: str, name: str, side: int
) -> None:
    value = two.side(side)[name]
    rows, disposition = await _export(client, path, two.tenant.headers, **{name: value})
    assert _ticket_numbers(rows, NUMBER_COLUMN[path]) == {str(two.tickets[side]["number"])}
    if path == "messages.csv":
        replies = [row[8] for row in rows[1:] if row[5] == "agent"]  # signed: "*name:*\n" + text
        assert len(replies) == 1 and replies[0].endswith(f"resposta {side}"), replies
    word = {"department_id": "departamento", "agent_id": "agente", "connection_id": "conexao"}[name]
    assert f"_{word}-{value}.csv" in disposition, disposition


async def test_filters_combine_and_all_show_in_the_name(client: httpx.AsyncClient, two: TwoOfEach) -> None:
    everything = two.side(1)
    rows, disposition = await _export(client, "tickets.csv", two.tenant.headers, **everything)
    assert _ticket_numbers(rows, 0) == {str(two.tickets[1]["number"])}
    period = around_today()
    assert disposition == (
        f'attachment; filename="tickets_{period["from"]}_{period["to"]}'
        f"_departamento-{everything['department_id']}_agente-{everything['agent_id']}"
        f'_conexao-{everything["connection_id"]}.csv"'
    )
    crossed = {"department_id": two.side(0)["department_id"], "agent_id": two.side(1)["agent_id"]}
    rows, _ = await _export(client, "messages.csv", two.tenant.headers, **crossed)
    assert rows[1:] == []


@pytest.mark.parametrize("name", FILTERS)
async def test_another_tenants_id_gives_an_empty_file_as_the_summary_gives_zeros(
    client: httpx.AsyncClient, two: TwoOfEach, name: str
) -> None:
    value = two.foreign()[name]
    r = await client.get(f"{API}/reports/summary", params={name: value}, headers=two.tenant.headers)
    assert r.status_code == 200 and r.json()["opened"] == 0, r.text
    for path in FILES:
        rows, _ = await _export(client, path, two.tenant.headers, **{name: value})
        assert len(rows) == 1, path  # the header alone


@pytest.mark.parametrize("params", [{"department_id": "nope"}, {"agent_id": "x" * 24}, {"connection_id": "c" * 65}])
async def test_malformed_ids_are_422_as_on_the_summary(
    client: httpx.AsyncClient, two: TwoOfEach, params: dict[str, str]
) -> None:
    r = await client.get(f"{API}/reports/summary", params=params, headers=two.tenant.headers)
    assert r.status_code == 422
    for path in FILES:
        r = await client.get(f"{API}/exports/{path}", params={**around_today(), **params}, headers=two.tenant.headers)
        assert r.status_code == 422, (path, r.text)


async def test_a_connection_id_is_made_safe_in_the_file_name(client: httpx.AsyncClient, two: TwoOfEach) -> None:
    rows, disposition = await _export(client, "tickets.csv", two.tenant.headers, connection_id='a"b/c')
    assert rows[1:] == []
    assert disposition.endswith('_conexao-a_b_c.csv"'), disposition


async def test_the_longest_period_is_the_reports_one(client: httpx.AsyncClient, two: TwoOfEach) -> None:
    last = date(2026, 3, 10)
    longest = {"from": (last - timedelta(days=reports.MAX_DAYS - 1)).isoformat(), "to": last.isoformat()}
    longer = {"from": (last - timedelta(days=reports.MAX_DAYS)).isoformat(), "to": last.isoformat()}
    for path in ("reports/summary", "reports/agents", "exports/tickets.csv", "exports/messages.csv"):
        r = await client.get(f"{API}/{path}", params=longest, headers=two.tenant.headers)
        assert r.status_code == 200, (path, r.text)
        r = await client.get(f"{API}/{path}", params=longer, headers=two.tenant.headers)
        assert r.status_code == 422, path
        assert r.json()["detail"] == f"a period of at most {reports.MAX_DAYS} days", path
