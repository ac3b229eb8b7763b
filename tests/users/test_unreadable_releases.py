"""An owed release whose mark does not read (an older version's shape, an operator's slip) is
passed over: the other people's marks are still paid, their conversations back in the queues.
The process's own sweep is off, so that only the test pays a release."""

from typing import Any

import httpx
import pytest

from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.tickets import service as tickets
from backend.users import repository as users
from tests.conftest import make_settings
from tests.factories import Tenant, assume, make_tenant, make_ticket


@pytest.fixture(scope="module")
def settings(mongo_url: str, db_name: str) -> Settings:
    return make_settings(mongo_url, db_name, TICKET_SWEEP_ENABLED=False)


async def test_an_unreadable_owed_release_holds_back_no_other_persons(
    client: httpx.AsyncClient, db: Any, admin_headers: dict[str, str]
) -> None:
    tenant: Tenant = await make_tenant(client, admin_headers, agents=2)
    held = {}
    for agent in tenant.agents:  # each deactivated by a process killed before its release
        ticket_id = (await make_ticket(client, tenant))["id"]
        await assume(client, agent["headers"], ticket_id)
        held[agent["id"]] = ticket_id
        user = await users.get_internal(db, agent["id"])
        assert user is not None
        await users.owe_release(db, user, f"deactivation-{agent['id']}", utcnow())
        await db.users.update_one({"_id": agent["id"]}, {"$set": {"active": False}})
    first, second = (a["id"] for a in tenant.agents)
    await db.user_releases.update_one({"_id": first}, {"$set": {"owed_at": "ontem"}})  # a slip

    assert await tickets.release_owed(db, paid_if_active_before=utcnow()) == 1

    ticket = await db.tickets.find_one({"_id": held[second]})
    assert (ticket["status"], ticket["agent_id"]) == ("espera", None)
    assert (await db.user_releases.find_one({"_id": second}))["owed"] is None
    # Left owed, read again at every sweep: once mended, it is paid.
    assert (await db.user_releases.find_one({"_id": first}))["owed"] == f"deactivation-{first}"
    await db.user_releases.update_one({"_id": first}, {"$set": {"owed_at": utcnow()}})
    assert await tickets.release_owed(db, paid_if_active_before=utcnow()) == 1
    assert (await db.tickets.find_one({"_id": held[first]}))["status"] == "espera"
