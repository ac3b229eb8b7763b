"""Issue 16 items 6 and 7 through the API: routing a waiting ticket by people (the owner, or an
agent of its department, moves it to another department's queue), the owner acting as an agent,
and "Reabrir" — a new ticket linked both ways, exactly one open ticket per client and channel
whatever races it."""

import asyncio
from typing import Any

import httpx
import pytest

from backend.core import natural_keys
from backend.core.tenancy import Actor
from backend.tickets import intake, states
from backend.tickets import service as tickets_service
from backend.tickets.models import Ticket
from backend.users.models import User
from tests.factories import API, Tenant, assume, get_ticket, make_agent, make_tenant, make_ticket, ticket_events


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    t = await make_tenant(client, admin_headers, departments=2, agents=2)
    # An agent of the second department only: it cannot see the first one's queue.
    t.agents.append(await make_agent(client, t, [t.departments[1]["id"]]))
    return t


@pytest.fixture(scope="module")
async def other(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, departments=1, agents=1)


async def _finalized(client: httpx.AsyncClient, tenant: Tenant) -> dict[str, Any]:
    ticket = await make_ticket(client, tenant)
    holder = tenant.agents[0]["headers"]
    await assume(client, holder, ticket["id"])
    r = await client.post(f"{API}/tickets/{ticket['id']}/finalize", headers=holder)
    assert r.status_code == 200, r.text
    return ticket


async def _open_tickets(db: Any, client_id: str, channel: str) -> list[dict[str, Any]]:
    docs = await db.tickets.find({"client_id": client_id, "channel": channel}).to_list(length=None)
    return [d for d in docs if d["status"] in ("espera", "atendendo")]


# --- item 6: routing by people ----------------------------------------------------------------


@pytest.mark.parametrize("who", ["agent", "owner"])
async def test_espera_ticket_moves_to_another_department_recorded_in_events(
    client: httpx.AsyncClient, tenant: Tenant, who: str
) -> None:
    ticket = await make_ticket(client, tenant)
    headers = tenant.agents[0]["headers"] if who == "agent" else tenant.headers
    target = tenant.departments[1]["id"]
    r = await client.post(f"{API}/tickets/{ticket['id']}/transfer", json={"department_id": target}, headers=headers)
    assert r.status_code == 200, r.text
    moved = r.json()
    assert moved["status"] == "espera" and moved["department_id"] == target and moved["agent_id"] is None
    last = (await ticket_events(client, tenant.headers, ticket["id"]))[-1]
    assert last["type"] == "transferred" and last["from_status"] == "espera" and last["to_status"] == "espera"
    assert last["data"]["to_department_id"] == target
    assert last["actor_id"] == (tenant.agents[0]["id"] if who == "agent" else tenant.owner_id)
    # The second department's agent now sees it in its queue.
    assert (await get_ticket(client, tenant.agents[2]["headers"], ticket["id"]))["department_id"] == target


async def test_agent_of_another_department_cannot_move_an_espera_ticket(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    ticket = await make_ticket(client, tenant)
    body = {"department_id": tenant.departments[1]["id"]}
    r = await client.post(f"{API}/tickets/{ticket['id']}/transfer", json=body, headers=tenant.agents[2]["headers"])
    assert r.status_code == 404, r.text
    assert (await get_ticket(client, tenant.headers, ticket["id"]))["department_id"] == tenant.departments[0]["id"]


async def test_moving_to_its_own_department_or_a_bad_one_changes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, other: Tenant
) -> None:
    ticket = await make_ticket(client, tenant)
    path = f"{API}/tickets/{ticket['id']}/transfer"
    before = len(await ticket_events(client, tenant.headers, ticket["id"]))
    r = await client.post(path, json={"department_id": tenant.departments[0]["id"]}, headers=tenant.headers)
    assert r.status_code == 409, r.text
    r = await client.post(path, json={"department_id": other.departments[0]["id"]}, headers=tenant.headers)
    assert r.status_code == 422, r.text
    r = await client.post(path, json={"department_id": "not-an-id"}, headers=tenant.headers)
    assert r.status_code == 422, r.text
    # Another tenant's owner does not learn the ticket exists.
    r = await client.post(path, json={"department_id": other.departments[0]["id"]}, headers=other.headers)
    assert r.status_code == 404, r.text
    assert len(await ticket_events(client, tenant.headers, ticket["id"])) == before


