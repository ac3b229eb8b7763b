"""A writer of a ticket document reads it back and repairs it (projection.settle), so a concurrent
whole-document write-back — what FerretDB v1 does for every update — cannot undo a transition.
The sweep is off in this module: what is checked here is repaired by the writers themselves,
right when their call returns, with no reader and no background help."""

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from pymongo.errors import AutoReconnect

from backend.audit import service as audit_events
from backend.core.clock import CLOCK_SKEW_SECONDS, as_utc, utcnow
from backend.core.config import Settings
from backend.messages import service as messages
from backend.messages.models import Message
from backend.outbound import service as outbound
from backend.realtime import feed
from backend.tickets import projection
from backend.tickets import repository as tickets_repo
from backend.tickets import service as tickets
from backend.tickets.models import Ticket, TicketEvent
from tests.conftest import make_settings
from tests.factories import API, Tenant, assume, make_tenant, make_ticket
from tests.holds import Hold, arrived, holds
from tests.realtime.resyncs import Resyncs
from tests.tickets.projection_support import (
    assert_lists_agree,
    divergences,
    log_assume_without_projecting,
    write_back_with,
)

__all__ = ["holds"]


@pytest.fixture(scope="module")
def settings(mongo_url: str, db_name: str) -> Settings:
    return make_settings(mongo_url, db_name, TICKET_SWEEP_ENABLED=False)


@pytest.fixture
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, departments=2, agents=2)


async def _client_message(db: Any, ticket: Ticket, body: str) -> Message:
    message, created = await messages.append(
        db,
        ticket,
        direction="in",
        sender_type="client",
        sender_id=ticket.client_id,
        sender_name=ticket.client_name,
        body=body,
        status="received",
    )
    assert created
    return message


