"""Helpers for the projection tests: what the log says, what the lists say, and FerretDB's
whole-document write-back made deterministic."""

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import httpx
import pytest

from backend.audit import repository as events
from backend.core import conditional
from backend.core.clock import as_utc, utcnow
from backend.core.ids import new_id
from backend.tickets import intake
from backend.tickets import repository as tickets_repo
from backend.tickets.models import STATE_FIELDS, Ticket, TicketEvent
from backend.tickets.states import Status
from backend.users import repository as users
from backend.users.models import User
from tests.factories import API, Tenant, collect_pages, get_ticket, make_client

STATUSES = ("espera", "atendendo", "finalizado")
CONVERGENCE_TIMEOUT = 120.0  # seconds; a bound on waiting, never an assertion about speed


async def client_doc(db: Any, client_id: str) -> User:
    return User.model_validate(await db.users.find_one({"_id": client_id}))


async def divergences(db: Any, reseller_id: str) -> list[str]:
    """Every way a stored ticket differs from the fold of its events (state and version) and from
    its newest message (last_message_at). Reads the store directly: no load(), no roll-forward."""
    scope = {"reseller_id": reseller_id}
    events: dict[str, list[dict[str, Any]]] = {}
    for e in await db.ticket_events.find(scope).sort([("ticket_id", 1), ("version", 1)]).to_list(None):
        events.setdefault(str(e["ticket_id"]), []).append(e)
    docs = {str(d["_id"]): d for d in await db.tickets.find(scope).to_list(None)}
    newest: dict[str, Any] = {}
    moved_away: dict[str, set[Any]] = {}
    fields = {"ticket_id": 1, "created_at": 1, "direction": 1, "moved_from_ticket_id": 1}
    for m in await db.messages.find(scope, fields).to_list(None):
        at = as_utc(m["created_at"])
        if m.get("direction") == "note":
            continue  # internal notes never make a ticket's activity
        newest[str(m["ticket_id"])] = max(at, newest.get(str(m["ticket_id"]), at))
        if m.get("moved_from_ticket_id"):
            moved_away.setdefault(str(m["moved_from_ticket_id"]), set()).add(at)
    out: list[str] = []
    for tid, evs in sorted(events.items()):
        assert [e["version"] for e in evs] == list(range(1, len(evs) + 1)), tid
        doc = docs.get(tid)
        if doc is None:
            out.append(f"{tid}: no ticket document for its {len(evs)} events")
            continue
        want = {**{k: evs[-1]["state"].get(k) for k in STATE_FIELDS}, "version": evs[-1]["version"]}
        have = {k: doc.get(k) for k in want}
        if have != want:
            out.append(f"{tid}: projection {have} != log {want}")
        # A ticket opened for a message that raced a finalize (messages.service) is younger than
        # that message: its activity is then its opening.
        shown = max(newest[tid], as_utc(doc["created_at"])) if tid in newest else None
        # A message that raced the finalize may have been shown by this ticket (its writer saw it
        # open) before the finalize moved it on: the finalized ticket keeps that preview.
        raced = {a for a in moved_away.get(tid, set()) if shown is None or a > shown}
        have_at = as_utc(doc["last_message_at"])
        if shown is not None and have_at != shown and not (doc["status"] == "finalizado" and have_at in raced):
            out.append(f"{tid}: last_message_at {doc['last_message_at']} != newest message {shown}")
    return out


async def wait_converged(db: Any, reseller_id: str) -> None:
    """Polls the store until every ticket equals its log and messages (bounded; fails with the
    differences left)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONVERGENCE_TIMEOUT
    while True:
        left = await divergences(db, reseller_id)
        if not left or loop.time() >= deadline:
            break
        await asyncio.sleep(0.2)
    assert not left, left[:10]


async def assert_lists_agree(client: httpx.AsyncClient, tenant: Tenant) -> dict[str, str]:
    """`GET /tickets?status=…` and `/tickets/counts` say what `GET /tickets/{id}` says, for every
    ticket of the tenant. Returns each ticket's status."""
    listed: dict[str, str] = {}
    for status in STATUSES:
        for item in await collect_pages(client, tenant.headers, f"{API}/tickets", status=status):
            assert item["id"] not in listed, item
            assert item["status"] == status, item
            listed[item["id"]] = status
    single = {tid: (await get_ticket(client, tenant.headers, tid))["status"] for tid in listed}
    assert single == listed
    r = await client.get(f"{API}/tickets/counts", headers=tenant.headers)
    assert r.status_code == 200, r.text
    counts = r.json()
    assert {s: counts[s] for s in STATUSES} == {s: list(listed.values()).count(s) for s in STATUSES}
    return listed


def write_back_with(
    monkeypatch: pytest.MonkeyPatch,
    *,
    ticket_id: str,
    field: str,
    competitor: Callable[[], Awaitable[Any]],
) -> list[bool]:
    """Makes the next update of `ticket_id` that $sets `field` behave exactly as FerretDB v1 runs
    every update — read the whole document, apply the update to that copy, write the copy back
    by `_id`, and answer with that copy — with `competitor` run between the read and the write.
    Returns a one-item list that turns True once the competitor ran."""
    fired = [False]
    real = conditional.update_if

    async def update_if(
        db: Any,
        collection: str,
        _id: Any,
        condition: Mapping[str, Any],
        update: Mapping[str, Any],
        *,
        current: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        sets = dict(update.get("$set", {}))
        if fired[0] or _id != ticket_id or field not in sets or set(update) != {"$set"}:
            return await real(db, collection, _id, condition, update, current=current)
        fired[0] = True
        doc = await db[collection].find_one({"_id": _id})
        if doc is None or not conditional.matches(current if current is not None else doc, condition):
            return None
        await competitor()
        written = {**doc, **sets}
        await db[collection].replace_one({"_id": _id}, written)
        return written

    monkeypatch.setattr(tickets_repo, "update_if", update_if)
    return fired


async def log_assume_without_projecting(
    db: Any, ticket_id: str, agent: dict[str, Any], *, at: datetime | None = None
) -> None:
    """What a writer killed between its event and the ticket leaves: `agent`'s assume logged as
    the next event (at `at`, now by default), the stored ticket never moved."""
    current = await db.tickets.find_one({"_id": ticket_id})
    state = {
        **{k: current[k] for k in STATE_FIELDS},
        "status": Status.ATENDENDO.value,
        "agent_id": agent["id"],
        "agent_name": agent["name"],
    }
    await events.insert(
        db,
        TicketEvent(
            id=events.event_id(ticket_id, current["version"] + 1),
            ticket_id=ticket_id,
            reseller_id=current["reseller_id"],
            version=current["version"] + 1,
            type="assumed",
            actor_id=agent["id"],
            actor_role="agent",
            from_status=current["status"],
            to_status=state["status"],
            state=state,
            at=at or utcnow(),
            data={"action": "assume"},
        ),
    )


async def open_channel_ticket(client: httpx.AsyncClient, db: Any, tenant: Tenant) -> tuple[Ticket, str]:
    """A client's first message on a channel of its own, filed by intake: its ticket and the client."""
    customer = await make_client(client, tenant)
    fresh = await users.get_internal(db, customer["id"])
    assert fresh is not None
    ticket, _, _ = await intake.receive_client_message(
        db,
        reseller_id=tenant.id,
        client=fresh,
        department_id=tenant.departments[0]["id"],
        channel=new_id(),
        body="oi",
        message_id=new_id(),
    )
    return ticket, customer["id"]
