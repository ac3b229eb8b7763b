"""The feed's rules without sockets: who receives a record (per role), how sequence numbers are
taken (gap-free and unique under concurrent writers on FerretDB), and how a record that could not
be written is answered (a resync of its tenant's screens)."""

import asyncio
import gc
import json
import time
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from backend.core.db import durable_database
from backend.core.ids import new_id
from backend.core.runtime import runtime_of
from backend.core.tenancy import Actor
from backend.realtime import feed, records
from backend.realtime.audience import allows, may_receive
from backend.realtime.hub import entry_of
from tests.monitoring import CommandRecorder
from tests.realtime.resyncs import Resyncs

T1, T2 = new_id(), new_id()
D1, D2 = new_id(), new_id()
AGENT, OTHER_AGENT, CLIENT = new_id(), new_id(), new_id()

RESELLER = Actor(id=new_id(), role="reseller", name="R", reseller_id=T1)
AGENT_D1 = Actor(id=AGENT, role="agent", name="A", reseller_id=T1, department_ids=(D1,))
AGENT_D2 = Actor(id=OTHER_AGENT, role="agent", name="B", reseller_id=T1, department_ids=(D2,))
THE_CLIENT = Actor(id=CLIENT, role="client", name="C", reseller_id=T1)
OTHER_CLIENT = Actor(id=new_id(), role="client", name="X", reseller_id=T1)
ADMIN = Actor(id=new_id(), role="admin", name="Adm")
OTHER_RESELLER = Actor(id=new_id(), role="reseller", name="R2", reseller_id=T2)
OTHER_TENANT_AGENT = Actor(id=new_id(), role="agent", name="A2", reseller_id=T2, department_ids=(D1,))


def _ticket(**state: Any) -> dict[str, Any]:
    base = {"status": "espera", "department_id": D1, "agent_id": None, "finalized_by": None, "client_id": CLIENT}
    return {**base, **state}


