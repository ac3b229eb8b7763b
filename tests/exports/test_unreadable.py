"""A stored document an export reads that does not read (an older version's shape, an operator's
slip) is passed over and logged with its `_id`: the file still holds every other row, instead of
ending mid-stream at the bad one."""

import csv
import io
from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from structlog.testing import capture_logs

from backend.core.ids import new_id
from tests.factories import API, Tenant, make_tenant, make_ticket

SP = ZoneInfo("America/Sao_Paulo")


def _around_today() -> dict[str, str]:
    today = datetime.now(SP).date()
    return {"from": (today - timedelta(days=1)).isoformat(), "to": (today + timedelta(days=1)).isoformat()}


async def _csv(client: httpx.AsyncClient, path: str, tenant: Tenant) -> list[list[str]]:
    r = await client.get(f"{API}/exports/{path}", params=_around_today(), headers=tenant.headers)
    assert r.status_code == 200, r.text
    return list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"), newline=""), delimiter=";"))


def _passed_over(logs: list[MutableMapping[str, Any]], what: str) -> list[str]:
    return [e["id"] for e in logs if e["event"] == f"{what} unreadable; passed over"]


async def test_the_tickets_export_passes_over_an_unreadable_ticket_and_exports_the_rest(
    client: httpx.AsyncClient, db: Any, admin_headers: dict[str, str]
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    made = [await make_ticket(client, tenant) for _ in range(3)]
    bad = made[1]  # the middle one: rows come before and after it
    await db.tickets.update_one({"_id": bad["id"]}, {"$set": {"number": f"#{bad['number']}"}})

    with capture_logs() as logs:
        rows = await _csv(client, "tickets.csv", tenant)

    assert [row[0] for row in rows[1:]] == [str(t["number"]) for t in made if t is not bad]
    assert _passed_over(logs, "tickets") == [bad["id"]]


async def test_the_messages_export_passes_over_an_unreadable_message_and_ticket_and_exports_the_rest(
    client: httpx.AsyncClient, db: Any, admin_headers: dict[str, str]
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    tickets = [await make_ticket(client, tenant) for _ in range(2)]
    now = datetime.now(UTC)
    written = []
    for n, body in enumerate(["um", "dois", "três", "quatro"]):
        doc = {
            "_id": new_id(),
            "reseller_id": tenant.id,
            "ticket_id": tickets[n // 2]["id"],
            "direction": "in",
            "sender_type": "client",
            "type": "text",
            "body": body,
            "status": "received",
            "created_at": now + timedelta(seconds=n),
        }
        await db.messages.insert_one(doc)
        written.append(doc["_id"])
    await db.messages.update_one({"_id": written[1]}, {"$set": {"body": ["dois"]}})
    # The second ticket does not read either: its messages are still rows, without its cells.
    await db.tickets.update_one({"_id": tickets[1]["id"]}, {"$set": {"number": f"#{tickets[1]['number']}"}})

    with capture_logs() as logs:
        rows = await _csv(client, "messages.csv", tenant)

    mine = [(row[1], row[8]) for row in rows[1:] if row[8] in {"um", "dois", "três", "quatro"}]
    assert mine == [(str(tickets[0]["number"]), "um"), ("", "três"), ("", "quatro")]
    assert _passed_over(logs, "messages") == [written[1]]
    assert _passed_over(logs, "tickets") == [tickets[1]["id"]]
