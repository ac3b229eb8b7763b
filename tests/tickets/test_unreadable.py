"""One ticket document that does not read as a ticket (an older version's shape, an operator's
slip) is passed over by the inbox, which still shows and pages through every other ticket; and
an owed release that cannot be paid stops no sweep.

The process's own sweep is off: the sweep test runs the loop (`sweep.run_until`) itself, fast."""

import asyncio
from datetime import datetime
from typing import Any

import httpx
import pytest

from backend.core.config import Settings
from backend.tickets import service as tickets
from backend.tickets import sweep
from tests.conftest import make_settings
from tests.factories import API, Tenant, collect_pages, make_tenant, make_ticket
from tests.fakes.harness import wait_for
from tests.tickets.projection_support import log_assume_without_projecting


@pytest.fixture(scope="module")
def settings(mongo_url: str, db_name: str) -> Settings:
    return make_settings(mongo_url, db_name, TICKET_SWEEP_ENABLED=False)


async def _unreadable(db: Any, ticket_id: str) -> None:
    """An operator's slip: a field the ticket no longer reads with."""
    number = (await db.tickets.find_one({"_id": ticket_id}))["number"]
    await db.tickets.update_one({"_id": ticket_id}, {"$set": {"number": f"#{number}"}})


async def test_the_inbox_passes_over_an_unreadable_ticket_and_pages_past_it(
    client: httpx.AsyncClient, db: Any, admin_headers: dict[str, str]
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)  # its inbox holds only these tickets
    made = [(await make_ticket(client, tenant))["id"] for _ in range(5)]
    newest_first = made[::-1]
    bad = newest_first[2]  # the third: read right after the first page's last ticket
    await _unreadable(db, bad)

    for headers in (tenant.headers, tenant.agents[0]["headers"]):
        listed = await collect_pages(client, headers, f"{API}/tickets", limit=2)
        assert [t["id"] for t in listed] == [t for t in newest_first if t != bad]
        r = await client.get(f"{API}/tickets", params={"limit": 50}, headers=headers)
        assert r.status_code == 200, r.text
        assert [t["id"] for t in r.json()["items"]] == [t for t in newest_first if t != bad]


async def test_a_sweep_whose_owed_releases_fail_still_moves_on_and_repairs_the_tickets_after(
    client: httpx.AsyncClient,
    db: Any,
    admin_headers: dict[str, str],
    mongo_url: str,
    db_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Paying the owed releases fails at every sweep (here made to): each sweep still ends, its
    span moves on, and a ticket left behind later is repaired by a later sweep."""
    tenant: Tenant = await make_tenant(client, admin_headers, agents=1)
    spans: list[datetime] = []
    releases = 0
    original = sweep.sweep_once

    async def recorded(db_: Any, *, since: datetime, **kwargs: Any) -> sweep.Swept:
        spans.append(since)
        return await original(db_, since=since, **kwargs)

    async def failing(*_: Any, **__: Any) -> int:
        nonlocal releases
        releases += 1
        raise RuntimeError("user_releases unreadable")

    monkeypatch.setattr(sweep, "sweep_once", recorded)
    monkeypatch.setattr(tickets, "release_owed", failing)
    fast = make_settings(mongo_url, db_name, TICKET_SWEEP_SECONDS=0.2, TICKET_SWEEP_LOOKBACK_SECONDS=0.1)
    stop = asyncio.Event()
    loop = asyncio.create_task(sweep.run_until(db, fast, stop))
    try:
        await wait_for(lambda: _true(releases >= 2), timeout=30)
        ticket_id = (await make_ticket(client, tenant))["id"]
        await log_assume_without_projecting(db, ticket_id, tenant.agents[0])  # its writer died

        async def repaired() -> bool:
            doc = await db.tickets.find_one({"_id": ticket_id})
            return bool(doc["version"] == 2 and doc["status"] == "atendendo")

        await wait_for(repaired, timeout=30)
    finally:
        stop.set()
        await asyncio.wait_for(loop, timeout=60)
    assert loop.exception() is None
    assert len(set(spans)) >= 3 and spans == sorted(spans), "every sweep's span moved on"


async def _true(value: bool) -> bool:
    return value
