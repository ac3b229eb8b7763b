"""The due pass reads every tenant's schedules at once: a stored schedule that no longer reads as
one (a field it lacks), or one whose delivery fails at every pass, is passed over, and the
schedules after it are sent. Through the real API,
the outbox worker and the fake Evolution as its own process; the background pass is off here,
so the pass that runs is the test's own, at a `now` past every schedule's time."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from backend.core.clock import utcnow
from backend.scheduled import service
from tests.factories import make_tenant
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.outbound.helpers import held_ticket, unsigned

LATER = timedelta(hours=2)  # the pass's `now`: past every schedule here


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"SCHEDULED_MESSAGES_ENABLED": False}


@pytest.mark.parametrize("unreadable", [1, 2])
async def test_due_schedules_that_do_not_read_are_passed_over_and_the_next_one_is_sent(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
    unreadable: int,
) -> None:
    if unreadable > 1:  # a whole batch of them ahead: the pass reads on past them
        monkeypatch.setattr(service, "DUE_BATCH", unreadable)
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    send_at = datetime.now(UTC) + timedelta(hours=1)
    r = await client.post(
        f"/api/v1/tickets/{ticket_id}/scheduled-messages",
        json={"body": "lembrete: a visita é amanhã", "send_at": send_at.isoformat()},
        headers=agent,
    )
    assert r.status_code == 201, r.text
    schedule_id = r.json()["id"]
    # Sooner than it, so read first; no ticket, author nor body: they fail validation.
    bad = [f"unreadable-{schedule_id}-{n}" for n in range(unreadable)]
    for bad_id in bad:
        doc = {
            "_id": bad_id,
            "reseller_id": tenant.id,
            "status": "scheduled",
            "send_at": send_at - timedelta(minutes=30),
        }
        await db.scheduled_messages.insert_one(doc)

    assert await service.run_due(db, utcnow() + LATER) == 1

    message_id = service.message_id_of(schedule_id)
    assert (await db.scheduled_messages.find_one({"_id": schedule_id}))["status"] == "sent"
    assert (await db.messages.find_one({"_id": message_id}))["ticket_id"] == ticket_id
    await wait_for(lambda: db.messages.find_one({"_id": message_id, "status": "sent"}), timeout=30)
    sent = [unsigned(s["text"]) for s in await evolution.sent() if s["number"] == phone]
    assert sent.count("lembrete: a visita é amanhã") == 1
    # Left as it was, for an operator: still waiting, its lateness shown by the overdue gauge.
    for bad_id in bad:
        assert (await db.scheduled_messages.find_one({"_id": bad_id}))["status"] == "scheduled"


async def test_schedules_that_fail_at_every_pass_never_hold_back_the_ones_due_after_them(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A whole batch of schedules whose delivery raises every time (a bug, or data only an
    operator can mend) ahead of a good one: the pass reads on after them and sends it."""
    monkeypatch.setattr(service, "DUE_BATCH", 2)
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    start = datetime.now(UTC) + timedelta(hours=1)
    ids = []
    for n in range(4):  # three failing ones, then the good one, a minute apart
        r = await client.post(
            f"/api/v1/tickets/{ticket_id}/scheduled-messages",
            json={"body": f"lembrete {n}", "send_at": (start + timedelta(minutes=n)).isoformat()},
            headers=agent,
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    failing, good = set(ids[:3]), ids[3]
    real_deliver = service.deliver

    async def deliver(db_: Any, schedule: Any) -> Any:
        if schedule.id in failing:
            raise RuntimeError("this one fails at every pass")
        return await real_deliver(db_, schedule)

    monkeypatch.setattr(service, "deliver", deliver)

    for _ in range(2):  # and again at the next pass: the failing ones are tried again, still first
        await service.run_due(db, utcnow() + LATER)
    assert (await db.scheduled_messages.find_one({"_id": good}))["status"] == "sent"
    message_id = service.message_id_of(good)
    await wait_for(lambda: db.messages.find_one({"_id": message_id, "status": "sent"}), timeout=30)
    sent = [unsigned(s["text"]) for s in await evolution.sent() if s["number"] == phone]
    assert sent == ["lembrete 3"]
    for schedule_id in failing:  # left waiting for the next pass, not settled as anything
        assert (await db.scheduled_messages.find_one({"_id": schedule_id}))["status"] == "scheduled"
