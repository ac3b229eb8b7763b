"""CSV exports: content and figures, BOM and `;`, quoting, formula cells, local inclusive days,
tenancy and roles, bad dates, and the bound on exports running at once."""

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from backend.core.ids import new_id
from backend.exports import service as exports
from tests.exports.streaming import stream_get
from tests.factories import (
    API,
    Tenant,
    assume,
    collection_counts,
    make_client_ticket,
    make_open_connection,
    make_tenant,
    make_ticket,
)

SP = ZoneInfo("America/Sao_Paulo")


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


@pytest.fixture(scope="module")
async def other(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


CONNECTIONS: dict[str, dict[str, Any]] = {}  # tenant -> its WhatsApp connection


async def _client_ticket(
    client: httpx.AsyncClient, tenant: Tenant, db: Any, message: str = "Olá, preciso de ajuda"
) -> dict[str, Any]:
    """A ticket its client opened on WhatsApp: its first message is the client's (an API ticket's
    opening text is a staff note), and its holder can reply."""
    if tenant.id not in CONNECTIONS:
        CONNECTIONS[tenant.id] = await make_open_connection(client, tenant, db)
    return await make_client_ticket(client, tenant, db, message=message, connection=CONNECTIONS[tenant.id], signed=True)


def _around_today() -> dict[str, str]:
    today = datetime.now(SP).date()
    return {"from": (today - timedelta(days=1)).isoformat(), "to": (today + timedelta(days=1)).isoformat()}


async def _csv(client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: str) -> list[list[str]]:
    r = await client.get(f"{API}/exports/{path}", params=params, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"), newline=""), delimiter=";"))


def _local(iso: str) -> str:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(SP).strftime("%Y-%m-%d %H:%M:%S")


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


async def test_tickets_csv_has_each_tickets_people_times_and_figures(
    client: httpx.AsyncClient, db: Any, tenant: Tenant
) -> None:
    agent = tenant.agents[0]
    handled = await _client_ticket(client, tenant, db, message='Oi; preciso de "ajuda"')
    waiting = await _client_ticket(client, tenant, db)
    await assume(client, agent["headers"], handled["id"])
    r = await client.post(f"{API}/tickets/{handled['id']}/messages", json={"body": "Olá!"}, headers=agent["headers"])
    assert r.status_code == 201, r.text
    r = await client.post(f"{API}/tickets/{handled['id']}/finalize", headers=agent["headers"])
    assert r.status_code == 200, r.text
    final = r.json()
    thread = (await client.get(f"{API}/tickets/{handled['id']}/messages", headers=tenant.headers)).json()["items"]
    asked = next(m for m in thread if m["sender_type"] == "client")
    replied = next(m for m in thread if m["sender_type"] == "agent")
    events = (await client.get(f"{API}/tickets/{handled['id']}/events", headers=tenant.headers)).json()["items"]
    assumed_at = next(e["at"] for e in events if e.get("data", {}).get("action") == "assume")

    rows = await _csv(client, "tickets.csv", tenant.headers, **_around_today())
    assert rows[0] == exports.TICKET_HEADER
    by_number = {row[0]: row for row in rows[1:]}
    assert set(by_number) == {str(handled["number"]), str(waiting["number"])}
    row = by_number[str(handled["number"])]
    expected_first = round((_at(replied["created_at"]) - _at(asked["created_at"])).total_seconds())
    expected_resolution = round((_at(final["finalized_at"]) - _at(final["created_at"])).total_seconds())
    assert row == [
        str(handled["number"]),
        handled["client_name"],
        handled["client_phone"],
        tenant.departments[0]["name"],
        agent["name"],
        "finalizado",
        _local(handled["created_at"]),
        _local(assumed_at),
        _local(final["finalized_at"]),
        str(expected_first),
        str(expected_resolution),
        "",
    ]
    row = by_number[str(waiting["number"])]
    assert (row[4], row[5], row[7], row[8], row[9], row[10]) == ("", "espera", "", "", "", "")


async def test_messages_csv_is_the_conversation_quoted_without_notes(
    client: httpx.AsyncClient, db: Any, tenant: Tenant
) -> None:
    tricky = '=HYPERLINK("http://x";"clique")\n2ª linha; com "aspas"'
    ticket = await _client_ticket(client, tenant, db, message=tricky)
    r = await client.post(f"{API}/tickets/{ticket['id']}/notes", json={"body": "nota interna"}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    rows = await _csv(client, "messages.csv", tenant.headers, **_around_today())
    assert rows[0] == exports.MESSAGE_HEADER
    mine = [row for row in rows[1:] if row[1] == str(ticket["number"])]
    assert len(mine) == 1
    stamp, number, name, phone, direction, sender_type, _sender, kind, body, status = mine[0]
    assert (number, name, phone, direction, sender_type, kind, status) == (
        str(ticket["number"]),
        ticket["client_name"],
        ticket["client_phone"],
        "recebida",
        "client",
        "text",
        "received",
    )
    assert body == "'" + tricky
    stored = await db.messages.find_one({"ticket_id": ticket["id"], "direction": "in"})
    # The message's own time (the ticket's is taken a moment apart and may fall in another second).
    assert stamp == stored["created_at"].replace(tzinfo=UTC).astimezone(SP).strftime("%Y-%m-%d %H:%M:%S")
    assert not any("nota interna" in cell for row in rows for cell in row)


def test_cells_that_start_a_formula_are_quoted_as_text() -> None:
    for value in ("=1+1", "+55 11", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert exports.cell(value) == "'" + value
    for value in ("Ana", "5511999", "", None, 42):
        assert exports.cell(value) == ("" if value is None else str(value))


async def test_days_are_whole_local_days_both_inclusive(client: httpx.AsyncClient, db: Any, tenant: Tenant) -> None:
    """São Paulo is UTC-3: 2025-03-01 03:00Z is the first instant of 1 March there."""
    base = {"reseller_id": tenant.id, "status": "espera", "client_name": "Borda", "client_phone": "5511"}
    stamps = {
        9001: datetime(2025, 3, 1, 2, 59, 59, tzinfo=UTC),  # 28 Feb, 23:59:59 local
        9002: datetime(2025, 3, 1, 3, 0, 0, tzinfo=UTC),  # 1 Mar, 00:00:00 local
        9003: datetime(2025, 3, 3, 2, 59, 59, 999000, tzinfo=UTC),  # 2 Mar, 23:59:59.999 local
        9004: datetime(2025, 3, 3, 3, 0, 0, tzinfo=UTC),  # 3 Mar, 00:00 local
    }
    await db.tickets.insert_many(
        [{**base, "_id": new_id(), "number": n, "created_at": at, "finalized_at": None} for n, at in stamps.items()]
    )
    rows = await _csv(client, "tickets.csv", tenant.headers, **{"from": "2025-03-01", "to": "2025-03-02"})
    assert [row[0] for row in rows[1:]] == ["9002", "9003"]
    assert rows[1][6] == "2025-03-01 00:00:00"
    rows = await _csv(client, "tickets.csv", tenant.headers, **{"from": "2025-02-28", "to": "2025-02-28"})
    assert [row[0] for row in rows[1:]] == ["9001"]


async def test_tenants_see_only_their_own_rows_and_roles_are_checked(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any, tenant: Tenant, other: Tenant
) -> None:
    theirs = await _client_ticket(client, other, db, message="segredo da outra revenda")
    mine = await _client_ticket(client, tenant, db, message="da minha revenda")
    for path in ("tickets.csv", "messages.csv"):
        text = "\n".join(";".join(row) for row in await _csv(client, path, tenant.headers, **_around_today()))
        assert theirs["client_phone"] not in text and mine["client_phone"] in text
        assert "segredo da outra revenda" not in text
    rows = await _csv(client, "tickets.csv", admin_headers, reseller_id=other.id, **_around_today())
    assert [row[0] for row in rows[1:]] == [str(theirs["number"])]
    period = _around_today()
    r = await client.get(f"{API}/exports/tickets.csv", params=period, headers=admin_headers)
    assert r.status_code == 422
    r = await client.get(
        f"{API}/exports/tickets.csv", params={**period, "reseller_id": new_id()}, headers=admin_headers
    )
    assert r.status_code == 404
    for path in ("tickets.csv", "messages.csv"):
        r = await client.get(f"{API}/exports/{path}", params=period, headers=tenant.agents[0]["headers"])
        assert r.status_code == 403
        assert (await client.get(f"{API}/exports/{path}", params=period)).status_code == 401
    # A reseller naming another tenant still gets its own.
    rows = await _csv(client, "tickets.csv", tenant.headers, reseller_id=other.id, **period)
    phones = {row[2] for row in rows[1:]}
    assert mine["client_phone"] in phones and theirs["client_phone"] not in phones


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-13-01", "to": "2026-12-31"},
        {"from": "01/02/2026", "to": "2026-02-03"},
        {"from": "2026-02-03", "to": "2026-02-01"},
        {"from": "2020-01-01", "to": "2026-01-01"},
        {"to": "2026-02-01"},
        {"from": "2026-02-01"},
        {"from": "2026-02-01", "to": "2026-02-02", "reseller_id": "nope"},
        {"from": "9999-12-31", "to": "9999-12-31"},  # the period's end lies past the calendar
    ],
)
async def test_bad_periods_are_422_and_change_nothing(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, params: dict[str, str]
) -> None:
    before = await collection_counts(db)
    for path in ("tickets.csv", "messages.csv"):
        r = await client.get(f"{API}/exports/{path}", params=params, headers=tenant.headers)
        assert r.status_code == 422, (params, r.text)
        assert "detail" in r.json()
    assert await collection_counts(db) == before


async def test_exports_past_the_bound_get_429_until_one_ends(
    app: Any, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """EXPORT_MAX_CONCURRENT (2 here) exports held open mid-stream: a third is refused before any
    byte; once one of them ends, the next is served."""
    await make_ticket(client, tenant)
    release = [asyncio.Event(), asyncio.Event()]
    started = [asyncio.Event(), asyncio.Event()]

    def holder(i: int) -> Any:
        async def on_chunk(chunk: bytes) -> None:
            started[i].set()
            await release[i].wait()

        return on_chunk

    async def ignore(chunk: bytes) -> None:
        return None

    period = _around_today()
    running = [
        asyncio.create_task(
            stream_get(app, f"{API}/exports/messages.csv", headers=tenant.headers, params=period, on_chunk=holder(i))
        )
        for i in range(2)
    ]
    await asyncio.wait_for(asyncio.gather(*(s.wait() for s in started)), 60)
    status, headers = await stream_get(
        app, f"{API}/exports/tickets.csv", headers=tenant.headers, params=period, on_chunk=ignore
    )
    assert status == 429 and int(headers["retry-after"]) > 0
    release[0].set()
    assert (await running[0])[0] == 200
    status, _ = await stream_get(
        app, f"{API}/exports/tickets.csv", headers=tenant.headers, params=period, on_chunk=ignore
    )
    assert status == 200
    release[1].set()
    assert (await running[1])[0] == 200
    assert app.state.export_gate.running == 0


async def test_a_client_gone_mid_file_gives_its_slot_back(app: Any, client: httpx.AsyncClient, tenant: Tenant) -> None:
    """The connection breaks at the first chunk (ASGI 2.4: `send` raises OSError, as uvicorn's
    does): the export stops and its slot is free again, so later exports are not refused."""
    await make_ticket(client, tenant)

    async def broken(chunk: bytes) -> None:
        raise OSError("connection reset by peer")

    async def ignore(chunk: bytes) -> None:
        return None

    period = _around_today()
    for _ in range(3):  # more than EXPORT_MAX_CONCURRENT: a leaked slot would refuse the last ones
        with pytest.raises(Exception):  # noqa: B017 - whatever the server stack raises for a gone client
            await stream_get(
                app,
                f"{API}/exports/messages.csv",
                headers=tenant.headers,
                params=period,
                on_chunk=broken,
                spec_version="2.4",
            )
        for _ in range(100):  # the abandoned body is closed by the event loop on its next turns
            if app.state.export_gate.running == 0:
                break
            await asyncio.sleep(0)
        assert app.state.export_gate.running == 0
    status, _ = await stream_get(
        app, f"{API}/exports/tickets.csv", headers=tenant.headers, params=period, on_chunk=ignore
    )
    assert status == 200
