"""A deactivated person's held ticket whose document does not read holds back none of its other
conversations: they go back to their queues, and the release stays owed until it is mended.

The process's own sweep is off, so that only the test pays a release."""

from typing import Any

import httpx
import pytest

from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.tickets import service as tickets
from backend.users import repository as users
from tests.conftest import make_settings
from tests.factories import API, assume, make_tenant, make_ticket


@pytest.fixture(scope="module")
def settings(mongo_url: str, db_name: str) -> Settings:
    return make_settings(mongo_url, db_name, TICKET_SWEEP_ENABLED=False)


async def test_an_unreadable_held_ticket_holds_back_no_other_hand_back_and_keeps_the_release_owed(
    client: httpx.AsyncClient, db: Any, admin_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    agent = tenant.agents[0]
    held = sorted([(await make_ticket(client, tenant))["id"] for _ in range(5)])
    for ticket_id in held:
        await assume(client, agent["headers"], ticket_id)
    bad = held[1]
    number = (await db.tickets.find_one({"_id": bad}))["number"]
    await db.tickets.update_one({"_id": bad}, {"$set": {"number": f"#{number}"}})
    user = await users.get_internal(db, agent["id"])
    assert user is not None
    await users.owe_release(db, user, "deactivation-1", utcnow())
    await db.users.update_one({"_id": agent["id"]}, {"$set": {"active": False}})
    monkeypatch.setattr(tickets, "RELEASE_BATCH", 2)  # the bad one ends the first page

    await tickets.release_owed(db, paid_if_active_before=utcnow())

    for ticket_id in held:
        doc = await db.tickets.find_one({"_id": ticket_id})
        wanted = ("atendendo", agent["id"]) if ticket_id == bad else ("espera", None)
        assert (doc["status"], doc["agent_id"]) == wanted
    assert (await db.user_releases.find_one({"_id": agent["id"]}))["owed"] == "deactivation-1"
    await db.tickets.update_one({"_id": bad}, {"$set": {"number": number}})  # mended
    await tickets.release_owed(db, paid_if_active_before=utcnow())
    assert (await db.tickets.find_one({"_id": bad}))["status"] == "espera"
    assert (await db.user_releases.find_one({"_id": agent["id"]}))["owed"] is None


async def test_a_deactivation_meeting_an_unreadable_held_ticket_stands_and_leaves_its_release_owed(
    client: httpx.AsyncClient, db: Any, admin_headers: dict[str, str]
) -> None:
    """The owner deactivates an agent one of whose held tickets does not read: the request is
    answered as done (the person is inactive, every other ticket is back in its queue), not 500,
    and the release stays owed, for the sweep to pay once the ticket is mended."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    agent = tenant.agents[0]
    held = sorted([(await make_ticket(client, tenant))["id"] for _ in range(3)])
    for ticket_id in held:
        await assume(client, agent["headers"], ticket_id)
    bad = held[0]
    number = (await db.tickets.find_one({"_id": bad}))["number"]
    await db.tickets.update_one({"_id": bad}, {"$set": {"number": f"#{number}"}})

    r = await client.patch(f"{API}/users/{agent['id']}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False
    for ticket_id in held[1:]:
        doc = await db.tickets.find_one({"_id": ticket_id})
        assert (doc["status"], doc["agent_id"]) == ("espera", None)
    assert (await db.user_releases.find_one({"_id": agent["id"]}))["owed"] is not None
    await db.tickets.update_one({"_id": bad}, {"$set": {"number": number}})  # mended
    await tickets.release_owed(db, paid_if_active_before=utcnow())
    assert (await db.tickets.find_one({"_id": bad}))["status"] == "espera"
    assert (await db.user_releases.find_one({"_id": agent["id"]}))["owed"] is None
