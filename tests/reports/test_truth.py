"""The reports' aggregates against the log: the rebuild (scripts/reports_rebuild.py) agrees with
the incremental figures after a randomized concurrent run; repeated recording (retried requests,
settles, redeliveries of the aggregation write) counts once; a competitor injected between a
contribution's append and its claim counts once; a writer that died between its event and its
record is caught up by the next settle; what the rebuild finds missing or corrupt, --fix mends."""

import asyncio
import random
from datetime import date
from typing import Any

import httpx
import pytest

from backend.audit import service as events
from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.core.ids import new_id
from backend.core.tenancy import Actor
from backend.messages import repository as messages_repo
from backend.messages import service as messages
from backend.messages.models import Message
from backend.reports import rebuild, repository
from backend.reports import service as reports
from backend.reports.schemas import ReportFigures
from backend.tickets import intake
from backend.tickets import service as tickets
from backend.tickets.models import Ticket, TicketEvent
from scripts import reports_rebuild
from tests.conftest import make_settings
from tests.factories import API, Tenant, make_client_ticket, make_open_connection, make_tenant
from tests.tickets.projection_support import client_doc, log_assume_without_projecting

SEED = 20261202


@pytest.fixture(scope="module")
def settings(mongo_url: str, db_name: str) -> Settings:
    # No background sweep: the crash test settles the ticket itself.
    return make_settings(mongo_url, db_name, TICKET_SWEEP_ENABLED=False)


@pytest.fixture
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, departments=2, agents=3)


def _owner(tenant: Tenant) -> Actor:
    return Actor(id=tenant.owner_id, role="reseller", name="owner", reseller_id=tenant.id)


def _agent(tenant: Tenant, i: int) -> Actor:
    a = tenant.agents[i]
    return Actor(
        id=a["id"], role="agent", name=a["name"], reseller_id=tenant.id, department_ids=tuple(a["department_ids"])
    )


async def _today(db: Any, tenant: Tenant) -> dict[str, Any]:
    summary = await reports.summary(db, _owner(tenant), start=None, end=None)
    return summary.model_dump(include=set(ReportFigures.model_fields))  # the figures alone


async def _agents(db: Any, tenant: Tenant) -> list[dict[str, Any]]:
    return [r.model_dump() for r in (await reports.agents(db, _owner(tenant), start=None, end=None)).items]


async def _clean(db: Any, tenant: Tenant) -> rebuild.Audit:
    found = await rebuild.audit(db, tenant.id)
    assert found.month_differences == {} and found.waiting_differences == [] and found.corrupt == []
    return found


CONNECTIONS: dict[str, dict[str, Any]] = {}  # tenant -> its WhatsApp connection


async def make_ticket(
    client: httpx.AsyncClient, tenant: Tenant, *, department_id: str | None = None, db: Any
) -> dict[str, Any]:
    """A ticket its client opened on WhatsApp: replies are only accepted where they reach the
    client (an API ticket without a connection refuses them)."""
    if tenant.id not in CONNECTIONS:
        CONNECTIONS[tenant.id] = await make_open_connection(client, tenant, db)
    return await make_client_ticket(
        client, tenant, db, department_id=department_id, connection=CONNECTIONS[tenant.id], signed=True
    )


CHATS: dict[str, asyncio.Lock] = {}


async def _client_message(db: Any, tenant: Tenant, ticket: Ticket, text: str, message_id: str) -> None:
    """One chat's messages one at a time, as its webhook lane files them (the only caller of the
    intake): the first client message is the first recorded. Agents' steps still race freely."""
    customer = await client_doc(db, ticket.client_id)
    async with CHATS.setdefault(ticket.client_id, asyncio.Lock()):
        await intake.receive_client_message(
            db,
            reseller_id=tenant.id,
            client=customer,
            department_id=ticket.department_id,
            channel=ticket.channel,
            body=text,
            message_id=message_id,
        )


