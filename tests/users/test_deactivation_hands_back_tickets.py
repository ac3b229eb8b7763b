"""Deactivating an agent hands back the tickets it holds (backend/users/deactivation.py): each of its
tickets in atendendo waits again in its own department, as a transfer by whoever deactivated it
(the reseller's owner or the platform admin), the reason in the event's data; nothing else moves.
A deactivation cut short is finished by repeating it, and an assume of the agent's that was under
way when it was deactivated does not leave it holding a ticket."""

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from backend.tickets import service as tickets_service
from tests.factories import (
    API,
    Tenant,
    assume,
    collect_pages,
    get_ticket,
    make_agent,
    make_client,
    make_client_ticket,
    make_open_connection,
    make_tenant,
    ticket_events,
)
from tests.webhooks.client_steps import inbound

REASON = {"reason": "agent_deactivated"}


@dataclass
class Desk:
    """A tenant with two departments, an agent in both holding a ticket in each (and one it
    finalized), a colleague in each department, and the WhatsApp connection the first client
    writes on."""

    tenant: Tenant
    conn: dict[str, Any]
    holder: dict[str, Any]
    colleagues: list[dict[str, Any]]  # one per department, in that department only
    held: list[dict[str, Any]]  # one per department, atendendo with the holder
    phone: str  # the client of held[0], who writes again
    finalized: dict[str, Any]


async def _desk(client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any) -> Desk:
    tenant = await make_tenant(client, admin_headers, departments=2, agents=0)
    depts = [d["id"] for d in tenant.departments]
    holder = await make_agent(client, tenant, depts)
    colleagues = [await make_agent(client, tenant, [d]) for d in depts]
    conn = await make_open_connection(client, tenant, db)
    customers = [await make_client(client, tenant) for _ in range(3)]
    held = []
    for dept, customer in zip(depts, customers, strict=False):
        ticket = await make_client_ticket(
            client, tenant, db, connection=conn, department_id=dept, customer=customer, message="Oi, preciso de ajuda"
        )
        held.append(await assume(client, holder["headers"], ticket["id"]))
    done = await make_client_ticket(client, tenant, db, connection=conn, customer=customers[2])
    await assume(client, holder["headers"], done["id"])
    r = await client.post(f"{API}/tickets/{done['id']}/finalize", headers=holder["headers"])
    assert r.status_code == 200, r.text
    return Desk(tenant, conn, holder, colleagues, held, customers[0]["phone"], r.json())


async def _deactivate(client: httpx.AsyncClient, headers: dict[str, str], user_id: str) -> httpx.Response:
    return await client.patch(f"{API}/users/{user_id}", json={"active": False}, headers=headers)


async def _inbound(client: httpx.AsyncClient, db: Any, conn: dict[str, Any], phone: str, text: str) -> str:
    """The client writes on WhatsApp; the id its message is stored under once processed."""
    raw, message_id = await inbound(client, db, conn, phone, text)
    assert raw["status"] == "processed", raw
    return message_id


async def _espera_ids(client: httpx.AsyncClient, headers: dict[str, str]) -> set[str]:
    return {t["id"] for t in await collect_pages(client, headers, f"{API}/tickets", status="espera")}


