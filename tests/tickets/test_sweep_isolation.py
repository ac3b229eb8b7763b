"""A ticket (or an owed release) the projection sweep fails on at every pass (a document only an operator can mend)
never holds back the ones swept after it, and is tried again at the next sweeps, even once
their span has moved past what brought it to the sweep.

The process's own sweep is off: the test runs the loop (`sweep.run_until`) itself, fast."""

import asyncio
from datetime import datetime
from typing import Any

import httpx
import pytest

from backend.core.clock import as_utc, utcnow
from backend.core.config import Settings
from backend.tickets import service as tickets
from backend.tickets import sweep
from backend.users import repository as users
from tests.conftest import make_settings
from tests.factories import Tenant, assume, make_tenant, make_ticket
from tests.fakes.harness import wait_for
from tests.tickets.projection_support import log_assume_without_projecting


@pytest.fixture(scope="module")
def settings(mongo_url: str, db_name: str) -> Settings:
    return make_settings(mongo_url, db_name, TICKET_SWEEP_ENABLED=False)


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=2)


async def test_a_ticket_the_sweep_fails_on_holds_back_no_other_and_is_tried_again_after_its_span(
    client: httpx.AsyncClient,
    db: Any,
    tenant: Tenant,
    mongo_url: str,
    db_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = [(await make_ticket(client, tenant))["id"] for _ in range(2)]
    bad, good = sorted(made)  # the sweep goes in id order: the failing one comes first
    agent = tenant.agents[0]
    for ticket_id in made:  # each assume logged by a writer that died before the ticket
        await log_assume_without_projecting(db, ticket_id, agent)
    # An operator's slip: a field the ticket no longer reads with. The sweep fails on it.
    number = (await db.tickets.find_one({"_id": bad}))["number"]
    await db.tickets.update_one({"_id": bad}, {"$set": {"number": f"#{number}"}})

    assumed = max([(await db.ticket_events.find_one({"ticket_id": t, "version": 2}))["at"] for t in made])
    spans: list[datetime] = []  # each finished sweep's `since`
    real_sweep = sweep.sweep_once

    async def recorded(db_: Any, *, since: datetime, owed: Any) -> sweep.Swept:
        swept = await real_sweep(db_, since=since, owed=owed)
        spans.append(since)
        return swept

    monkeypatch.setattr(sweep, "sweep_once", recorded)
    fast = make_settings(mongo_url, db_name, TICKET_SWEEP_SECONDS=0.2, TICKET_SWEEP_LOOKBACK_SECONDS=0.1)
    stop = asyncio.Event()
    loop = asyncio.create_task(sweep.run_until(db, fast, stop))
    try:

        async def version(ticket_id: str) -> int:
            return int((await db.tickets.find_one({"_id": ticket_id}))["version"])

        await wait_for(lambda: _is(version(good), 2), timeout=30)

        async def past_the_assumes() -> bool:  # a sweep whose span no longer reaches them ran
            return any(as_utc(at) > as_utc(assumed) for at in spans)

        await wait_for(past_the_assumes, timeout=30)
        assert await version(bad) == 1
        await db.tickets.update_one({"_id": bad}, {"$set": {"number": number}})  # mended
        await wait_for(lambda: _is(version(bad), 2), timeout=30)
        assert (await db.tickets.find_one({"_id": bad}))["status"] == "atendendo"
    finally:
        stop.set()
        await asyncio.wait_for(loop, timeout=60)
    assert loop.exception() is None


async def _is(value: Any, wanted: Any) -> bool:
    return bool(await value == wanted)


async def test_an_owed_release_the_sweep_fails_on_holds_back_no_other_persons(
    client: httpx.AsyncClient, db: Any, tenant: Tenant
) -> None:
    """Two people deactivated by processes killed before their releases (user written inactive,
    mark owed): the first one's held ticket does not read, so paying its release fails; the
    second one's conversation still goes back to its queue, and its mark is paid."""
    held = {}
    for agent in tenant.agents:
        ticket_id = (await make_ticket(client, tenant))["id"]
        await assume(client, agent["headers"], ticket_id)
        held[agent["id"]] = ticket_id
    first, second = (a["id"] for a in tenant.agents)
    number = (await db.tickets.find_one({"_id": held[first]}))["number"]
    await db.tickets.update_one({"_id": held[first]}, {"$set": {"number": f"#{number}"}})
    for agent_id in (first, second):  # the first one's mark written first: it is paid first
        user = await users.get_internal(db, agent_id)
        assert user is not None
        await users.owe_release(db, user, f"deactivation-{agent_id}", utcnow())
        await db.users.update_one({"_id": agent_id}, {"$set": {"active": False}})

    await tickets.release_owed(db, paid_if_active_before=utcnow())

    second_ticket = await db.tickets.find_one({"_id": held[second]})
    assert (second_ticket["status"], second_ticket["agent_id"]) == ("espera", None)
    assert (await db.user_releases.find_one({"_id": second}))["owed"] is None
    # The failing one stays owed, for the next sweep once an operator mends the ticket.
    assert (await db.user_releases.find_one({"_id": first}))["owed"] == f"deactivation-{first}"
    await db.tickets.update_one({"_id": held[first]}, {"$set": {"number": number}})
    await tickets.release_owed(db, paid_if_active_before=utcnow())
    assert (await db.tickets.find_one({"_id": held[first]}))["status"] == "espera"
    assert (await db.user_releases.find_one({"_id": first}))["owed"] is None