async def test_owner_assumes_and_finalizes_like_an_agent(client: httpx.AsyncClient, tenant: Tenant) -> None:
    ticket = await make_ticket(client, tenant)
    taken = await assume(client, tenant.headers, ticket["id"])
    assert taken["status"] == "atendendo" and taken["agent_id"] == tenant.owner_id
    # Held by the owner: an agent cannot take it over by assuming.
    r = await client.post(f"{API}/tickets/{ticket['id']}/assume", headers=tenant.agents[0]["headers"])
    assert r.status_code == 409, r.text
    r = await client.post(f"{API}/tickets/{ticket['id']}/finalize", headers=tenant.headers)
    assert r.status_code == 200, r.text
    types = [e["type"] for e in await ticket_events(client, tenant.headers, ticket["id"])]
    assert types == ["created", "assumed", "finalized"]


async def test_owner_and_agent_assuming_at_once_one_wins(client: httpx.AsyncClient, tenant: Tenant) -> None:
    ticket = await make_ticket(client, tenant)
    path = f"{API}/tickets/{ticket['id']}/assume"
    a, b = await asyncio.gather(
        client.post(path, headers=tenant.headers), client.post(path, headers=tenant.agents[0]["headers"])
    )
    assert sorted([a.status_code, b.status_code]) == [200, 409], (a.text, b.text)
    winner = tenant.owner_id if a.status_code == 200 else tenant.agents[0]["id"]
    assert (await get_ticket(client, tenant.headers, ticket["id"]))["agent_id"] == winner


# --- item 7: Reabrir ----------------------------------------------------------------------------


