"""A ticket event's report entries (reports/service.py `record_ticket_event`): its month entry and
its live-queue entry belong to different buckets, so they are appended together and go out as one
insert (core/seqlog.py), and the figures are those of one entry after the other."""

import httpx
import pytest

from backend.audit import service as events
from backend.core.db import Database
from backend.reports import repository
from backend.reports import service as reports
from tests.factories import Tenant, make_client_ticket, make_open_connection, make_tenant
from tests.monitoring import recorded


@pytest.fixture
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, departments=1, agents=1)


async def test_an_events_month_and_queue_entries_go_out_in_one_insert(
    client: httpx.AsyncClient, db: Database, mongo_url: str, tenant: Tenant
) -> None:
    conn = await make_open_connection(client, tenant, db)
    ticket_id = (await make_client_ticket(client, tenant, db, connection=conn))["id"]
    assert ticket_id in (await repository.live(db, tenant.id)).get("waiting", {})
    await client.post(f"/api/v1/tickets/{ticket_id}/assume", headers=tenant.agents[0]["headers"])
    assert ticket_id not in (await repository.live(db, tenant.id)).get("waiting", {})

    async with recorded(db, mongo_url) as (other, recorder):  # another process records them again
        for version in (1, 2):  # into espera, out of it
            recorder.commands.clear()
            event = await events.get_internal(db, ticket_id, version)
            assert event is not None
            await reports.record_ticket_event(other, event, None)
            inserts = [c for c in recorder.named("insert") if c["insert"] == repository.ENTRIES]
            buckets = [{d["bucket"] for d in c["documents"]} for c in inserts]
            assert len(inserts) == 1 and len(buckets[0]) == 2, buckets  # the month's and the queue's
    # Repeats of contributions already counted: the figures do not move.
    assert ticket_id not in (await repository.live(db, tenant.id)).get("waiting", {})