@pytest.mark.parametrize("action", ["finalize", "assume", "transfer"])
async def test_activity_write_back_cannot_undo_a_transition(
    client: httpx.AsyncClient, tenant: Tenant, db: Any, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """A client message's activity update reads the ticket in espera; the agent's move lands;
    then the update writes the whole document back — espera and the old version again."""
    ticket = await make_ticket(client, tenant)
    tid = ticket["id"]
    if action == "transfer":
        await assume(client, tenant.agents[0]["headers"], tid)
    before = await tickets.load(db, tid)
    assert before is not None
    headers = tenant.agents[0]["headers"] if action == "assume" else tenant.headers
    body = {"department_id": tenant.departments[1]["id"]} if action == "transfer" else None

    async def move() -> None:
        r = await client.post(f"{API}/tickets/{tid}/{action}", json=body, headers=headers)
        assert r.status_code == 200, r.text

    fired = write_back_with(monkeypatch, ticket_id=tid, field="last_message_at", competitor=move)
    message = await _client_message(db, before, "espera, mais uma coisa")
    assert fired[0]

    # Right away, with nobody opening the ticket: the stored ticket is what its log says.
    assert await divergences(db, tenant.id) == []
    stored = await db.tickets.find_one({"_id": tid})
    assert stored["status"] == {"finalize": "finalizado", "assume": "atendendo", "transfer": "espera"}[action]
    record = await db.tenant_events.find_one({"type": "message.created", "message.id": message.id})
    assert record is not None
    if action == "finalize":
        # The activity's read-back is also the message's re-check (messages.service): it saw the
        # finalize, so the message moved on to the client's next ticket and is announced there.
        filed = await db.messages.find_one({"_id": message.id})
        assert filed["ticket_id"] != tid and filed["moved_from_ticket_id"] == tid
        assert record["ticket"]["id"] == filed["ticket_id"] and record["ticket"]["status"] == "espera", record
    else:
        # The message's announcement shows the ticket as the log has it, not as it was read.
        assert record["ticket"]["status"] == stored["status"], record
    monkeypatch.undo()
    await assert_lists_agree(client, tenant)


async def test_transition_write_back_cannot_undo_a_later_transition(
    client: httpx.AsyncClient, tenant: Tenant, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An assume's projection write reads the ticket, a finalize (the next event) lands, then the
    assume writes back its whole document: version 2 over version 3."""
    ticket = await make_ticket(client, tenant)
    tid = ticket["id"]

    async def finalize() -> None:
        r = await client.post(f"{API}/tickets/{tid}/finalize", headers=tenant.headers)
        assert r.status_code == 200, r.text

    fired = write_back_with(monkeypatch, ticket_id=tid, field="status", competitor=finalize)
    r = await client.post(f"{API}/tickets/{tid}/assume", headers=tenant.agents[0]["headers"])
    assert r.status_code == 200, r.text
    assert fired[0]

    assert await divergences(db, tenant.id) == []
    stored = await db.tickets.find_one({"_id": tid})
    assert (stored["status"], stored["version"]) == ("finalizado", 3)
    monkeypatch.undo()
    listed = await assert_lists_agree(client, tenant)
    assert listed[tid] == "finalizado"


async def test_a_status_announcement_shows_the_ticket_as_its_log_says(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    """A delivery receipt announces its message with the ticket: as the log has it, even while the
    stored ticket is behind (its last mover died after logging)."""
    ticket = await make_ticket(client, tenant)
    await log_assume_without_projecting(db, ticket["id"], tenant.agents[0])
    message = Message.model_validate(await db.messages.find_one({"ticket_id": ticket["id"]}))
    await outbound.announce_status(db, message)
    record = await db.tenant_events.find_one({"type": "message.status", "message.id": message.id})
    assert record is not None
    assert (record["ticket"]["status"], record["ticket"]["version"]) == ("atendendo", 2), record["ticket"]


async def _announced(db: Any, ticket_id: str, type_: str) -> list[dict[str, Any]]:
    """The tenant's feed records of `type_` for the ticket (what open screens receive)."""
    found: list[dict[str, Any]] = await db.tenant_events.find({"type": type_, "ticket.id": ticket_id}).to_list(None)
    return found


@pytest.mark.parametrize("roller", ["a read", "the repeat click", "a client message"])
async def test_a_move_whose_writer_died_is_announced_by_whoever_rolls_the_ticket_forward(
    client: httpx.AsyncClient, tenant: Tenant, db: Any, roller: str
) -> None:
    """An assume logged by a writer that died before projecting and announcing it (and so never
    resynced anyone's screens): open screens still show the ticket waiting, offering Assumir. The
    first to roll the ticket forward after the writer's time tells them."""
    ticket = await make_ticket(client, tenant)
    tid, agent = ticket["id"], tenant.agents[0]
    died = utcnow() - timedelta(seconds=projection.LEFT_TO_WRITER_SECONDS + 1)
    await log_assume_without_projecting(db, tid, agent, at=died)
    assert await _announced(db, tid, "ticket.assumed") == []

    if roller == "a read":
        r = await client.get(f"{API}/tickets/{tid}", headers=tenant.headers)
        assert r.status_code == 200, r.text
    elif roller == "the repeat click":
        r = await client.post(f"{API}/tickets/{tid}/assume", headers=agent["headers"])
        assert r.status_code in (200, 409), r.text
    else:  # the ticket as stored (a load would roll it forward itself)
        await _client_message(db, Ticket.model_validate(await db.tickets.find_one({"_id": tid})), "alguém aí?")

    records = await _announced(db, tid, "ticket.assumed")
    assert len(records) == 1, records
    announced = records[0]["ticket"]
    assert (announced["status"], announced["agent_id"], announced["version"]) == ("atendendo", agent["id"], 2)


async def test_a_read_rolling_a_live_writers_move_leaves_its_announcement_to_the_writer(
    client: httpx.AsyncClient, tenant: Tenant, db: Any, holds: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read lands between an assume's event and its projection: the read rolls the ticket forward,
    the writer, still at work, announces its move: one record, not two."""
    monkeypatch.setattr(projection, "LEFT_TO_WRITER_SECONDS", 600.0)  # however slow this machine is
    ticket = await make_ticket(client, tenant)
    tid = ticket["id"]
    held: Hold = holds(tickets_repo, "apply_state", lambda _db, ticket_id, **_: ticket_id == tid)
    click = asyncio.create_task(client.post(f"{API}/tickets/{tid}/assume", headers=tenant.agents[0]["headers"]))
    await arrived(held.entered, click, "the assume's projection")

    r = await client.get(f"{API}/tickets/{tid}", headers=tenant.headers)
    assert (r.status_code, r.json()["status"]) == (200, "atendendo"), r.text
    assert await _announced(db, tid, "ticket.assumed") == []  # the writer lives: its move to announce
    held.go.set()
    assert (await click).status_code == 200
    records = await _announced(db, tid, "ticket.assumed")
    assert [rec["ticket"]["version"] for rec in records] == [2], records


async def test_a_failed_writers_resync_comes_after_any_roll_that_left_its_move_to_it(
    client: httpx.AsyncClient, tenant: Tenant, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An assume whose event is stored and its answer lost (503): a read rolls the ticket forward
    while the move is young, so the read leaves the announcement to the writer, which failed. The
    writer's resync must reach the screens after that roll — with rollers on other hosts, whose
    clocks may be up to CLOCK_SKEW_SECONDS off — else nothing tells them of the move. Checked at the
    worst case: a roller CLOCK_SKEW_SECONDS behind, rolling at the last moment the move still looks
    young to it."""
    # No coalescing window: the writer's `after` alone must cover the roll, so any shortfall in it
    # shows here (the window would hide up to its own length).
    monkeypatch.setattr(feed, "RESYNC_COALESCE_SECONDS", 0.0)
    ticket = await make_ticket(client, tenant)
    tid = ticket["id"]
    logged: list[datetime] = []  # the move's time, by the writer's clock (the real one)
    real_insert = audit_events.insert

    async def answer_lost(db_: Any, event: TicketEvent) -> None:
        await real_insert(db_, event)
        if event.ticket_id == tid:
            logged.append(as_utc(event.at))
            raise AutoReconnect("the event's answer was lost")

    monkeypatch.setattr(audit_events, "insert", answer_lost)
    sink = Resyncs()
    feed.register_sink(db, sink)
    try:
        r = await client.post(f"{API}/tickets/{tid}/assume", headers=tenant.agents[0]["headers"])
        assert r.status_code == 503, r.text
        failed = time.monotonic()  # for the failure message only
        [moved] = logged

        # The roller's host runs exactly CLOCK_SKEW_SECONDS behind the writer's. `_announce_left`
        # reads this clock once, right where it decides (the roll's write is stored by then), so
        # each read is the moment of a roll, noted on the clock the feed's resyncs are timed by.
        rolls: list[tuple[float, datetime]] = []

        def roller_clock() -> datetime:
            now = utcnow() - timedelta(seconds=CLOCK_SKEW_SECONDS)
            rolls.append((time.monotonic(), now))
            return now

        monkeypatch.setattr(projection, "utcnow", roller_clock)
        # The roll decides just before the move stops looking young to that roller: the latest roll
        # that leaves the move to its writer. `ahead` is how late the event loop may wake it.
        ahead = 0.3
        last_young = moved + timedelta(seconds=projection.LEFT_TO_WRITER_SECONDS + CLOCK_SKEW_SECONDS - ahead)
        real_announce_left = projection._announce_left

        async def deciding_late(db_: Any, before: Ticket | None, after: Ticket, tail: TicketEvent) -> None:
            if after.id == tid:
                await asyncio.sleep((last_young - utcnow()).total_seconds())
            await real_announce_left(db_, before, after, tail)

        monkeypatch.setattr(projection, "_announce_left", deciding_late)
        r = await client.get(f"{API}/tickets/{tid}", headers=tenant.headers)
        assert (r.status_code, r.json()["status"]) == (200, "atendendo"), r.text
        assert len(rolls) == 1, rolls
        [(rolled, seen)] = rolls
        # The move's age on the roller's clock was under LEFT_TO_WRITER_SECONDS by at most `ahead`:
        # the worst case, not a roll comfortably early (0.01 for utcnow's millisecond truncation).
        age = (seen - moved).total_seconds()
        assert projection.LEFT_TO_WRITER_SECONDS - ahead - 0.01 <= age < projection.LEFT_TO_WRITER_SECONDS, age
        assert await _announced(db, tid, "ticket.assumed") == []  # left to its writer

        # The resync is due LEFT_TO_WRITER_SECONDS + CLOCK_SKEW_SECONDS after the writer failed,
        # about `ahead` after this roll; wait well past that, then it must have come after the roll.
        await asyncio.sleep(ahead + 1)
        told = sink.of(tenant.id)
        assert told and max(told) > rolled, (
            f"resyncs at {[round(t - failed, 3) for t in told]} s, the roll at {round(rolled - failed, 3)} s"
            " after the writer failed"
        )
    finally:
        feed.unregister_sink(db, sink)