async def _me(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    r = await client.get(f"{API}/auth/me", headers=headers)
    assert r.status_code == 200, r.text
    me: dict[str, Any] = r.json()
    return me


async def _assert_handed_back(
    client: httpx.AsyncClient, desk: Desk, ticket_id: str, *, dept_index: int, by: dict[str, Any]
) -> None:
    """Espera in its own department, no agent, the last event a transfer by `by` giving the reason."""
    ticket = await get_ticket(client, desk.tenant.headers, ticket_id)
    dept = desk.tenant.departments[dept_index]
    assert (ticket["status"], ticket["agent_id"], ticket["department_id"]) == ("espera", None, dept["id"])
    events = await ticket_events(client, desk.tenant.headers, ticket_id)
    moves = [e for e in events if e["type"] == "transferred"]
    assert len(moves) == 1, events  # handed back once, however many times it was asked
    last = events[-1]
    assert last is moves[0]
    assert (last["actor_id"], last["actor_role"], last["actor_name"]) == (by["id"], by["role"], by["name"])
    assert (last["from_status"], last["to_status"], last["target_name"]) == ("atendendo", "espera", dept["name"])
    assert last["data"]["reason"] == REASON["reason"]
    assert last["data"]["from_agent_id"] == desk.holder["id"]
    assert last["data"]["to_department_id"] == dept["id"]


@pytest.mark.parametrize("by", ["owner", "admin"])
async def test_deactivating_an_agent_returns_its_open_tickets_to_their_department_queues(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any, by: str
) -> None:
    desk = await _desk(client, admin_headers, db)
    headers = desk.tenant.headers if by == "owner" else admin_headers
    actor = await _me(client, headers)
    finalized_events = await ticket_events(client, desk.tenant.headers, desk.finalized["id"])

    r = await _deactivate(client, headers, desk.holder["id"])
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False

    for i, ticket in enumerate(desk.held):
        await _assert_handed_back(client, desk, ticket["id"], dept_index=i, by=actor)
    # The finalized ticket is left as it was.
    finalized = await get_ticket(client, desk.tenant.headers, desk.finalized["id"])
    assert (finalized["status"], finalized["finalized_at"]) == ("finalizado", desk.finalized["finalized_at"])
    assert await ticket_events(client, desk.tenant.headers, desk.finalized["id"]) == finalized_events
    r = await client.get(f"{API}/tickets/counts", headers=desk.tenant.headers)
    assert r.json() == {"espera": 2, "atendendo": 0, "finalizado": 1}

    # Each department's agent finds its ticket in its queue; the client's next message lands there.
    first, second = desk.held
    assert first["id"] in await _espera_ids(client, desk.colleagues[0]["headers"])
    assert second["id"] in await _espera_ids(client, desk.colleagues[1]["headers"])
    message_id = await _inbound(client, db, desk.conn, desk.phone, "Alguém? Ainda estou esperando")
    stored = await db.messages.find_one({"_id": message_id})
    assert stored is not None and stored["ticket_id"] == first["id"]
    ticket = await get_ticket(client, desk.colleagues[0]["headers"], first["id"])
    assert (ticket["status"], ticket["agent_id"]) == ("espera", None)
    r = await client.get(f"{API}/tickets/{first['id']}/messages", headers=desk.colleagues[0]["headers"])
    assert "Alguém? Ainda estou esperando" in [m["body"] for m in r.json()["items"]]

    # A colleague takes it over and answers; the other waits for its own department.
    taken = await assume(client, desk.colleagues[0]["headers"], first["id"])
    assert taken["agent_id"] == desk.colleagues[0]["id"]
    r = await client.post(
        f"{API}/tickets/{first['id']}/messages", json={"body": "Oi! Eu assumo."}, headers=desk.colleagues[0]["headers"]
    )
    assert r.status_code == 201, r.text
    assert (await assume(client, desk.colleagues[1]["headers"], second["id"]))["agent_id"] == desk.colleagues[1]["id"]


@pytest.mark.parametrize("crash_after", [0, 1])
async def test_a_deactivation_cut_short_is_finished_by_repeating_it(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any, monkeypatch: pytest.MonkeyPatch, crash_after: int
) -> None:
    """The process dies after the user is stored inactive, before the release (crash_after=0) or
    after it handed back the first ticket (1): repeating the PATCH hands back the rest, once."""
    desk = await _desk(client, admin_headers, db)
    owner = await _me(client, desk.tenant.headers)
    hand_back, done = tickets_service._hand_back, 0

    async def dies_after_some(*args: Any, **kwargs: Any) -> Any:
        nonlocal done
        if done == crash_after:
            raise RuntimeError("process killed")
        done += 1
        return await hand_back(*args, **kwargs)

    monkeypatch.setattr(tickets_service, "_hand_back", dies_after_some)
    with pytest.raises(RuntimeError, match="process killed"):
        await _deactivate(client, desk.tenant.headers, desk.holder["id"])
    monkeypatch.undo()

    # Where it stopped: the user is inactive (its sessions ended), some tickets still with it.
    stored = await db.users.find_one({"_id": desk.holder["id"]})
    assert stored["active"] is False
    r = await client.get(f"{API}/auth/me", headers=desk.holder["headers"])
    assert r.status_code == 401
    statuses = [(await get_ticket(client, desk.tenant.headers, t["id"]))["status"] for t in desk.held]
    assert statuses == ["espera"] * crash_after + ["atendendo"] * (2 - crash_after)

    # The repeat, on a user already inactive, finishes the job; a third changes nothing.
    for _ in range(2):
        r = await _deactivate(client, desk.tenant.headers, desk.holder["id"])
        assert r.status_code == 200, r.text
        for i, ticket in enumerate(desk.held):
            await _assert_handed_back(client, desk, ticket["id"], dept_index=i, by=owner)
    assert (await get_ticket(client, desk.tenant.headers, desk.finalized["id"]))["status"] == "finalizado"


async def _espera_ticket(client: httpx.AsyncClient, desk: Desk, db: Any) -> dict[str, Any]:
    """A new ticket waiting in the first department (the holder may assume it)."""
    return await make_client_ticket(client, desk.tenant, db, connection=desk.conn)


def _hold_assume(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[asyncio.Event, asyncio.Event]:
    """Holds the next assume request after its authentication (the route has the actor) until
    `go` is set; `entered` is set once it is held."""
    entered, go = asyncio.Event(), asyncio.Event()
    original = tickets_service.assume

    async def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        await go.wait()
        return await original(*args, **kwargs)

    monkeypatch.setattr(tickets_service, "assume", held)
    return entered, go


async def _in_flight(
    client: httpx.AsyncClient, desk: Desk, ticket_id: str, monkeypatch: pytest.MonkeyPatch
) -> tuple["asyncio.Task[httpx.Response]", asyncio.Event]:
    """The holder's assume of `ticket_id`, authenticated and held before its move (`go` lets it on)."""
    entered, go = _hold_assume(monkeypatch)
    request = asyncio.create_task(client.post(f"{API}/tickets/{ticket_id}/assume", headers=desk.holder["headers"]))
    await asyncio.wait_for(entered.wait(), 30)
    return request, go


async def _assert_handed_back_by_its_assume(client: httpx.AsyncClient, desk: Desk, ticket_id: str) -> None:
    """The holder's assume landed after its deactivation, and gave the ticket back at once."""
    ticket = await get_ticket(client, desk.tenant.headers, ticket_id)
    assert (ticket["status"], ticket["agent_id"]) == ("espera", None)
    events = await ticket_events(client, desk.tenant.headers, ticket_id)
    assert [(e["type"], e["actor_id"]) for e in events[1:]] == [
        ("assumed", desk.holder["id"]),
        ("transferred", desk.holder["id"]),
    ]
    assert events[-1]["data"]["reason"] == REASON["reason"]
    assert events[-1]["data"]["to_department_id"] == desk.tenant.departments[0]["id"]
    assert ticket_id in await _espera_ids(client, desk.colleagues[0]["headers"])
    await assume(client, desk.colleagues[0]["headers"], ticket_id)


async def test_an_assume_landing_between_the_deactivation_and_the_release_does_not_keep_the_ticket(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = await _desk(client, admin_headers, db)
    waiting = await _espera_ticket(client, desk, db)
    request, go = await _in_flight(client, desk, waiting["id"], monkeypatch)

    # The PATCH stores the user inactive, then, before its release reads what the agent holds,
    # the assume that was under way lands.
    release = tickets_service.release_held_by

    async def assume_lands_first(*args: Any, **kwargs: Any) -> list[str]:
        stored = await db.users.find_one({"_id": desk.holder["id"]})
        assert stored["active"] is False  # step 1 is written
        go.set()
        landed = await request
        assert landed.status_code == 401, landed.text  # its session ended under it
        return await release(*args, **kwargs)

    monkeypatch.setattr(tickets_service, "release_held_by", assume_lands_first)
    r = await _deactivate(client, desk.tenant.headers, desk.holder["id"])
    assert r.status_code == 200, r.text
    assert request.done()
    await _assert_handed_back_by_its_assume(client, desk, waiting["id"])


async def test_an_assume_landing_after_the_release_hands_the_ticket_back_itself(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = await _desk(client, admin_headers, db)
    waiting = await _espera_ticket(client, desk, db)
    request, go = await _in_flight(client, desk, waiting["id"], monkeypatch)

    r = await _deactivate(client, desk.tenant.headers, desk.holder["id"])  # the whole PATCH, release included
    assert r.status_code == 200, r.text
    assert not request.done()
    go.set()
    landed = await request
    assert landed.status_code == 401, landed.text
    await _assert_handed_back_by_its_assume(client, desk, waiting["id"])


async def test_an_assume_landing_just_before_the_deactivation_is_handed_back_once(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The assume's event lands, then the whole PATCH runs before the assume reads the user back:
    the release hands the ticket back, and the assume, finding its agent inactive, does not move
    it a second time."""
    desk = await _desk(client, admin_headers, db)
    owner = await _me(client, desk.tenant.headers)
    waiting = await _espera_ticket(client, desk, db)
    check = tickets_service.hand_back_if_inactive

    async def deactivated_before_the_check(db_: Any, ticket: Any) -> bool:
        assert (ticket.status, ticket.agent_id) == ("atendendo", desk.holder["id"])  # its event landed
        r = await _deactivate(client, desk.tenant.headers, desk.holder["id"])
        assert r.status_code == 200, r.text
        return await check(db_, ticket)

    monkeypatch.setattr(tickets_service, "hand_back_if_inactive", deactivated_before_the_check)
    r = await client.post(f"{API}/tickets/{waiting['id']}/assume", headers=desk.holder["headers"])
    assert r.status_code == 401, r.text
    monkeypatch.undo()
    ticket = await get_ticket(client, desk.tenant.headers, waiting["id"])
    assert (ticket["status"], ticket["agent_id"]) == ("espera", None)
    events = await ticket_events(client, desk.tenant.headers, waiting["id"])
    assert [(e["type"], e["actor_id"]) for e in events[1:]] == [
        ("assumed", desk.holder["id"]),
        ("transferred", owner["id"]),
    ]
    assert events[-1]["data"]["reason"] == REASON["reason"]


async def test_a_reopen_by_an_agent_deactivated_meanwhile_waits_in_the_queue(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "Reabrir" opens the new ticket atendendo with the agent; deactivated before it reads itself
    back, the agent keeps nothing: the new ticket waits in its department."""
    desk = await _desk(client, admin_headers, db)
    check = tickets_service.hand_back_if_inactive

    async def deactivated_before_the_check(db_: Any, ticket: Any) -> bool:
        r = await _deactivate(client, desk.tenant.headers, desk.holder["id"])
        assert r.status_code == 200, r.text
        return await check(db_, ticket)

    monkeypatch.setattr(tickets_service, "hand_back_if_inactive", deactivated_before_the_check)
    r = await client.post(f"{API}/tickets/{desk.finalized['id']}/reopen", headers=desk.holder["headers"])
    assert r.status_code == 401, r.text
    monkeypatch.undo()
    old = await get_ticket(client, desk.tenant.headers, desk.finalized["id"])
    new = await get_ticket(client, desk.tenant.headers, old["reopened_as_ticket_id"])
    assert (new["status"], new["agent_id"], new["department_id"]) == ("espera", None, old["department_id"])
    assert new["id"] in await _espera_ids(client, desk.colleagues[0]["headers"])


async def test_a_transfer_to_an_agent_deactivated_as_it_lands_goes_back_to_the_queue(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner transfers a ticket to the agent; the agent passed the transfer's "is active"
    check and is deactivated before the move lands: the move is undone at once, and refused."""
    desk = await _desk(client, admin_headers, db)
    ticket = await _espera_ticket(client, desk, db)
    await assume(client, desk.colleagues[0]["headers"], ticket["id"])
    transition = tickets_service._transition

    async def deactivated_meanwhile(*args: Any, **kwargs: Any) -> Any:
        if kwargs["action"] is tickets_service.Action.TRANSFER_TO_AGENT:
            r = await _deactivate(client, desk.tenant.headers, desk.holder["id"])
            assert r.status_code == 200, r.text
        return await transition(*args, **kwargs)

    monkeypatch.setattr(tickets_service, "_transition", deactivated_meanwhile)
    r = await client.post(
        f"{API}/tickets/{ticket['id']}/transfer",
        json={"agent_id": desk.holder["id"]},
        headers=desk.colleagues[0]["headers"],
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == "agent is inactive"
    monkeypatch.undo()
    found = await get_ticket(client, desk.tenant.headers, ticket["id"])
    assert (found["status"], found["agent_id"], found["department_id"]) == (
        "espera",
        None,
        desk.tenant.departments[0]["id"],
    )
    types = [(e["type"], e["actor_id"]) for e in await ticket_events(client, desk.tenant.headers, ticket["id"])]
    assert types[-2:] == [("transferred", desk.colleagues[0]["id"]), ("transferred", desk.holder["id"])]


async def test_only_who_manages_the_agent_releases_its_tickets(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any
) -> None:
    """The release's own check (tickets.service.release_held_by), not a transfer's permission:
    another tenant's owner finds no such user, and an active agent keeps its tickets."""
    desk = await _desk(client, admin_headers, db)
    other = await make_tenant(client, admin_headers, departments=1, agents=0)
    r = await _deactivate(client, other.headers, desk.holder["id"])
    assert r.status_code == 404
    owner = await _load_actor(db, desk.tenant.owner_id)
    assert await tickets_service.release_held_by(db, owner, holder_id=desk.holder["id"]) == []  # still active
    for ticket in desk.held:
        assert (await get_ticket(client, desk.tenant.headers, ticket["id"]))["status"] == "atendendo"
    stranger = await _load_actor(db, other.owner_id)
    with pytest.raises(tickets_service.NotFound):
        await tickets_service.release_held_by(db, stranger, holder_id=desk.holder["id"])


async def _load_actor(db: Any, user_id: str) -> Any:
    from backend.core.tenancy import Actor

    doc = await db.users.find_one({"_id": user_id})
    return Actor(id=doc["_id"], role=doc["role"], name=doc["name"], reseller_id=doc.get("reseller_id"))
