"""One message document that does not read as a message (an older version's shape, an operator's
slip) is passed over: the thread still shows and pages through every other message, and the
client messages that raced a finalize after it still move on. A raced message whose refile fails
holds back none of the others, and is refiled by the sweep once it can be.

The process's own sweep is off: the tests run it by hand, so that nothing else moves a message."""

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
from backend.tickets.models import Ticket
from tests.conftest import make_settings
from tests.factories import API, Tenant, assume, make_client_ticket, make_tenant
from tests.messages.helpers import walk_thread
from tests.tickets.projection_support import open_channel_ticket


@pytest.fixture(scope="module")
def settings(mongo_url: str, db_name: str) -> Settings:
    return make_settings(mongo_url, db_name, TICKET_SWEEP_ENABLED=False)


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


async def test_a_thread_passes_over_an_unreadable_message_and_pages_past_it(
    client: httpx.AsyncClient, db: Any, tenant: Tenant
) -> None:
    agent = tenant.agents[0]
    ticket = await make_client_ticket(client, tenant, db, message="mensagem 0")
    await assume(client, agent["headers"], ticket["id"])
    for i in range(1, 5):
        r = await client.post(
            f"{API}/tickets/{ticket['id']}/messages", json={"body": f"mensagem {i}"}, headers=agent["headers"]
        )
        assert r.status_code == 201, r.text
    stored = await db.messages.find({"ticket_id": ticket["id"]}).sort([("created_at", 1), ("_id", 1)]).to_list(None)
    assert [m["body"] for m in stored] == [f"mensagem {i}" for i in range(5)]
    # Between messages 2 and 3, a message an operator's slip left without its direction.
    bad = {k: v for k, v in stored[2].items() if k != "direction"}
    bad.update(_id=new_id(), body="ilegível", created_at=stored[2]["created_at"])
    await db.messages.insert_one(bad)

    path = f"{API}/tickets/{ticket['id']}/messages"
    thread, sizes = await walk_thread(client, tenant.headers, path, limit=2)
    assert [m["body"] for m in thread] == [f"mensagem {i}" for i in range(5)]
    assert sizes == [2, 2, 1]
    thread, _ = await walk_thread(client, agent["headers"], path, limit=50)
    assert [m["body"] for m in thread] == [f"mensagem {i}" for i in range(5)]


def _late(ticket: Ticket, client_id: str, body: str, seconds: int) -> dict[str, Any]:
    """Stored and checked while the ticket was open, stamped after the finalize to come (a process
    whose clock runs ahead): only the finalize's own scan moves it."""
    return {
        "_id": new_id(),
        "ticket_id": ticket.id,
        "reseller_id": ticket.reseller_id,
        "direction": "in",
        "sender_type": "client",
        "sender_id": client_id,
        "sender_name": "Cliente",
        "type": "text",
        "body": body,
        "media": None,
        "status": "received",
        "created_at": utcnow() + timedelta(seconds=seconds),
    }


async def _moved_on(db: Any, message_id: str, finalized_id: str) -> dict[str, Any]:
    moved = await db.messages.find_one({"_id": message_id})
    assert moved["ticket_id"] != finalized_id and moved["moved_from_ticket_id"] == finalized_id
    new = await db.tickets.find_one({"_id": moved["ticket_id"]})
    assert new["status"] == "espera"
    return dict(new)


async def test_raced_messages_after_an_unreadable_one_still_move_on(
    client: httpx.AsyncClient, db: Any, tenant: Tenant
) -> None:
    ticket, client_id = await open_channel_ticket(client, db, tenant)
    first, unreadable, last = (_late(ticket, client_id, f"depois {i}", 30 + i) for i in range(3))
    for late in (first, last):
        await messages_repo.insert(db, Message.model_validate(late))
    del unreadable["status"]  # an older version's shape
    await db.messages.insert_one(unreadable)

    r = await client.post(f"{API}/tickets/{ticket.id}/finalize", headers=tenant.headers)
    assert r.status_code == 200, r.text

    new = await _moved_on(db, first["_id"], ticket.id)
    assert (await _moved_on(db, last["_id"], ticket.id))["_id"] == new["_id"]
    assert (await db.messages.find_one({"_id": unreadable["_id"]}))["ticket_id"] == ticket.id  # for an operator
    assert await tickets_service.finalize_hooks_done(db, ticket.id)


async def test_a_raced_message_whose_refile_fails_holds_back_no_other_and_is_refiled_by_the_sweep(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    since = utcnow() - timedelta(seconds=5)
    ticket, client_id = await open_channel_ticket(client, db, tenant)
    failing, other = (_late(ticket, client_id, f"depois {i}", 30 + i) for i in range(2))
    for late in (failing, other):
        await messages_repo.insert(db, Message.model_validate(late))

    async def killed(*_: Any, **__: Any) -> None:  # the finalize's process dies before its hooks
        return None

    monkeypatch.setattr(tickets_service, "after_finalize", killed)
    r = await client.post(f"{API}/tickets/{ticket.id}/finalize", headers=tenant.headers)
    assert r.status_code == 200, r.text
    monkeypatch.undo()
    finalized = await tickets_service.load(db, ticket.id)
    assert finalized is not None and finalized.status == "finalizado"

    move = messages_repo.move_to_ticket

    async def fails_on_one(db_: Any, message_id: str, **kwargs: Any) -> bool:
        if message_id == failing["_id"]:
            raise RuntimeError("store error")
        return await move(db_, message_id, **kwargs)

    monkeypatch.setattr(messages_repo, "move_to_ticket", fails_on_one)
    with pytest.raises(RuntimeError, match="store error"):
        await tickets_service.after_finalize(db, finalized)
    monkeypatch.undo()
    await _moved_on(db, other["_id"], ticket.id)  # the one after it moved on all the same
    assert (await db.messages.find_one({"_id": failing["_id"]}))["ticket_id"] == ticket.id
    assert not await tickets_service.finalize_hooks_done(db, ticket.id)  # so the sweep runs them again

    await sweep.sweep_once(db, since=since)

    new = await _moved_on(db, failing["_id"], ticket.id)
    assert new["_id"] == (await db.messages.find_one({"_id": other["_id"]}))["ticket_id"]
    assert await tickets_service.finalize_hooks_done(db, ticket.id)