async def _random_step(db: Any, tenant: Tenant, rng: random.Random, ticket_ids: list[str]) -> None:
    ticket = await tickets.load(db, rng.choice(ticket_ids))
    assert ticket is not None
    i = rng.randrange(len(tenant.agents))
    me = _agent(tenant, i)
    try:
        if ticket.status == "espera":
            await rng.choice([tickets.assume, tickets.assume, tickets.finalize])(db, me, ticket_id=ticket.id)
        elif ticket.status == "atendendo":
            holder = next(j for j, a in enumerate(tenant.agents) if a["id"] == ticket.agent_id)
            actor = _agent(tenant, holder)
            roll = rng.random()
            if roll < 0.4:
                await messages.reply(db, actor, ticket_id=ticket.id, body="resposta")
            elif roll < 0.55:
                other = tenant.agents[(holder + 1) % len(tenant.agents)]["id"]
                await tickets.transfer(db, actor, ticket_id=ticket.id, agent_id=other, department_id=None)
            elif roll < 0.65:
                dept = rng.choice(tenant.departments)["id"]
                await tickets.transfer(db, actor, ticket_id=ticket.id, agent_id=None, department_id=dept)
            elif roll < 0.8:
                await _client_message(db, tenant, ticket, "mais uma", new_id())
            else:
                await tickets.finalize(db, actor, ticket_id=ticket.id)
        elif rng.random() < 0.5:
            # The client rates its finalized ticket (once: a second rating is a Conflict).
            await tickets.rate(db, ticket, rating=rng.randint(1, 5), message_id=new_id())
        else:
            # A client writing after the finalize opens a new ticket (its first message).
            await _client_message(db, tenant, ticket, "de novo", new_id())
    except Exception as exc:  # a lost race is a 409/404 to that caller; anything else fails the test
        from backend.core.errors import Conflict, NotFound

        if not isinstance(exc, (Conflict, NotFound)):
            raise


async def _scripted(client: httpx.AsyncClient, db: Any, tenant: Tenant) -> None:
    ticket = await make_ticket(client, tenant, db=db)
    me = _agent(tenant, 0)
    await tickets.assume(db, me, ticket_id=ticket["id"])
    await messages.reply(db, me, ticket_id=ticket["id"], body="resposta")
    await tickets.finalize(db, me, ticket_id=ticket["id"])
    finalized = await tickets.load(db, ticket["id"])
    assert finalized is not None
    await tickets.rate(db, finalized, rating=4, message_id=new_id())


async def test_rebuild_agrees_with_the_incremental_figures_after_a_randomized_concurrent_run(
    client: httpx.AsyncClient, db: Any, tenant: Tenant
) -> None:
    rng = random.Random(SEED)
    ticket_ids = [(await make_ticket(client, tenant, department_id=rng.choice(tenant.departments)["id"], db=db))["id"]]
    for _ in range(7):
        ticket_ids.append(
            (await make_ticket(client, tenant, department_id=rng.choice(tenant.departments)["id"], db=db))["id"]
        )
    for _ in range(12):  # rounds of concurrent steps: races between agents are part of the run
        await asyncio.gather(*(_random_step(db, tenant, rng, ticket_ids) for _ in range(5)))
    # Interleavings vary run to run, so the rolls may miss a path: one scripted ticket (a reply
    # and a rating) races one last round, so every kind of figure is in every run.
    await asyncio.gather(_scripted(client, db, tenant), *(_random_step(db, tenant, rng, ticket_ids) for _ in range(5)))
    found = await _clean(db, tenant)
    figures = await _today(db, tenant)
    assert figures["opened"] >= 8 and figures["messages_in"] >= 8  # the run did something
    assert figures["messages_out"] >= 1 and figures["satisfaction"]["count"] >= 1
    # The script's own entry point, as an operator runs it: exit 0.
    assert [a.clean for a in await reports_rebuild.check(db, tenant=tenant.id, fix=False)] == [True]
    month = date.today().strftime("%Y-%m")
    assert found.truth_months.get(month) == found.current_months.get(month)


