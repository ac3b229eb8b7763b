"""`/tickets/counts` from the counters (backend/tickets/counters.py) equals a recount of the ticket
documents — for the reseller, for each agent, with and without a department — after randomized
concurrent moves, a competitor injected between an event and its delta, and writers that died
between the two; and scripts/ticket_counts.py finds and repairs what is wrong."""

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from backend.audit import repository as events
from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.core.foldlog import Totals
from backend.core.ids import new_id
from backend.core.tenancy import Actor
from backend.tickets import counters, sweep
from backend.tickets import service as tickets
from backend.tickets.models import TicketEvent
from scripts import ticket_counts
from tests.conftest import make_settings
from tests.factories import API, Tenant, make_agent, make_tenant, make_ticket
from tests.tickets.projection_support import log_assume_without_projecting

SEED = 20261202


@pytest.fixture(scope="module")
def settings(mongo_url: str, db_name: str) -> Settings:
    # No background sweep: the crash tests run the sweep themselves, with nobody reading.
    return make_settings(mongo_url, db_name, TICKET_SWEEP_ENABLED=False)


@pytest.fixture
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    tenant = await make_tenant(client, admin_headers, departments=2, agents=2)
    # One agent in the second department only: its espera counts differ from the others'.
    tenant.agents.append(await make_agent(client, tenant, [tenant.departments[1]["id"]]))
    return tenant


def _actors(tenant: Tenant) -> list[Actor]:
    owner = Actor(id=tenant.owner_id, role="reseller", name="owner", reseller_id=tenant.id)
    agents = [
        Actor(
            id=a["id"],
            role="agent",
            name=a["name"],
            reseller_id=tenant.id,
            department_ids=tuple(a["department_ids"]),
        )
        for a in tenant.agents
    ]
    return [owner, *agents]


async def assert_counts_equal_recount(db: Any, tenant: Tenant) -> dict[str, int]:
    """Every actor, every department filter: counters == count_documents over the tickets."""
    owner_counts: dict[str, int] = {}
    for actor in _actors(tenant):
        for dept in [None, *(d["id"] for d in tenant.departments)]:
            have = await tickets.counts(db, actor, department_id=dept)
            want = await tickets.recount(db, actor, department_id=dept)
            assert have == want, (actor.role, actor.id, dept)
            if actor.role == "reseller" and dept is None:
                owner_counts = have.model_dump()
    return owner_counts


async def _gather(calls: list[Callable[[], Awaitable[httpx.Response]]]) -> list[httpx.Response]:
    return await asyncio.gather(*(c() for c in calls))


async def _random_run(client: httpx.AsyncClient, tenant: Tenant, rng: random.Random, *, rounds: int) -> None:
    """Creates, assumes, transfers (to an agent, to a department) and finalizes at random, in
    concurrent batches where two moves often race for one ticket (the loser gets a 409)."""
    made = [t["id"] for t in await asyncio.gather(*(make_ticket(client, tenant) for _ in range(6)))]
    agents, depts = tenant.agents, tenant.departments
    for _ in range(rounds):
        calls: list[Callable[[], Awaitable[httpx.Response]]] = []
        for _ in range(8):
            tid = rng.choice(made)
            kind = rng.choice(["assume", "assume", "to_agent", "to_dept", "finalize", "create"])
            agent = rng.choice(agents)
            if kind == "assume":
                calls.append(lambda t=tid, h=agent["headers"]: client.post(f"{API}/tickets/{t}/assume", headers=h))
            elif kind == "to_agent":
                body = {"agent_id": agent["id"]}
                calls.append(
                    lambda t=tid, b=body: client.post(f"{API}/tickets/{t}/transfer", json=b, headers=tenant.headers)
                )
            elif kind == "to_dept":
                body = {"department_id": rng.choice(depts)["id"]}
                calls.append(
                    lambda t=tid, b=body: client.post(f"{API}/tickets/{t}/transfer", json=b, headers=tenant.headers)
                )
            elif kind == "finalize":
                h = rng.choice([tenant.headers, agent["headers"]])
                calls.append(lambda t=tid, h=h: client.post(f"{API}/tickets/{t}/finalize", headers=h))
            else:
                dept = rng.choice(depts)["id"]

                async def create(d: str = dept) -> httpx.Response:
                    made.append((await make_ticket(client, tenant, department_id=d))["id"])
                    return httpx.Response(201)

                calls.append(create)
        for r in await _gather(calls):
            # 404: an agent acting on a ticket it cannot see; 409: it lost a race or the state forbids it;
            # 422: e.g. a transfer to an agent who already holds it.
            assert r.status_code in (200, 201, 404, 409, 422), r.text


