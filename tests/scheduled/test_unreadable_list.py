"""The tenant's scheduled messages list ("Agendamentos") passes over a stored schedule that does
not read (an older version's shape, an operator's slip), logged with its `_id`, and pages past it,
instead of answering 500 to everyone who opens it; one whose `send_at` is no time (sorted before
every time) holds back none of the others either."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from structlog.testing import capture_logs

from backend.core.ids import new_id
from backend.scheduled.models import ScheduledMessage
from tests.factories import API, collect_pages, make_tenant

UNREADABLE = "scheduled message unreadable; passed over"


async def test_the_list_passes_over_unreadable_schedules_and_pages_past_them(
    client: httpx.AsyncClient, db: Any, admin_headers: dict[str, str]
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    soon, now = datetime.now(UTC) + timedelta(hours=1), datetime.now(UTC)
    ids = []
    for n in range(6):
        schedule = ScheduledMessage(
            id=new_id(),
            reseller_id=tenant.id,
            ticket_id=new_id(),
            client_id=new_id(),
            author_id=tenant.owner_id,
            author_name="Dono",
            body=f"lembrete {n}",
            send_at=soon + timedelta(minutes=n),
            status="scheduled",
            created_at=now,
            updated_at=now,
        )
        await db.scheduled_messages.insert_one(schedule.stored())
        ids.append(schedule.id)
    no_time = ids[:2]  # a slip's send_at: sorted before every time, so read first
    await db.scheduled_messages.update_one({"_id": no_time[0]}, {"$set": {"send_at": None}})
    await db.scheduled_messages.update_one({"_id": no_time[1]}, {"$set": {"send_at": "amanhã"}})
    bad_body = ids[3]  # between two readable ones
    await db.scheduled_messages.update_one({"_id": bad_body}, {"$set": {"body": 5}})
    readable = [ids[2], ids[4], ids[5]]

    with capture_logs() as logs:
        r = await client.get(f"{API}/scheduled-messages", headers=tenant.headers)
        assert r.status_code == 200, r.text
        assert [s["id"] for s in r.json()["items"]] == readable
        # Pages of one: the first read is nothing but the two without a time.
        listed = await collect_pages(client, tenant.headers, f"{API}/scheduled-messages", limit=1)
    assert [s["id"] for s in listed] == readable
    assert {e["id"] for e in logs if e["event"] == UNREADABLE} == {*no_time, bad_body}
