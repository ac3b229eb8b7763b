"""Lists, counts and announcements converge to the event log and the messages with nobody opening
a ticket: concurrent writers on FerretDB, a write-back that undoes an activity after its writer
checked it, and writers that died between their log entry and the ticket (the sweep's cases).

No ticket is read through load() (GET /tickets/{id}) before the store has converged: the tests
poll the stored documents themselves, with a bounded wait."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from backend.audit import repository as events
from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.core.ids import new_id
from backend.messages import repository as messages_repo
from backend.messages.models import Message
from backend.tickets import intake, sweep
from backend.tickets.models import STATE_FIELDS, TicketEvent
from tests.conftest import make_settings
from tests.factories import API, Tenant, make_tenant, make_ticket
from tests.tickets.projection_support import (
    assert_lists_agree,
    client_doc,
    divergences,
    log_assume_without_projecting,
    wait_converged,
    write_back_with,
)

PAIRS = 200


@pytest.fixture(scope="module")
def settings(mongo_url: str, db_name: str) -> Settings:
    return make_settings(mongo_url, db_name, TICKET_SWEEP_SECONDS=0.5)


@pytest.fixture
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, departments=2, agents=2)


async def _gather_bounded(calls: list[Callable[[], Awaitable[Any]]], width: int = 20) -> list[Any]:
    gate = asyncio.Semaphore(width)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await call()

    return await asyncio.gather(*(one(c) for c in calls))


async def _inbound(db: Any, tenant: Tenant, client_id: str, body: str) -> None:
    await intake.receive_client_message(
        db,
        reseller_id=tenant.id,
        client=await client_doc(db, client_id),
        department_id=tenant.departments[0]["id"],
        channel=intake.API_CHANNEL,
        body=body,
    )


@pytest.mark.parametrize("action", ["finalize", "assume", "transfer"])
async def test_concurrent_messages_and_moves_converge_to_the_log(
    client: httpx.AsyncClient, tenant: Tenant, db: Any, action: str
) -> None:
    made = await _gather_bounded([lambda: make_ticket(client, tenant) for _ in range(PAIRS)])
    if action == "transfer":
        holder = tenant.agents[0]["headers"]
        held = await _gather_bounded(
            [lambda t=t: client.post(f"{API}/tickets/{t['id']}/assume", headers=holder) for t in made]
        )
        assert all(r.status_code == 200 for r in held)

    def move(i: int, ticket_id: str) -> Awaitable[httpx.Response]:
        if action == "finalize":
            return client.post(f"{API}/tickets/{ticket_id}/finalize", headers=tenant.headers)
        if action == "assume":
            return client.post(f"{API}/tickets/{ticket_id}/assume", headers=tenant.agents[i % 2]["headers"])
        body = {"agent_id": tenant.agents[1]["id"]} if i % 2 else {"department_id": tenant.departments[1]["id"]}
        return client.post(f"{API}/tickets/{ticket_id}/transfer", json=body, headers=tenant.headers)

    results = await asyncio.gather(
        *(
            coro
            for i, t in enumerate(made)
            for coro in (move(i, t["id"]), _inbound(db, tenant, t["client_id"], f"mensagem {i}"))
        )
    )
    moves = results[0::2]
    assert all(r.status_code == 200 for r in moves), [r.text for r in moves if r.status_code != 200][:3]

    await wait_converged(db, tenant.id)
    listed = await assert_lists_agree(client, tenant)
    target = {"finalize": "finalizado", "assume": "atendendo"}
    for i, t in enumerate(made):
        want = target.get(action) or ("atendendo" if i % 2 else "espera")
        assert listed[t["id"]] == want, (i, t["id"])


async def test_an_activity_undone_after_its_writer_checked_it_comes_back(
    client: httpx.AsyncClient, tenant: Tenant, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An assume's projection write reads the ticket; a client message is stored and its writer
    checks its activity is on the ticket; then the assume writes its whole document back, with
    the older activity. The assume's writer only checks its own state: the sweep repairs the
    activity from the messages."""
    ticket = await make_ticket(client, tenant)
    tid = ticket["id"]
    stored_message: list[dict[str, Any]] = []

    async def message() -> None:
        await _inbound(db, tenant, ticket["client_id"], "espera, mais uma coisa")
        found = await db.messages.find_one({"ticket_id": tid, "body": "espera, mais uma coisa"})
        assert found is not None
        stored_message.append(found)
        assert (await db.tickets.find_one({"_id": tid}))["last_message_at"] == found["created_at"]

    fired = write_back_with(monkeypatch, ticket_id=tid, field="status", competitor=message)
    r = await client.post(f"{API}/tickets/{tid}/assume", headers=tenant.agents[0]["headers"])
    assert r.status_code == 200, r.text
    assert fired[0]
    monkeypatch.undo()

    await wait_converged(db, tenant.id)
    stored = await db.tickets.find_one({"_id": tid})
    assert stored["status"] == "atendendo"
    assert (stored["last_message_at"], stored["last_message_preview"]) == (
        stored_message[0]["created_at"],
        "espera, mais uma coisa",
    )
    await assert_lists_agree(client, tenant)