async def test_counts_equal_a_recount_after_random_concurrent_moves(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    await _random_run(client, tenant, random.Random(SEED), rounds=8)
    counts = await assert_counts_equal_recount(db, tenant)
    assert sum(counts.values()) > 0
    r = await client.get(f"{API}/tickets/counts", headers=tenant.headers)
    assert r.status_code == 200 and r.json() == counts
    # The same numbers once everything is folded into the totals (no tail left).
    await counters.compact(db, tenant.id)
    await assert_counts_equal_recount(db, tenant)


async def test_counts_read_a_bounded_tail_past_the_totals(client: httpx.AsyncClient, tenant: Tenant, db: Any) -> None:
    """Writers fold the deltas into the totals as they go: what a read walks stays short."""
    made = [await make_ticket(client, tenant) for _ in range(3 * counters.COMPACT_EVERY)]
    doc = await db[counters.TOTALS].find_one({"_id": tenant.id})
    assert doc is not None
    head = await db[counters.DELTAS].count_documents({"bucket": tenant.id})
    assert head == len(made) and head - int(doc["watermark"]) < counters.COMPACT_EVERY
    await assert_counts_equal_recount(db, tenant)


async def test_counters_stored_before_foldlog_read_the_same(client: httpx.AsyncClient, tenant: Tenant, db: Any) -> None:
    """Entries, claims and totals as the counters stored them before they moved onto
    backend/core/foldlog.py (entries named by `reseller_id`, no `bucket`) count as before: in the
    tail, once compacted, and in the operator's check."""
    await _random_run(client, tenant, random.Random(SEED + 2), rounds=2)
    await db[counters.DELTAS].update_many(
        {"bucket": tenant.id}, {"$set": {"reseller_id": tenant.id}, "$unset": {"bucket": ""}}
    )
    await assert_counts_equal_recount(db, tenant)
    [found] = await ticket_counts.check(db, tenant=tenant.id, fix=False)
    assert (found.differences, found.unrecorded, found.totals_corrupt, found.complete) == ({}, [], False, True)
    await _random_run(client, tenant, random.Random(SEED + 3), rounds=2)
    await counters.compact(db, tenant.id)
    await assert_counts_equal_recount(db, tenant)


async def test_a_competitor_between_an_event_and_its_delta(
    client: httpx.AsyncClient, tenant: Tenant, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The assume's event is logged; before its writer appends the delta, a reader settles the
    ticket (appending the delta itself) and another agent finalizes it. The event is counted
    once, the finalize once."""
    ticket = await make_ticket(client, tenant)
    tid = ticket["id"]
    real = counters.record
    fired: list[str] = []

    async def record(db_: Any, event: Any, **kwargs: Any) -> None:
        if event.ticket_id == tid and event.type == "assumed" and not fired:
            fired.append(event.id)
            assert await tickets.load(db, tid) is not None  # settles: rolls forward, appends the delta
            r = await client.post(f"{API}/tickets/{tid}/finalize", headers=tenant.headers)
            assert r.status_code == 200, r.text
        await real(db_, event, **kwargs)

    monkeypatch.setattr(counters, "record", record)
    r = await client.post(f"{API}/tickets/{tid}/assume", headers=tenant.agents[0]["headers"])
    assert r.status_code == 200, r.text
    monkeypatch.undo()
    assert fired
    # Two entries for the assume (the settle's and its writer's), one of them canonical once
    # compacted (writers leave the claim to the compactor).
    entries = await db[counters.DELTAS].find({"event_id": fired[0]}).to_list(None)
    assert len(entries) == 2
    counts = await assert_counts_equal_recount(db, tenant)
    assert counts["finalizado"] >= 1
    await counters.compact(db, tenant.id)
    assert await counters.COUNTS.canonical(db, tenant.id, fired[0]) in {int(e["seq"]) for e in entries}
    await assert_counts_equal_recount(db, tenant)


async def test_a_delta_left_unclaimed_by_its_writer_counts_once_before_and_after_the_compactor_claims_it(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    """Issue 20: a transition's writer appends its delta and leaves the claim to the compactor
    (one command less per transition). Competitors between the append and that claim — a reader,
    a settle appending a second copy, another process claiming the later copy first — leave the
    move counted exactly once, before and after the compaction."""
    ticket = await make_ticket(client, tenant)
    r = await client.post(f"{API}/tickets/{ticket['id']}/assume", headers=tenant.agents[0]["headers"])
    assert r.status_code == 200, r.text
    event = await db.ticket_events.find_one({"ticket_id": ticket["id"], "type": "assumed"})
    assert event is not None
    event_id = str(event["_id"])
    [first] = await db[counters.DELTAS].find({"event_id": event_id}).to_list(None)
    assert await counters.COUNTS.canonical(db, tenant.id, event_id) is None  # the writer claimed nothing
    await assert_counts_equal_recount(db, tenant)  # a reader counts the unclaimed entry
    # A settle in another process (which finds no claim) appends the event's delta again.
    await counters.record(db, TicketEvent.trusted(event))
    entries = await db[counters.DELTAS].find({"event_id": event_id}).to_list(None)
    assert len(entries) == 2
    second = next(e for e in entries if e["_id"] != first["_id"])
    await assert_counts_equal_recount(db, tenant)  # two unclaimed copies: the first one counts
    # That process claims its own (later) copy before any compactor claims the first.
    assert await counters.COUNTS._claim(db, tenant.id, event_id, int(second["seq"])) == int(second["seq"])
    await assert_counts_equal_recount(db, tenant)
    await counters.compact(db, tenant.id)  # folds the second copy, not the first
    assert await counters.COUNTS.canonical(db, tenant.id, event_id) == int(second["seq"])
    await assert_counts_equal_recount(db, tenant)
    # And a delta the compactor claims itself: the first copy of its key.
    r = await client.post(f"{API}/tickets/{ticket['id']}/finalize", headers=tenant.agents[0]["headers"])
    assert r.status_code == 200, r.text
    finalized = await db.ticket_events.find_one({"ticket_id": ticket["id"], "type": "finalized"})
    assert finalized is not None
    [entry] = await db[counters.DELTAS].find({"event_id": str(finalized["_id"])}).to_list(None)
    await counters.record(db, TicketEvent.trusted(finalized))  # a second copy, appended after it
    await counters.compact(db, tenant.id)
    assert await counters.COUNTS.canonical(db, tenant.id, str(finalized["_id"])) == int(entry["seq"])
    await assert_counts_equal_recount(db, tenant)
    [found] = await ticket_counts.check(db, tenant=tenant.id, fix=False)
    assert (found.differences, found.unrecorded, found.totals_corrupt) == ({}, [], False)


async def test_a_writer_dead_after_its_event_converges_by_the_sweep_with_no_reader(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    """The assume's event is logged, then its process dies: no delta, no projection. Nobody opens
    the ticket; the sweep settles it, appending the delta before projecting it."""
    start = utcnow() - timedelta(seconds=1)
    ticket = await make_ticket(client, tenant)
    before = await tickets.counts(db, _actors(tenant)[0], department_id=None)
    await log_assume_without_projecting(db, ticket["id"], tenant.agents[0])
    # Counts follow the projection, which is behind too: the same numbers as before.
    assert await tickets.counts(db, _actors(tenant)[0], department_id=None) == before
    swept = await sweep.sweep_once(db, since=start)
    assert swept.repaired >= 1
    counts = await assert_counts_equal_recount(db, tenant)
    assert counts["atendendo"] == before.atendendo + 1 and counts["espera"] == before.espera - 1


async def test_the_script_reports_nothing_after_a_run_and_fixes_corrupted_totals(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    await _random_run(client, tenant, random.Random(SEED + 1), rounds=4)
    [found] = await ticket_counts.check(db, tenant=tenant.id, fix=False)
    assert (found.differences, found.unrecorded, found.totals_corrupt) == ({}, [], False)

    await counters.compact(db, tenant.id)
    doc = await db[counters.TOTALS].find_one({"_id": tenant.id})
    assert doc is not None and doc["watermark"] > 0
    key = f"d|{tenant.departments[0]['id']}|espera"
    corrupted = {**doc["counts"], key: int(doc["counts"].get(key, 0)) + 5}
    await counters.COUNTS.write_totals(db, tenant.id, "", Totals(int(doc["watermark"]), corrupted))

    [found] = await ticket_counts.check(db, tenant=tenant.id, fix=False)
    assert found.totals_corrupt
    want, have = found.differences[key]
    assert have == want + 5
    [fixed] = await ticket_counts.check(db, tenant=tenant.id, fix=True)
    assert (fixed.differences, fixed.unrecorded, fixed.totals_corrupt) == ({}, [], False)
    await assert_counts_equal_recount(db, tenant)


async def test_the_script_backfills_tickets_older_than_the_counters(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    """A tenant from before the counters: its totals are not complete and a ticket has its events
    and no delta. Counts are counted from the tickets meanwhile (still right); the check reports
    it and --fix appends the delta and marks the totals complete (the log and the tickets are not
    written), after which the counters answer."""
    ticket = await make_ticket(client, tenant)
    await db[counters.TOTALS].update_one({"_id": tenant.id}, {"$set": {"complete": False}})
    created = await db.ticket_events.find_one({"_id": events.event_id(ticket["id"], 1)})
    old_id = new_id()
    old = {**created["data"]["ticket"], "_id": old_id, "number": 10**9 + 11, "open_slot": 77}
    event = {**created, "_id": events.event_id(old_id, 1), "ticket_id": old_id, "data": {"ticket": old}}
    await db.ticket_events.insert_one(event)
    await db.tickets.insert_one(old)
    stored = (await db.ticket_events.count_documents({}), await db.tickets.count_documents({}))

    owner = _actors(tenant)[0]
    assert await counters.for_actor(db, owner, department_id=None) is None  # not backfilled: not used
    assert await tickets.counts(db, owner, department_id=None) == await tickets.recount(db, owner, department_id=None)
    [found] = await ticket_counts.check(db, tenant=tenant.id, fix=False)
    assert not found.complete
    assert [e.id for e in found.unrecorded] == [event["_id"]]
    key = f"d|{old['department_id']}|espera"
    assert found.differences[key][0] == found.differences[key][1] + 1
    [fixed] = await ticket_counts.check(db, tenant=tenant.id, fix=True)
    assert (fixed.differences, fixed.unrecorded, fixed.totals_corrupt, fixed.complete) == ({}, [], False, True)
    assert (await db.ticket_events.count_documents({}), await db.tickets.count_documents({})) == stored
    assert await counters.for_actor(db, owner, department_id=None) is not None
    await assert_counts_equal_recount(db, tenant)


async def test_totals_whose_counts_keep_their_values_under_other_keys_are_stored(db: Any) -> None:
    """FerretDB v1 skipped a `$set` of a subdocument holding the stored one's values, in order,
    under other keys: a compaction that moved one ticket atendendo -> finalizado stored the new
    watermark beside the old counts. Totals are written as a replacement, marks kept."""
    bucket = f"scratch-{new_id()}"
    before = {"d|x|atendendo": 1, "a|y|atendendo": 1, "a|y|x|atendendo": 1}
    after = {"d|x|finalizado": 1, "a|y|finalizado": 1, "a|y|x|finalizado": 1}
    await counters.COUNTS.write_totals(db, bucket, "", Totals(3, before, {"complete": True}))
    await counters.COUNTS.write_totals(db, bucket, "", Totals(5, after, {"complete": True}))
    doc = await db[counters.TOTALS].find_one({"_id": bucket})
    assert doc is not None
    assert (doc["watermark"], doc["counts"], doc["complete"]) == (5, after, True)
