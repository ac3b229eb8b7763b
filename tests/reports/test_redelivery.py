"""Redelivered webhooks count once in the reports: the same provider message delivered again,
sequentially and concurrently, through the real webhook route, processor and fake Evolution
provider, is one message in and one ticket opened — and a client's rating of its finalized
ticket one rating; the rebuild agrees."""

import asyncio
from datetime import date, timedelta
from typing import Any

import httpx

from backend.reports import rebuild
from tests.automation.helpers import left
from tests.factories import API, make_tenant, unique_phone
from tests.fakes.harness import (
    FakeEvolution,
    app,
    backend_port,
    evolution,
    make_connection,
    settings,
    settings_overrides,
)
from tests.webhooks.helpers import settled, text_upsert

__all__ = ["app", "backend_port", "evolution", "settings", "settings_overrides"]  # the harness's fixtures

HOOK = f"{API}/webhooks/whatsapp"


def _upsert(phone: str, key_id: str, text: str) -> dict[str, Any]:
    return text_upsert(phone, key_id, text, name="Maria", stamped=True)


async def test_a_redelivered_webhook_counts_once(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    token = (await db.whatsapp_connections.find_one({"_id": conn["id"]}))["webhook_token"]
    headers = {"X-Webhook-Token": token}
    phone = unique_phone()
    first, second = _upsert(phone, "3EB0REPORT1" + phone, "oi"), _upsert(phone, "3EB0REPORT2" + phone, "alô")
    for payload in (first, first, second):
        await settled(db, await client.post(f"{HOOK}/{conn['id']}", json=payload, headers=headers))
    acks = await asyncio.gather(
        *(client.post(f"{HOOK}/{conn['id']}", json=p, headers=headers) for p in [first, second] * 4)
    )
    for ack in acks:
        await settled(db, ack)

    today = date.today()
    params = {"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))}
    r = await client.get(f"{API}/reports/summary", params=params, headers=tenant.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["opened"], body["messages_in"], body["messages_out"], body["waiting_now"]) == (1, 2, 0, 1)
    r = await client.get(
        f"{API}/reports/summary", params={**params, "connection_id": conn["id"]}, headers=tenant.headers
    )
    assert (r.json()["opened"], r.json()["messages_in"]) == (1, 2)
    found = await rebuild.audit(db, tenant.id)
    assert found.clean, (found.month_differences, found.waiting_differences, found.corrupt)


async def test_a_redelivered_rating_counts_once(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    config = {"csat_enabled": True, "csat_window_hours": 2, "csat_message": "De 1 a 5, que nota?"}
    r = await client.patch(f"{API}/reseller-config", json=config, headers=tenant.headers)
    assert r.status_code == 200, r.text
    conn = await make_connection(client, tenant, evolution)
    token = (await db.whatsapp_connections.find_one({"_id": conn["id"]}))["webhook_token"]
    headers = {"X-Webhook-Token": token}
    phone = unique_phone()
    await settled(
        db, await client.post(f"{HOOK}/{conn['id']}", json=_upsert(phone, "3EB0RATE0" + phone, "oi"), headers=headers)
    )
    ticket = await db.tickets.find_one({"reseller_id": tenant.id, "client_phone": phone})
    agent = tenant.agents[0]
    for action in ("assume", "finalize"):
        r = await client.post(f"{API}/tickets/{ticket['_id']}/{action}", headers=agent["headers"])
        assert r.status_code == 200, r.text

    await left(db, ticket["_id"], "survey")  # the client answers the question once it has it
    rating = _upsert(phone, "3EB0RATE1" + phone, "4")
    for _ in range(3):
        await settled(db, await client.post(f"{HOOK}/{conn['id']}", json=rating, headers=headers))
    acks = await asyncio.gather(*(client.post(f"{HOOK}/{conn['id']}", json=rating, headers=headers) for _ in range(4)))
    for ack in acks:
        await settled(db, ack)
    assert (await db.tickets.find_one({"_id": ticket["_id"]}))["rating"] == 4
    assert await db.tickets.count_documents({"reseller_id": tenant.id}) == 1  # the digit opened nothing

    once = {"average": 4.0, "count": 1, "distribution": {"1": 0, "2": 0, "3": 0, "4": 1, "5": 0}}
    today = date.today()
    params = {"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))}
    r = await client.get(f"{API}/reports/summary", params=params, headers=tenant.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    # The answer is a message in (filed under the ticket it rates), the survey question a message out.
    assert (body["opened"], body["finalized"], body["messages_in"], body["satisfaction"]) == (1, 1, 2, once)
    r = await client.get(f"{API}/reports/agents", params=params, headers=tenant.headers)
    assert [(row["agent_id"], row["satisfaction"]) for row in r.json()["items"]] == [(agent["id"], once)]
    found = await rebuild.audit(db, tenant.id)
    assert found.clean, (found.month_differences, found.waiting_differences, found.corrupt)