def _record(after: dict[str, Any] | None, before: dict[str, Any] | None = None, tenant: str = T1) -> dict[str, Any]:
    def side(t: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if t is None else {"reseller_id": tenant, **t}

    return {"reseller_id": tenant, "seq": 1, "audience": {"after": side(after), "before": side(before)}}


def _receivers(record: dict[str, Any]) -> set[str]:
    actors = {
        "reseller": RESELLER,
        "agent_d1": AGENT_D1,
        "agent_d2": AGENT_D2,
        "client": THE_CLIENT,
        "other_client": OTHER_CLIENT,
        "admin": ADMIN,
        "other_reseller": OTHER_RESELLER,
        "other_tenant_agent": OTHER_TENANT_AGENT,
    }
    return {name for name, actor in actors.items() if may_receive(actor, record)}


def test_espera_event_reaches_the_department_the_reseller_and_the_client() -> None:
    assert _receivers(_record(_ticket())) == {"reseller", "agent_d1", "client"}


def test_held_ticket_reaches_only_its_holder_besides_reseller_and_client() -> None:
    held = _ticket(status="atendendo", agent_id=AGENT)
    assert _receivers(_record(held, held)) == {"reseller", "agent_d1", "client"}
    by_other = _ticket(status="atendendo", agent_id=new_id())
    assert _receivers(_record(by_other, by_other)) == {"reseller", "client"}


def test_who_loses_sight_of_a_ticket_is_told() -> None:
    # Assumed by someone else: department agent saw it in espera, must hear it left the queue.
    assumed = _record(_ticket(status="atendendo", agent_id=new_id()), _ticket())
    assert "agent_d1" in _receivers(assumed)
    # Transferred from agent A to agent B's department queue: A (before) and d2's agents (after).
    moved = _record(_ticket(department_id=D2), _ticket(status="atendendo", agent_id=AGENT))
    assert _receivers(moved) == {"reseller", "agent_d1", "agent_d2", "client"}
    # Finalized by its holder: still its (finalized_by), no one else's.
    done = _record(
        _ticket(status="finalizado", agent_id=AGENT, finalized_by=AGENT), _ticket(status="atendendo", agent_id=AGENT)
    )
    assert _receivers(done) == {"reseller", "agent_d1", "client"}


def test_never_another_tenant_nor_admin_and_tenant_news_only_for_the_reseller() -> None:
    foreign = _record(_ticket(), tenant=T2)
    assert _receivers(foreign) == {"other_reseller", "other_tenant_agent"}  # T2's d1 id collides on purpose
    assert _receivers(_record(None)) == {"reseller"}  # e.g. connection.status


def test_entries_kept_for_replays_are_invisible_to_full_garbage_collections() -> None:
    # As a backend receives it from the bus: a whole record, decoded from JSON.
    ticket = {**_ticket(), "id": new_id(), "number": 12, "client_name": "Cliente", "tags": ["a"]}
    record = json.loads(
        json.dumps(
            {**_record(_ticket(status="atendendo", agent_id=AGENT), _ticket()), "type": "ticket.assumed",
             "at": "2026-01-01T00:00:00+00:00", "ticket": ticket, "message": None, "connection": None}
        )
    )  # fmt: skip
    entry = entry_of(record)
    # Thousands are held per tenant: tracked, their promotion to the old generation set off full
    # collections that walked every socket's objects (100-150 ms delivery pauses in the realtime
    # benchmark). The collector untracks one tuple nesting level per collection; an object passes
    # two young collections before it is promoted.
    gc.collect(0)
    gc.collect(1)
    assert not gc.is_tracked(entry)
    assert json.loads(entry[1])["ticket"] == ticket
    assert json.loads(entry[1])["at"] == "2026-01-01T00:00:00.000Z"  # the API's one timestamp width
    actors = (RESELLER, AGENT_D1, AGENT_D2, THE_CLIENT, OTHER_CLIENT, ADMIN, OTHER_RESELLER, OTHER_TENANT_AGENT)
    assert [allows(a, *entry[2:]) for a in actors] == [may_receive(a, record) for a in actors]
    assert {a.name for a in actors if allows(a, *entry[2:])} == {"R", "A", "C"}


async def test_concurrent_writers_take_every_seq_exactly_once(mongo_url: str, db_name: str) -> None:
    """Two clients (as two processes) race 60 appends for one tenant: seqs are 1..60, unique."""
    clients: list[AsyncMongoClient[dict[str, Any]]] = [AsyncMongoClient(mongo_url, tz_aware=True) for _ in range(2)]
    try:
        dbs = [durable_database(c, db_name) for c in clients]
        tenant = new_id()

        async def write(i: int) -> int:
            if i % 7 == 0:
                # A cold process: finds the tail itself.
                runtime_of(dbs[i % 2]).seqlog_heads.pop((db_name, records.COLLECTION, f"{tenant}:"), None)
            rec = await records.append(dbs[i % 2], tenant, {"type": "connection.status", "n": i})
            return int(rec["seq"])

        seqs = await asyncio.gather(*(write(i) for i in range(60)))
        assert sorted(seqs) == list(range(1, 61))
        stored = await dbs[0][records.COLLECTION].find({"reseller_id": tenant}).to_list(None)
        assert sorted(d["seq"] for d in stored) == list(range(1, 61))
        assert sorted(d["n"] for d in stored) == list(range(60))
        runtime_of(dbs[1]).seqlog_heads.clear()
        assert await records.latest(dbs[1], tenant) == 60
    finally:
        for c in clients:
            await c.close()


async def test_publish_never_fails_the_caller(db: Any) -> None:
    """A realtime failure (here an unknown type) is logged and counted; the caller carries on."""
    assert await feed.publish(db, reseller_id=new_id(), type_="no.such.event") is None
    rec = await feed.publish(
        db, reseller_id=T1, type_="connection.status", connection={"_id": "c1", "status": "open", "secret": "s"}
    )
    assert rec is not None and rec["connection"] == {"id": "c1", "status": "open"}


async def test_lost_records_are_answered_by_one_resync_per_tenant_after_the_burst_and_a_later_loss_by_another(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record that cannot be written (here one `build` refuses) is answered by a resync of its
    tenant's screens, one window later: every loss of that tenant within the window shares it
    (sent after the last of them), another tenant gets its own, and a loss after the resync went
    out is answered by a resync of its own, not taken as already covered."""
    window = 0.3
    monkeypatch.setattr(feed, "RESYNC_COALESCE_SECONDS", window)
    one, other = new_id(), new_id()
    sink = Resyncs()
    feed.register_sink(db, sink)
    try:
        lost: list[float] = []
        for tenant in (one, one, other, one):
            assert await feed.publish(db, reseller_id=tenant, type_="no.such.event") is None
            lost.append(time.monotonic())
        await asyncio.sleep(3 * window)  # long enough for a second resync of the burst, were one sent
        assert len(sink.of(one)) == 1 and len(sink.of(other)) == 1, sink.told
        assert sink.of(one)[0] >= lost[3] and sink.of(other)[0] >= lost[2]

        assert await feed.publish(db, reseller_id=one, type_="no.such.event") is None
        later = time.monotonic()
        await asyncio.sleep(3 * window)
        assert len(sink.of(one)) == 2 and sink.of(one)[1] >= later + window * 0.9, sink.told
    finally:
        feed.unregister_sink(db, sink)


async def test_a_resync_wanted_later_is_not_answered_by_one_due_sooner(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ticket move's writer that failed wants its tenant's refetch no sooner than `after` from
    now (tickets.projection `writer_failed`): a resync already due sooner (a lost record's) goes
    out as it was, and another follows after the time asked, shared by such wants within a window
    and by lost records meanwhile."""
    window = 0.3
    monkeypatch.setattr(feed, "RESYNC_COALESCE_SECONDS", window)
    tenant = new_id()
    sink = Resyncs()
    feed.register_sink(db, sink)
    try:
        assert await feed.publish(db, reseller_id=tenant, type_="no.such.event") is None
        asked = time.monotonic()
        feed.resync_soon(db, tenant, after=3 * window)
        assert await feed.publish(db, reseller_id=tenant, type_="no.such.event") is None
        await asyncio.sleep(window / 2)
        feed.resync_soon(db, tenant, after=3 * window)  # a second failed writer, within the window
        later = time.monotonic()
        await asyncio.sleep(6 * window)
        told = sink.of(tenant)
        assert len(told) == 2, sink.told
        assert told[0] < asked + 3 * window and later + 3 * window <= told[1] + 0.01, (asked, later, told)
    finally:
        feed.unregister_sink(db, sink)


async def test_one_process_concurrent_appends_share_commands_and_keep_call_order(mongo_url: str, db_name: str) -> None:
    """150 concurrent announcements of three tenants in one process: each tenant's seqs are
    1..n in the order its announcements were made, written by a handful of ordered inserts
    rather than 150 commits — while a rival process writing one of the tenants meanwhile still
    never makes a hole or a duplicate."""
    listener = CommandRecorder()
    ours: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True, event_listeners=[listener])
    rival: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    try:
        db, other = durable_database(ours, db_name), durable_database(rival, db_name)
        tenants = [new_id() for _ in range(3)]
        mine = [records.append(db, tenants[i % 3], {"type": "connection.status", "n": i}) for i in range(150)]
        theirs = [records.append(other, tenants[0], {"type": "connection.status", "n": 150 + i}) for i in range(20)]
        stored = await asyncio.gather(*mine, *theirs)

        for t, tenant in enumerate(tenants):
            of_tenant = [r for r in stored if r["reseller_id"] == tenant]
            assert sorted(int(r["seq"]) for r in of_tenant) == list(range(1, len(of_tenant) + 1))
            own = [int(r["seq"]) for r in stored[:150] if r["reseller_id"] == tenant]
            assert own == sorted(own)  # this process's announcements keep their order
            assert len(own) == 50 and len(of_tenant) == (70 if t == 0 else 50)
        assert len(listener.named("insert")) <= 25, len(listener.named("insert"))
        in_store = await db[records.COLLECTION].find({"reseller_id": {"$in": tenants}}).to_list(None)
        assert sorted((d["_id"], d["n"]) for d in in_store) == sorted((r["_id"], r["n"]) for r in stored)
    finally:
        await ours.close()
        await rival.close()
