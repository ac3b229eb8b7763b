"""A deactivation that meets a held ticket that does not read, killed right after it handed back the
others: what a restart finds is the release still owed (never marked paid before it ran to its
end), the readable tickets in their queues, the bad one still held; the ticket sweep leaves it
owed while the ticket does not read, and pays it once an operator mended the ticket.

The process's own sweep is off, so that only the test's sweeps pay a release."""

from typing import Any

import httpx
import pytest

from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.core.tenancy import Actor
from backend.tickets import service as tickets
from backend.tickets import sweep
from backend.users import deactivation
from backend.users.schemas import UserUpdate
from tests.conftest import make_settings
from tests.factories import assume, make_tenant, make_ticket


class Killed(BaseException):
    """The process dies: no `except Exception` of the code under test runs, nothing after it."""


@pytest.fixture(scope="module")
def settings(mongo_url: str, db_name: str) -> Settings:
    return make_settings(mongo_url, db_name, TICKET_SWEEP_ENABLED=False)


async def _held(db: Any, ticket_id: str) -> tuple[str, str | None]:
    doc = await db.tickets.find_one({"_id": ticket_id})
    return doc["status"], doc["agent_id"]


async def test_a_release_killed_after_meeting_an_unreadable_ticket_stays_owed_until_the_sweep_pays_it(
    client: httpx.AsyncClient, db: Any, admin_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    agent = tenant.agents[0]
    held = sorted([(await make_ticket(client, tenant))["id"] for _ in range(3)])
    for ticket_id in held:
        await assume(client, agent["headers"], ticket_id)
    bad = held[1]  # readable tickets before and after it
    number = (await db.tickets.find_one({"_id": bad}))["number"]
    await db.tickets.update_one({"_id": bad}, {"$set": {"number": f"#{number}"}})
    owner = Actor(id=tenant.owner_id, role="reseller", name="Dono", reseller_id=tenant.id)
    release = tickets.release_held_by

    async def killed_right_after(*args: Any, **kwargs: Any) -> list[str]:
        with pytest.raises(tickets.HeldUnreadable):  # the others handed back, the bad one not
            await release(*args, **kwargs)
        raise Killed

    monkeypatch.setattr(tickets, "release_held_by", killed_right_after)
    with pytest.raises(Killed):
        await deactivation.update(db, owner, user_id=agent["id"], data=UserUpdate(active=False))
    monkeypatch.undo()

    # The restart: the person inactive, the readable tickets back in their queues, the release owed.
    assert (await db.users.find_one({"_id": agent["id"]}))["active"] is False
    for ticket_id in held:
        assert await _held(db, ticket_id) == (("atendendo", agent["id"]) if ticket_id == bad else ("espera", None))
    owed = (await db.user_releases.find_one({"_id": agent["id"]}))["owed"]
    assert owed is not None

    await sweep.sweep_once(db, since=utcnow())  # the ticket still does not read: still owed
    assert await _held(db, bad) == ("atendendo", agent["id"])
    assert (await db.user_releases.find_one({"_id": agent["id"]}))["owed"] == owed

    await db.tickets.update_one({"_id": bad}, {"$set": {"number": number}})  # mended
    await sweep.sweep_once(db, since=utcnow())
    assert await _held(db, bad) == ("espera", None)
    assert (await db.user_releases.find_one({"_id": agent["id"]}))["owed"] is None