async def test_writes_of_a_dead_writer_converge_with_no_reader(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    """What a process killed mid-write leaves: an event logged but not projected, a message stored
    without its ticket's activity, a ticket's creation event without the ticket document. Nobody
    opens those tickets; the lists and counts still come to say what the log says."""
    moved = await make_ticket(client, tenant)
    quiet = await make_ticket(client, tenant)
    assert await divergences(db, tenant.id) == []

    # 1. assume logged as event v2, projection never written.
    agent = tenant.agents[0]
    await log_assume_without_projecting(db, moved["id"], agent)
    # 2. a reply stored, the ticket's activity never moved.
    reply = {
        "_id": new_id(),
        "ticket_id": quiet["id"],
        "reseller_id": tenant.id,
        "direction": "out",
        "sender_type": "agent",
        "sender_id": agent["id"],
        "sender_name": agent["name"],
        "type": "text",
        "body": "já verifico",
        "media": None,
        "status": "sent",
        "created_at": utcnow(),
    }
    await messages_repo.insert(db, Message.model_validate(reply))
    # 3. a ticket whose creator logged event v1 and died before inserting the ticket.
    created = await db.ticket_events.find_one({"ticket_id": quiet["id"], "version": 1})
    orphan_id = new_id()
    orphan = {**created["data"]["ticket"], "_id": orphan_id, "number": 10**9 + 7, "open_slot": 99}
    await events.insert(
        db,
        TicketEvent.trusted(
            {
                **created,
                "_id": events.event_id(orphan_id, 1),
                "ticket_id": orphan_id,
                "state": {k: orphan.get(k) for k in STATE_FIELDS},
                "data": {"ticket": orphan},
                "at": utcnow(),
            }
        ),
    )

    await wait_converged(db, tenant.id)
    listed = await assert_lists_agree(client, tenant)
    assert (listed[moved["id"]], listed[quiet["id"]], listed[orphan_id]) == ("atendendo", "espera", "espera")
    assert (await db.tickets.find_one({"_id": quiet["id"]}))["last_message_preview"] == "já verifico"


async def test_a_stopping_process_does_not_wait_for_a_sweep_in_progress(
    db: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep over a large FerretDB can take minutes; shutdown cuts it short instead."""
    started, never = asyncio.Event(), asyncio.Event()

    async def endless_sweep(db: Any, *, since: Any, owed: Any) -> sweep.Swept:
        started.set()
        await never.wait()
        return sweep.Swept(0, 0.0)

    monkeypatch.setattr(sweep, "sweep_once", endless_sweep)
    stop = asyncio.Event()
    loop = asyncio.create_task(sweep.run_until(db, settings, stop))
    await started.wait()
    stop.set()
    await asyncio.wait_for(loop, timeout=60)  # a bound on waiting: without the cut it never ends
    assert loop.done() and loop.exception() is None
