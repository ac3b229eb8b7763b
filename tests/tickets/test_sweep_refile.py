"""Two cases the projection sweep owns besides a projection that is behind: a finalize whose
process died between its event and its scan for the client messages that raced it, and internal
notes, which must never become a ticket's activity however the sweep finds them."""

from datetime import timedelta
from typing import Any

import httpx
import pytest

from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.core.ids import new_id
from backend.messages import repository as messages_repo
from backend.messages.models import Message
from backend.tickets import service as tickets_service
from backend.tickets import sweep
from tests.conftest import make_settings
from tests.factories import API, Tenant, make_tenant
from tests.tickets.projection_support import open_channel_ticket


@pytest.fixture(scope="module")
def settings(mongo_url: str, db_name: str) -> Settings:
    # The sweep is run by hand here, so that nothing but the test moves the message.
    return make_settings(mongo_url, db_name, TICKET_SWEEP_ENABLED=False)


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


async def test_a_finalize_killed_before_its_scan_has_its_racing_message_moved_by_the_sweep(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    since = utcnow() - timedelta(seconds=5)
    ticket, client_id = await open_channel_ticket(client, db, tenant)
    # Stored and checked while the ticket was open, stamped after the finalize to come (a process
    # whose clock runs ahead): only the finalize's own scan would move it.
    late = {
        "_id": new_id(),
        "ticket_id": ticket.id,
        "reseller_id": tenant.id,
        "direction": "in",
        "sender_type": "client",
        "sender_id": client_id,
        "sender_name": "Cliente",
        "type": "text",
        "body": "espera, mais uma coisa",
        "media": None,
        "status": "received",
        "created_at": utcnow() + timedelta(seconds=30),
    }
    await messages_repo.insert(db, Message.model_validate(late))

    async def killed(*_: Any, **__: Any) -> None:  # the finalize's process dies before its hooks
        return None

    # Before its own scan, and before the hooks' end is recorded (tickets.after_finalize).
    monkeypatch.setattr(tickets_service, "after_finalize", killed)
    r = await client.post(f"{API}/tickets/{ticket.id}/finalize", headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert (await db.messages.find_one({"_id": late["_id"]}))["ticket_id"] == ticket.id
    monkeypatch.undo()

    await sweep.sweep_once(db, since=since)

    moved = await db.messages.find_one({"_id": late["_id"]})
    assert moved["ticket_id"] != ticket.id and moved["moved_from_ticket_id"] == ticket.id
    new = await db.tickets.find_one({"_id": moved["ticket_id"]})
    assert new["status"] == "espera" and new["client_id"] == client_id
    # Run again: nothing left to move, nothing moved twice.
    await sweep.sweep_once(db, since=since)
    assert (await db.messages.find_one({"_id": late["_id"]}))["ticket_id"] == new["_id"]


async def test_a_note_never_becomes_the_tickets_activity_through_the_sweep(
    client: httpx.AsyncClient, db: Any, tenant: Tenant
) -> None:
    since = utcnow() - timedelta(seconds=5)
    ticket, _ = await open_channel_ticket(client, db, tenant)
    before = await db.tickets.find_one({"_id": ticket.id})
    r = await client.post(
        f"{API}/tickets/{ticket.id}/notes", json={"body": "cliente VIP, cuidado"}, headers=tenant.headers
    )
    assert r.status_code == 201, r.text

    await sweep.sweep_once(db, since=since)

    after = await db.tickets.find_one({"_id": ticket.id})
    assert after["last_message_preview"] == before["last_message_preview"] == "oi"
    assert after["last_message_at"] == before["last_message_at"]
