"""/metrics carries the business figures (README, Metrics) with the right values after a scripted
scenario: messages per tenant and direction, tickets by state, the outbox backlog and its oldest
pending reply, each webhook lane's backlog and lag (ages against a fixed clock)."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from backend.connections.models import Connection
from backend.core import clock
from backend.core.config import Settings
from backend.core.ids import new_id
from backend.outbound import backlog
from backend.outbound import service as outbound
from backend.scheduled import repository as scheduled_store
from backend.scheduled import service as scheduled
from backend.scheduled.models import ScheduledMessage
from backend.tickets.models import Ticket
from backend.webhooks import lag
from backend.webhooks import service as webhooks
from tests.conftest import make_settings
from tests.factories import API, Tenant, assume, make_client_ticket, make_open_connection, make_tenant

T0 = datetime(2026, 5, 4, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def settings(mongo_url: str, db_name: str) -> Settings:
    # No background worker or processor: the queues stay exactly as the scenario leaves them.
    return make_settings(
        mongo_url,
        db_name,
        OUTBOUND_WORKER_ENABLED=False,
        WEBHOOK_PROCESSOR_ENABLED=False,
        TICKET_SWEEP_ENABLED=False,
        SCHEDULED_MESSAGES_ENABLED=False,
        METRICS_REFRESH_SECONDS=0,
    )


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# First in this module: the replies of the tests below are queued too (their tickets reach their clients and
# no worker here sends them), and the queue is read in order from its start.
async def test_outbox_backlog_and_oldest_pending_reply(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only what the outbox reads of a ticket.
    ticket = Ticket.model_construct(id=new_id(), reseller_id=tenant.id, channel=new_id(), client_phone="5511988887777")
    statuses = ["sent", "pending", "pending"]
    for n, status in enumerate(statuses):
        message_id = new_id()
        monkeypatch.setattr(outbound, "utcnow", lambda n=n: T0 + timedelta(seconds=30 * n))
        await outbound.enqueue(db, message_id=message_id, ticket=ticket)
        await db.messages.insert_one(
            {
                "_id": message_id,
                "ticket_id": ticket.id,
                "reseller_id": tenant.id,
                "direction": "out",
                "sender_type": "agent",
                "status": status,
                "created_at": T0 + timedelta(seconds=30 * n),
            }
        )
    monkeypatch.setattr(backlog, "utcnow", lambda: T0 + timedelta(seconds=150))
    samples = await scrape(client)
    assert value(samples, "iaze_outbox_backlog") == 3
    # The first entry is settled; the oldest pending was queued at T0 + 30 s.
    assert value(samples, "iaze_outbox_oldest_pending_seconds") == 120


async def test_messages_and_tickets_by_state_per_tenant(client: httpx.AsyncClient, db: Any, tenant: Tenant) -> None:
    agent = tenant.agents[0]
    # Opened by the clients on WhatsApp: each opening message is the client's, and a reply can reach them.
    number = await make_open_connection(client, tenant, db)
    first = await make_client_ticket(client, tenant, db, connection=number)
    second = await make_client_ticket(client, tenant, db, connection=number)
    await assume(client, agent["headers"], first["id"])
    r = await client.post(f"{API}/tickets/{first['id']}/messages", json={"body": "Olá"}, headers=agent["headers"])
    assert r.status_code == 201
    r = await client.post(f"{API}/tickets/{second['id']}/notes", json={"body": "nota"}, headers=tenant.headers)
    assert r.status_code == 201
    samples = await scrape(client)
    t = tenant.id
    assert value(samples, "iaze_messages_total", reseller_id=t, direction="in") == 2
    assert value(samples, "iaze_messages_total", reseller_id=t, direction="out") == 1
    assert value(samples, "iaze_messages_total", reseller_id=t, direction="note") == 0
    assert [value(samples, "iaze_tickets", reseller_id=t, status=s) for s in ("espera", "atendendo", "finalizado")] == [
        1,
        1,
        0,
    ]
    r = await client.post(f"{API}/tickets/{first['id']}/finalize", headers=agent["headers"])
    assert r.status_code == 200
    samples = await scrape(client)
    assert [value(samples, "iaze_tickets", reseller_id=t, status=s) for s in ("espera", "atendendo", "finalizado")] == [
        1,
        0,
        1,
    ]


async def test_webhook_lane_backlog_and_lag(
    client: httpx.AsyncClient, db: Any, settings: Settings, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = Connection.model_construct(id=new_id(), reseller_id=tenant.id, provider="evolution")  # what store reads
    monkeypatch.setattr(webhooks, "utcnow", lambda: T0)
    _, raw_id = await webhooks.store(db, conn, event_hint="messages.upsert", body=b"{}", lanes=settings.WEBHOOK_LANES)
    raw = await db.webhook_events_raw.find_one({"_id": raw_id})
    monkeypatch.setattr(lag, "utcnow", lambda: T0 + timedelta(seconds=45))
    samples = await scrape(client)
    lane = str(raw["lane"])
    assert value(samples, "iaze_webhook_lane_backlog", lane=lane) == 1
    assert value(samples, "iaze_webhook_lane_lag_seconds", lane=lane) == 45
    others = [str(n) for n in range(settings.WEBHOOK_LANES) if str(n) != lane]
    assert {value(samples, "iaze_webhook_lane_lag_seconds", lane=n) for n in others} == {0}
    assert {value(samples, "iaze_webhook_lane_backlog", lane=n) for n in others} == {0}


async def test_first_response_is_observed_once_at_the_first_agent_reply(
    client: httpx.AsyncClient, db: Any, tenant: Tenant
) -> None:
    """Client writes at t, the agent assumes at t+60 and replies at t+200 and t+500: one
    observation, of 200 s (a scripted clock; the reports' first-response claims decide "first")."""
    agent = tenant.agents[0]
    before = await scrape(client)
    start = datetime.now(UTC)
    now = [start]
    with clock.override(lambda: now[0]):
        ticket = await make_client_ticket(client, tenant, db)  # the client's message, on a reachable number
        now[0] = start + timedelta(seconds=60)
        await assume(client, agent["headers"], ticket["id"])
        for at in (200, 500):
            now[0] = start + timedelta(seconds=at)
            r = await client.post(
                f"{API}/tickets/{ticket['id']}/messages", json={"body": "Oi"}, headers=agent["headers"]
            )
            assert r.status_code == 201
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("iaze_first_response_seconds_count") == 1
    assert delta("iaze_first_response_seconds_sum") == 200
    assert delta("iaze_first_response_seconds_bucket", le="120.0") == 0
    assert delta("iaze_first_response_seconds_bucket", le="300.0") == 1


async def test_the_soonest_late_scheduled_message_is_how_late_the_due_pass_is(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No due pass runs in this module: a schedule whose time passed stays waiting, as it would
    behind a pass that stopped. Settled ones and later ones do not count."""
    monkeypatch.setattr(scheduled, "utcnow", lambda: T0)
    assert value(await scrape(client), "iaze_scheduled_overdue_seconds") == 0
    for offset, status in [(-90, "scheduled"), (-30, "scheduled"), (-600, "sent"), (300, "scheduled")]:
        await scheduled_store.insert(
            db,
            ScheduledMessage(
                id=new_id(),
                reseller_id=tenant.id,
                ticket_id=new_id(),
                client_id=new_id(),
                author_id=tenant.agents[0]["id"],
                author_name="Agente",
                body="lembrete",
                send_at=T0 + timedelta(seconds=offset),
                status=status,
                created_at=T0 - timedelta(hours=1),
                updated_at=T0 - timedelta(hours=1),
            ),
        )
    assert value(await scrape(client), "iaze_scheduled_overdue_seconds") == 90