async def test_recording_again_counts_nothing_twice(client: httpx.AsyncClient, db: Any, tenant: Tenant) -> None:
    """Every ticket event and message recorded again (a retried request, a settle, a redelivered
    delivery run their hooks again), concurrently with itself: no figure moves."""
    for grade in (5, 4, 4):
        ticket = await make_ticket(client, tenant, db=db)
        a = tenant.agents[0]["headers"]
        assert (await client.post(f"{API}/tickets/{ticket['id']}/assume", headers=a)).status_code == 200
        r = await client.post(f"{API}/tickets/{ticket['id']}/messages", headers=a, json={"body": "oi"})
        assert r.status_code == 201
        assert (await client.post(f"{API}/tickets/{ticket['id']}/finalize", headers=a)).status_code == 200
        finalized = await tickets.load(db, ticket["id"])
        assert finalized is not None
        await tickets.rate(db, finalized, rating=grade, message_id=new_id())
    before, rows = await _today(db, tenant), await _agents(db, tenant)
    evs = await db.ticket_events.find({"reseller_id": tenant.id}).to_list(None)
    msgs = [Message.model_validate(m) async for m in db.messages.find({"reseller_id": tenant.id})]
    ticket_docs = {
        t["_id"]: Ticket.model_validate(t) for t in await db.tickets.find({"reseller_id": tenant.id}).to_list(None)
    }
    again = [reports.record_ticket_event(db, TicketEvent.trusted(e), None) for e in evs for _ in range(2)]
    again += [reports.record_message(db, m, ticket_docs[m.ticket_id]) for m in msgs for _ in range(2)]
    await asyncio.gather(*again)
    assert await _today(db, tenant) == before and await _agents(db, tenant) == rows
    assert before["finalized"] == 3 and before["messages_out"] == 3
    assert before["satisfaction"] == {
        "average": 4.33,
        "count": 3,
        "distribution": {"1": 0, "2": 0, "3": 0, "4": 2, "5": 1},
    }
    await _clean(db, tenant)


