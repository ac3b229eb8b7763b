"""The Prometheus first-response histogram (README, Metrics) observes each first reply once: only
the call whose first-reply claim made it first observes it (its entry's claim is the compactor's),
so a retried or concurrent recording of the same reply — here injected between the reply's
first-reply claim and its entry's append, or run beside it — adds nothing."""

import asyncio
from typing import Any

import httpx
import pytest

from backend.core import metrics
from backend.messages.models import Message
from backend.reports import rebuild, repository
from backend.reports import service as reports
from tests.factories import API, make_client_ticket, make_open_connection, make_tenant


def _observed() -> float:
    for metric in metrics.FIRST_RESPONSE.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return sample.value
    raise AssertionError("the histogram has no count")


async def test_a_first_reply_recorded_again_is_observed_once(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await make_tenant(client, admin_headers, departments=1, agents=1)
    conn = await make_open_connection(client, tenant, db)
    ticket = await make_client_ticket(client, tenant, db, connection=conn, signed=True)
    agent = tenant.agents[0]["headers"]
    assert (await client.post(f"{API}/tickets/{ticket['id']}/assume", headers=agent)).status_code == 200

    real_record = repository.record_month
    competed: list[str] = []

    async def interleaved(db_: Any, reseller_id: str, month: str, key: str, parts: list[dict[str, Any]]) -> None:
        if key.startswith("msg:") and not competed:
            competed.append(key)
            message = Message.model_validate(await db.messages.find_one({"_id": key[4:]}))
            stored = await db.tickets.find_one({"_id": message.ticket_id})
            await reports.record_message(db, message, stored)  # the retry, to its end, appends first
        await real_record(db_, reseller_id, month, key, parts)

    before = _observed()
    monkeypatch.setattr(repository, "record_month", interleaved)
    r = await client.post(f"{API}/tickets/{ticket['id']}/messages", headers=agent, json={"body": "bom dia"})
    assert r.status_code == 201, r.text
    assert competed == [f"msg:{r.json()['id']}"]  # the competitor ran inside the reply's record
    assert _observed() == before + 1

    # Recorded again later (a settle, a redelivered delivery): still once.
    message = Message.model_validate(await db.messages.find_one({"_id": r.json()["id"]}))
    stored = await db.tickets.find_one({"_id": ticket["id"]})
    for _ in range(2):
        await reports.record_message(db, message, stored)
    await asyncio.gather(*(reports.record_message(db, message, stored) for _ in range(3)))
    assert _observed() == before + 1
    summary = (await client.get(f"{API}/reports/summary", headers=tenant.headers)).json()
    first_in = await db.messages.find_one({"ticket_id": ticket["id"], "direction": "in"})
    expected = (reports._epoch_ms(message.created_at) - reports._epoch_ms(first_in["created_at"])) / 1000
    assert summary["messages_out"] == 1 and summary["first_response_seconds"]["median"] == expected
    found = await rebuild.audit(db, tenant.id)
    assert found.clean, (found.month_differences, found.waiting_differences, found.corrupt)