async def test_reopen_opens_a_linked_ticket_atendendo_with_whoever_pressed_it(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    old = await _finalized(client, tenant)
    agent = tenant.agents[1]  # not the one who held it: it reopens from the client's history
    r = await client.post(f"{API}/tickets/{old['id']}/reopen", headers=tenant.headers)
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["id"] != old["id"] and new["status"] == "atendendo" and new["agent_id"] == tenant.owner_id
    assert new["client_id"] == old["client_id"] and new["channel"] == old["channel"]
    assert new["reopened_from_ticket_id"] == old["id"]
    again = await get_ticket(client, tenant.headers, old["id"])
    assert again["status"] == "finalizado" and again["reopened_as_ticket_id"] == new["id"]
    created = (await ticket_events(client, tenant.headers, new["id"]))[0]
    assert created["type"] == "created" and created["to_status"] == "atendendo"
    assert created["actor_id"] == tenant.owner_id
    # Once reopened, never twice: 409 naming the ticket it became.
    r = await client.post(f"{API}/tickets/{old['id']}/reopen", headers=agent["headers"])
    assert r.status_code in (404, 409), r.text
    r = await client.post(f"{API}/tickets/{old['id']}/reopen", headers=tenant.headers)
    assert r.status_code == 409 and r.json()["detail"]["ticket_id"] == new["id"], r.text


async def test_reopen_by_the_agent_who_held_it(client: httpx.AsyncClient, tenant: Tenant) -> None:
    old = await _finalized(client, tenant)
    r = await client.post(f"{API}/tickets/{old['id']}/reopen", headers=tenant.agents[0]["headers"])
    assert r.status_code == 201, r.text
    assert r.json()["agent_id"] == tenant.agents[0]["id"]


async def test_reopen_refuses_open_foreign_and_wrong_roles(
    client: httpx.AsyncClient, tenant: Tenant, other: Tenant, admin_headers: dict[str, str]
) -> None:
    open_one = await make_ticket(client, tenant)
    r = await client.post(f"{API}/tickets/{open_one['id']}/reopen", headers=tenant.headers)
    assert r.status_code == 409, r.text
    old = await _finalized(client, tenant)
    assert (await client.post(f"{API}/tickets/{old['id']}/reopen", headers=other.headers)).status_code == 404
    assert (await client.post(f"{API}/tickets/{old['id']}/reopen", headers=admin_headers)).status_code == 403
    # An agent of the other department never saw it.
    r = await client.post(f"{API}/tickets/{old['id']}/reopen", headers=tenant.agents[2]["headers"])
    assert r.status_code == 404, r.text
    assert (await client.post(f"{API}/tickets/not-an-id/reopen", headers=tenant.headers)).status_code == 404
    assert (await get_ticket(client, tenant.headers, old["id"])).get("reopened_as_ticket_id") is None


async def test_two_people_pressing_reabrir_at_once_open_one_ticket(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    old = await _finalized(client, tenant)
    path = f"{API}/tickets/{old['id']}/reopen"
    a, b = await asyncio.gather(
        client.post(path, headers=tenant.headers), client.post(path, headers=tenant.agents[0]["headers"])
    )
    assert sorted([a.status_code, b.status_code]) == [201, 409], (a.text, b.text)
    winner = a if a.status_code == 201 else b
    open_now = await _open_tickets(db, old["client_id"], old["channel"])
    assert [t["_id"] for t in open_now] == [winner.json()["id"]]


async def _client_writes(db: Any, old: dict[str, Any], body: str) -> tuple[Ticket, dict[str, Any], bool]:
    """A client message on the old ticket's channel, as intake files it (the competitor)."""
    customer = User.model_validate(await db.users.find_one({"_id": old["client_id"]}))
    return await intake.receive_client_message(
        db,
        reseller_id=old["reseller_id"],
        client=customer,
        department_id=old["department_id"],
        channel=old["channel"],
        body=body,
    )


async def test_client_message_between_reopen_check_and_slot_claim_leaves_one_open_ticket(
    client: httpx.AsyncClient, tenant: Tenant, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The competitor runs after Reabrir judged the old ticket finalized and not reopened, before
    it claims the client's next slot: the client's message opens that slot's ticket first, and
    Reabrir answers 409 naming it."""
    old = await _finalized(client, tenant)
    real = tickets_service.open_for_client
    competitor: list[tuple[Ticket, dict[str, Any], bool]] = []

    async def first_the_client(*args: Any, **kwargs: Any) -> Any:
        if isinstance(kwargs.get("opening"), tickets_service.Opening) and not competitor:  # Reabrir's, not intake's
            competitor.append(await _client_writes(db, old, "voltei"))
        return await real(*args, **kwargs)

    monkeypatch.setattr(tickets_service, "open_for_client", first_the_client)
    r = await client.post(f"{API}/tickets/{old['id']}/reopen", headers=tenant.headers)
    assert r.status_code == 409, r.text
    ticket, message, created = competitor[0]
    assert created and r.json()["detail"]["ticket_id"] == ticket.id
    open_now = await _open_tickets(db, old["client_id"], old["channel"])
    assert [t["_id"] for t in open_now] == [ticket.id]
    assert (await db.messages.find_one({"_id": message.id}))["ticket_id"] == ticket.id
    assert (await get_ticket(client, tenant.headers, old["id"])).get("reopened_as_ticket_id") is None


async def test_client_message_between_slot_claim_and_ticket_write_leaves_one_open_ticket(
    client: httpx.AsyncClient, tenant: Tenant, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The competitor runs after Reabrir claimed the next slot, before it writes the ticket's
    creation event: the client's message finds the slot bound with no ticket and completes it
    itself (in espera); Reabrir's event v1 loses, so it answers 409 and nothing is doubled."""
    old = await _finalized(client, tenant)
    real = tickets_service._create
    competitor: list[tuple[Ticket, dict[str, Any], bool]] = []

    async def first_the_client(*args: Any, **kwargs: Any) -> Any:
        if isinstance(kwargs.get("opening"), tickets_service.Opening) and not competitor:  # Reabrir's, not intake's
            competitor.append(await _client_writes(db, old, "voltei"))
        return await real(*args, **kwargs)

    monkeypatch.setattr(tickets_service, "_create", first_the_client)
    r = await client.post(f"{API}/tickets/{old['id']}/reopen", headers=tenant.headers)
    assert r.status_code == 409, r.text
    ticket, message, _ = competitor[0]
    open_now = await _open_tickets(db, old["client_id"], old["channel"])
    assert [t["_id"] for t in open_now] == [ticket.id]
    assert open_now[0]["status"] == "espera" and open_now[0]["agent_id"] is None
    assert (await db.messages.find_one({"_id": message.id}))["ticket_id"] == ticket.id


async def test_client_message_after_reopen_lands_in_the_reopened_ticket(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    old = await _finalized(client, tenant)
    r = await client.post(f"{API}/tickets/{old['id']}/reopen", headers=tenant.headers)
    assert r.status_code == 201, r.text
    ticket, _, created = await _client_writes(db, old, "obrigado")
    assert not created and ticket.id == r.json()["id"]


# --- Reabrir's two writes: the new ticket (pointing back), then the old one's forward key -------


class _Killed(BaseException):
    """The process dying between the two writes: nothing after the raise runs, nothing catches it."""


def _between_ticket_and_link(monkeypatch: pytest.MonkeyPatch, step: Any) -> list[str]:
    """Runs `step(new_ticket_id)` in place of Reabrir's first forward-key claim, then goes on
    with the real claim unless `step` raised. Returns the ids it was called with."""
    real = natural_keys.claim
    seen: list[str] = []

    async def claim(db_: Any, kind: str, *parts: str, target: str) -> tuple[str, bool]:
        if kind == states.REOPENED_KEY and not seen:
            seen.append(target)
            await step(target)
        return await real(db_, kind, *parts, target=target)

    monkeypatch.setattr(natural_keys, "claim", claim)
    return seen


def _owner(tenant: Tenant) -> Actor:
    return Actor(id=tenant.owner_id, role="reseller", name="Dona", reseller_id=tenant.id)


async def _reopened_pointing_back(db: Any, old: dict[str, Any]) -> list[str]:
    docs = await db.tickets.find({"reopened_from_ticket_id": old["id"]}).to_list(length=None)
    return [d["_id"] for d in docs]


async def _reopen_killed_between_the_writes(
    client: httpx.AsyncClient, tenant: Tenant, db: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], str]:
    """A finalized ticket whose Reabrir died after writing the new ticket, before the link claim.
    Returns (the old ticket, the new ticket's id)."""
    old = await _finalized(client, tenant)

    async def die(_: str) -> None:
        raise _Killed

    seen = _between_ticket_and_link(monkeypatch, die)
    with pytest.raises(_Killed):
        await tickets_service.reopen(db, _owner(tenant), ticket_id=old["id"])
    monkeypatch.undo()
    [new_id] = seen
    return old, new_id


async def test_killed_between_the_new_ticket_and_the_link_both_threads_show_it(
    client: httpx.AsyncClient, tenant: Tenant, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old ticket's screen completes the forward link from the new ticket's back link."""
    old, new_id = await _reopen_killed_between_the_writes(client, tenant, db, monkeypatch)
    assert await natural_keys.lookup(db, states.REOPENED_KEY, tenant.id, old["id"]) is None  # the crash's state
    assert (await get_ticket(client, tenant.headers, old["id"]))["reopened_as_ticket_id"] == new_id
    new = await get_ticket(client, tenant.headers, new_id)
    assert new["reopened_from_ticket_id"] == old["id"] and new["status"] == "atendendo"
    assert await natural_keys.lookup(db, states.REOPENED_KEY, tenant.id, old["id"]) == new_id  # stored, not just shown
    r = await client.post(f"{API}/tickets/{old['id']}/reopen", headers=tenant.headers)
    assert r.status_code == 409 and r.json()["detail"]["ticket_id"] == new_id, r.text


async def test_killed_between_the_writes_then_finalized_a_second_reabrir_opens_nothing(
    client: httpx.AsyncClient, tenant: Tenant, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody read the old ticket before its new one was finalized: Reabrir of the old ticket
    completes the link itself and answers 409 naming it (the open-ticket slot no longer stops it)."""
    old, new_id = await _reopen_killed_between_the_writes(client, tenant, db, monkeypatch)
    r = await client.post(f"{API}/tickets/{new_id}/finalize", headers=tenant.headers)
    assert r.status_code == 200, r.text
    r = await client.post(f"{API}/tickets/{old['id']}/reopen", headers=tenant.headers)
    assert r.status_code == 409 and r.json()["detail"]["ticket_id"] == new_id, r.text
    assert await _reopened_pointing_back(db, old) == [new_id]
    assert await _open_tickets(db, old["client_id"], old["channel"]) == []
    assert (await get_ticket(client, tenant.headers, old["id"]))["reopened_as_ticket_id"] == new_id


async def test_a_reader_between_the_writes_completes_the_link_and_reabrir_still_succeeds(
    client: httpx.AsyncClient, tenant: Tenant, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The competitor: the old ticket's screen read between the new ticket and the link claim
    claims the forward key first (for the same ticket); Reabrir's own claim then agrees: 201."""
    old = await _finalized(client, tenant)
    shown: list[Any] = []

    async def read_old(_: str) -> None:
        shown.append((await get_ticket(client, tenant.headers, old["id"]))["reopened_as_ticket_id"])

    seen = _between_ticket_and_link(monkeypatch, read_old)
    r = await client.post(f"{API}/tickets/{old['id']}/reopen", headers=tenant.headers)
    assert r.status_code == 201, r.text
    assert seen == shown == [r.json()["id"]]
    assert (await get_ticket(client, tenant.headers, old["id"]))["reopened_as_ticket_id"] == r.json()["id"]
    assert await _reopened_pointing_back(db, old) == [r.json()["id"]]