async def test_a_competitor_between_append_and_claim_counts_once(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The assume's own contribution is appended, and before a compaction claims it, a second
    recording of the same event (a retry or a settle of another process) appends its own entry;
    a reader reads in between, before any claim (the month log leaves claims to its compactor)."""
    ticket = await make_ticket(client, tenant, db=db)
    real_record = repository.MONTHS.record
    assume_event = events.event_id(ticket["id"], 2)
    seen: list[dict[str, Any]] = []

    async def interleaved(db_: Any, bucket: str, key: str, body: Any, **kw: Any) -> bool:
        counts = await real_record(db_, bucket, key, body, **kw)
        if key == f"ev:{assume_event}" and not seen:
            seen.append(await _today(db, tenant))  # a reader meets the unclaimed entry
            event = await db.ticket_events.find_one({"_id": key[3:]})
            await reports.record_ticket_event(db, TicketEvent.trusted(event), None)  # the competitor, to its end
        return counts

    monkeypatch.setattr(repository.MONTHS, "record", interleaved)
    r = await client.post(f"{API}/tickets/{ticket['id']}/assume", headers=tenant.agents[0]["headers"])
    assert r.status_code == 200, r.text
    assert seen and seen[0]["assumed"] == 1  # the unclaimed entry already counts, once
    figures = await _today(db, tenant)
    assert (figures["opened"], figures["assumed"], figures["waiting_now"]) == (1, 1, 0)
    entries = await db[repository.ENTRIES].find({"key": f"ev:{assume_event}"}).to_list(None)
    entries = [e for e in entries if ":m:" in e["bucket"]]
    assert len(entries) == 2  # both appended to the month bucket; one counts
    # Folded into the totals (compaction), it still counts once.
    bucket = entries[0]["bucket"]
    await repository.MONTHS.compact(db, bucket)
    assert (await _today(db, tenant))["assumed"] == 1
    await _clean(db, tenant)


async def test_a_writer_killed_between_its_event_and_its_record_is_caught_up_by_the_next_settle(
    client: httpx.AsyncClient, db: Any, tenant: Tenant
) -> None:
    ticket = await make_ticket(client, tenant, db=db)
    await log_assume_without_projecting(db, ticket["id"], tenant.agents[1])
    assert (await _today(db, tenant))["assumed"] == 0  # the log is ahead of everything
    found = await rebuild.audit(db, tenant.id)
    assert found.month_differences and found.waiting_differences == [ticket["id"]]  # the check sees it
    r = await client.get(f"{API}/tickets/{ticket['id']}", headers=tenant.headers)  # a reader settles it
    assert r.json()["status"] == "atendendo"
    figures = await _today(db, tenant)
    assert (figures["assumed"], figures["waiting_now"]) == (1, 0)
    await _clean(db, tenant)


async def test_the_rebuild_finds_and_fixes_what_was_never_recorded_or_is_corrupt(
    client: httpx.AsyncClient, db: Any, tenant: Tenant
) -> None:
    ticket = await make_ticket(client, tenant, db=db)
    a = tenant.agents[0]["headers"]
    assert (await client.post(f"{API}/tickets/{ticket['id']}/assume", headers=a)).status_code == 200
    r = await client.post(f"{API}/tickets/{ticket['id']}/messages", headers=a, json={"body": "oi"})
    assert r.status_code == 201
    # A message stored by a process killed before it recorded it (never retried).
    now = utcnow()
    lost = {
        "_id": new_id(),
        "ticket_id": ticket["id"],
        "reseller_id": tenant.id,
        "department_id": ticket["department_id"],
        "agent_id": tenant.agents[0]["id"],
        "channel": CONNECTIONS[tenant.id]["_id"],
        "direction": "in",
        "sender_type": "client",
        "sender_id": ticket["client_id"],
        "sender_name": "c",
        "type": "text",
        "body": "perdida",
        "media": None,
        "status": "received",
        "created_at": now,
    }
    await messages_repo.insert(db, Message.model_validate(lost))
    # A totals document written wrong (by hand, or a bug): one assume too many.
    month = now.astimezone(reports.zone("America/Sao_Paulo")).strftime("%Y-%m")
    bucket = f"{tenant.id}:m:{month}"
    await repository.MONTHS.compact(db, bucket)
    # The "all" view (what an unfiltered summary reads) and the cells (the rebuild's comparison).
    for view in ("all", "cells"):
        totals = await repository.MONTHS._totals(db, bucket, view)
        cell = next(iter(totals.state["cells"].values()))
        cell["a"] = int(cell.get("a", 0)) + 1
        await repository.MONTHS.write_totals(db, bucket, view, totals)
    wrong = await _today(db, tenant)
    found = await rebuild.audit(db, tenant.id)
    assert found.corrupt == [f"{bucket}|all", f"{bucket}|cells"] and found.month_differences
    assert [a.clean for a in await reports_rebuild.check(db, tenant=tenant.id, fix=False)] == [False]

    fixed = await reports_rebuild.check(db, tenant=tenant.id, fix=True)
    assert [a.clean for a in fixed] == [True]
    figures = await _today(db, tenant)
    assert figures["messages_in"] == wrong["messages_in"] + 1
    assert figures["assumed"] == wrong["assumed"] - 1 == 1
    await _clean(db, tenant)


async def test_the_rebuild_finds_and_fixes_a_rating_the_figures_lack(
    client: httpx.AsyncClient, db: Any, tenant: Tenant
) -> None:
    ticket = await make_ticket(client, tenant, db=db)
    a = tenant.agents[0]["headers"]
    for action in ("assume", "finalize"):
        assert (await client.post(f"{API}/tickets/{ticket['id']}/{action}", headers=a)).status_code == 200
    finalized = await tickets.load(db, ticket["id"])
    assert finalized is not None
    await tickets.rate(db, finalized, rating=3, message_id=new_id())
    assert (await _today(db, tenant))["satisfaction"]["count"] == 1
    # The figures lose the rating (as if its contribution had never been recorded): an entry
    # taking it back out, in the rating's cell.
    rated = await db.ticket_events.find_one({"_id": events.event_id(ticket["id"], 4)})
    assert rated["type"] == "rated"
    local = rated["at"].astimezone(reports.zone("America/Sao_Paulo"))
    dims = [finalized.department_id, tenant.agents[0]["id"], CONNECTIONS[tenant.id]["_id"]]
    lost = {"d": local.strftime("%d"), "h": local.hour, "dim": dims, "s3": -1}
    await repository.record_month(db, tenant.id, local.strftime("%Y-%m"), f"lost:{new_id()}", [lost])
    assert (await _today(db, tenant))["satisfaction"]["count"] == 0
    found = await rebuild.audit(db, tenant.id)
    assert list(found.month_differences) == [local.strftime("%Y-%m")]

    assert [f.clean for f in await reports_rebuild.check(db, tenant=tenant.id, fix=True)] == [True]
    satisfaction = (await _today(db, tenant))["satisfaction"]
    assert satisfaction == {"average": 3.0, "count": 1, "distribution": {"1": 0, "2": 0, "3": 1, "4": 0, "5": 0}}
    await _clean(db, tenant)
