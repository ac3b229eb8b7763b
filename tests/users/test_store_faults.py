"""Deactivating people and departments while the store loses one write, and with a competitor let in
between two of the deactivation's writes.

The backend reaches the store through a relay (tests/tcp_relay.py) that stalls the one connection
carrying a chosen write: the command never runs (`lose="request"`) or it runs and its answer never
comes back (`lose="reply"`); with MONGO_SOCKET_TIMEOUT_MS the request then fails after 1.5 s (503
"the database did not answer; retry", over the real port). Then the owner does what a person does:
clicks again. The ticket sweep runs in the app every TICKET_SWEEP_SECONDS (0.5 s here).

The writes of a deactivation (`PATCH /users/{id} {"active": false}`, users.deactivation): the user,
inactive, its token version raised in the same write (`user`, users update); then, per ticket it
holds in atendendo, a hand-back (tickets.service.release_held_by → `_hand_back`, a `transferred`
event whose data gives the reason "agent_deactivated"): its event (`event`, ticket_events insert)
and its projection onto the ticket (`projection`, tickets findAndModify). A move of the agent's in
flight that lands after the user write hands its ticket back itself (hand_back_if_inactive), with
the same two writes. A department's deactivation (`PATCH /departments/{id}`) checks no connection
opens its conversations there (connections.service.require_not_a_default), then writes the
department.

The end state must hold, whatever was lost and whoever came in between: the store's ticket
document reads what its event log says; no open ticket is held by an inactive person, and none
waits in a queue no active agent sees (a conversation stored but that nobody will ever see is a
conversation lost); each handed-back ticket waits in its own department, handed back once, listed
in `/tickets?status=espera` of an active agent of that department; `/tickets/counts` agrees with
the tickets; a deactivated agent cannot authenticate (old token or password); and the client's
next WhatsApp message lands in an open ticket an active person sees.

Competitors are let in deterministically: either the click loses a write (it stops between two
writes and hangs until the store's timeout) and the competitor runs meanwhile; or, where the
competitor must have passed a check before the first write (an assume authenticated before the
deactivation, a transfer that found the agent active, a default change that found the department
active), its request is held in-process past that check and let go at the chosen moment (a slow
request, not a failing one). The sweep is paused the same way where the test is about what a slow
sweep (minutes, on a large FerretDB: sweep.py) leaves behind."""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from backend.connections import repository as connections_repository
from backend.core.config import Settings
from backend.departments import service as departments_service
from backend.tickets import service as tickets_service
from backend.tickets import sweep
from backend.tickets.states import Action
from backend.users import service as users_service
from backend.webhooks.service import message_id_for
from tests.factories import API, Tenant, make_agent, make_tenant, unique, unique_phone
from tests.fakes.harness import (
    FakeEvolution,
    app,
    backend_port,
    evolution,
    last_within,
    make_connection,
    settings,
    wait_for,
)
from tests.holds import Hold, arrived, holds
from tests.tcp_relay import Lose, StoreProxy, command_marker, relayed, string_element, unanswered
from tests.webhooks.helpers import settled

__all__ = ["app", "backend_port", "evolution", "holds", "settings"]

WAIT = 30.0  # a trap's springing, a held request's arrival, a delivery's processing (a loaded 2-core box)
SETTLE = 15.0  # how long the end state may take: a stall (1.5 s), sweep periods (0.5 s each)
LOSSES: list[Lose] = ["request", "reply"]
REASON = "agent_deactivated"  # a hand-back's reason (tickets.service.AGENT_DEACTIVATED)
AGENT_PASSWORD = "agent-pass-1"  # tests.factories.make_agent's


@pytest.fixture(scope="module")
def settings_overrides(store_relay: StoreProxy) -> dict[str, Any]:
    return {
        **relayed(store_relay),
        "TICKET_SWEEP_SECONDS": 0.5,
        "WEBHOOK_BACKOFF_BASE_SECONDS": 0.1,
        # Every deactivated agent's refused login counts against 127.0.0.1; the module makes dozens.
        "LOGIN_MAX_FAILURES_PER_ADDRESS": 1000,
    }


# --- held requests ------------------------------------------------------------------------------


async def _pause_sweep(holds: Callable[..., Hold]) -> Hold:
    """The ticket sweep stops at the start of its next run until `go` (returned once it stopped
    there, so no run already under way can settle what the test writes next)."""
    paused: Hold = holds(sweep, "sweep_once", lambda *a, **k: True)
    await asyncio.wait_for(paused.entered.wait(), WAIT)
    return paused


# --- the desk -----------------------------------------------------------------------------------


@dataclass
class Desk:
    """A company with two departments; `holder` works in both and holds `held[i]` (atendendo) in
    department i, whose client writes from `phones[held[i]]`; `colleagues[i]` works in department
    i only. The WhatsApp connection opens its conversations in department 0."""

    tenant: Tenant
    conn: dict[str, Any]
    holder: dict[str, Any]
    colleagues: list[dict[str, Any]]
    held: list[str]
    phones: dict[str, str] = field(default_factory=dict)

    @property
    def owner(self) -> dict[str, str]:
        return self.tenant.headers

    def dept(self, i: int) -> str:
        return str(self.tenant.departments[i]["id"])


async def _desk(client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution) -> Desk:
    tenant = await make_tenant(client, admin_headers, departments=2, agents=0)
    depts = [d["id"] for d in tenant.departments]
    holder = await make_agent(client, tenant, depts)
    colleagues = [await make_agent(client, tenant, [d]) for d in depts]
    conn = await make_connection(client, tenant, evolution)
    desk = Desk(tenant, conn, holder, colleagues, [])
    for i in range(2):
        ticket_id = await _waiting(client, evolution, desk, dept_index=i)
        await _click(client, holder["headers"], ticket_id, "assume")
        desk.held.append(ticket_id)
    return desk


async def _waiting(client: httpx.AsyncClient, evolution: FakeEvolution, desk: Desk, *, dept_index: int = 0) -> str:
    """A new client writes in on WhatsApp; its ticket waits in department `dept_index` (moved there
    by the owner when that is not the connection's default)."""
    phone = unique_phone()
    _, ticket = await _client_writes(evolution, desk, phone, "Olá, preciso de ajuda")
    assert ticket["status"] == "espera", ticket
    if dept_index != 0:
        r = await client.post(
            f"{API}/tickets/{ticket['_id']}/transfer", json={"department_id": desk.dept(dept_index)}, headers=desk.owner
        )
        assert r.status_code == 200, r.text
    desk.phones[ticket["_id"]] = phone
    return str(ticket["_id"])


_direct: Any = None  # the store past the relay, for helpers called without it (set by the autouse fixture)


@pytest.fixture(autouse=True)
def _the_store(direct: Any) -> None:
    global _direct
    _direct = direct


async def _client_writes(
    evolution: FakeEvolution, desk: Desk, phone: str, text: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The client writes on WhatsApp (the fake posts the webhook, the real processor files it).
    Returns the stored message and the stored ticket it was filed under."""
    result = await evolution.inbound(desk.conn["instance_name"], phone, text, push_name="Maria")
    raw = await settled(_direct, result, within=WAIT)
    assert raw["status"] == "processed", raw
    message = await _direct.messages.find_one({"_id": message_id_for(desk.conn["id"], result["key_id"])})
    assert message is not None, f"{text!r} processed, not stored: {raw}"
    ticket = await _direct.tickets.find_one({"_id": message["ticket_id"]})
    return message, ticket


async def _click(client: httpx.AsyncClient, headers: dict[str, str], ticket_id: str, action: str) -> None:
    r = await client.post(f"{API}/tickets/{ticket_id}/{action}", headers=headers)
    assert r.status_code == 200, (action, r.text)


async def _set_active(browser: httpx.AsyncClient, desk: Desk, user_id: str, active: bool) -> httpx.Response:
    return await browser.patch(f"{API}/users/{user_id}", json={"active": active}, headers=desk.owner)


async def _login(browser: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await browser.post(f"{API}/auth/login", json={"email": email, "password": password})


async def _relogin(browser: httpx.AsyncClient, agent: dict[str, Any], password: str = AGENT_PASSWORD) -> None:
    r = await _login(browser, agent["email"], password)
    assert r.status_code == 200, r.text
    agent["headers"] = {"Authorization": f"Bearer {r.json()['access_token']}"}


# --- wire markers -------------------------------------------------------------------------------


def bool_element(key: str, value: bool) -> bytes:
    return b"\x08" + key.encode() + b"\x00" + (b"\x01" if value else b"\x00")


def int_element(key: str, value: int) -> bytes:
    return b"\x10" + key.encode() + b"\x00" + value.to_bytes(4, "little", signed=True)


def _user_write(user_id: str, field_: bytes) -> tuple[bytes, ...]:
    """A `users` update of `user_id` whose document carries `field_` (a BSON element, or its type
    byte and name)."""
    return command_marker("update", "users"), string_element("_id", user_id), field_


def _deactivation_write(user_id: str) -> tuple[bytes, ...]:
    return _user_write(user_id, bool_element("active", False))


def _hand_back_event(ticket_id: str) -> tuple[bytes, ...]:
    return (
        command_marker("insert", "ticket_events"),
        string_element("ticket_id", ticket_id),
        string_element("reason", REASON),
    )


def _projection(ticket_id: str, version: int) -> tuple[bytes, ...]:
    return command_marker("findAndModify", "tickets"), string_element("_id", ticket_id), int_element("version", version)


# --- the truth, read past the relay -------------------------------------------------------------


async def _log(ticket_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (
        await _direct.ticket_events.find({"ticket_id": ticket_id}).sort("version", 1).to_list(None)
    )
    return found


STATE = ("status", "agent_id", "department_id")


def _agrees(doc: dict[str, Any] | None, log: list[dict[str, Any]]) -> bool:
    """The stored ticket is its log's newest event: same version, same status, holder, department."""
    if doc is None or not log:
        return False
    last = log[-1]
    return bool(doc["version"] == last["version"] and all(doc.get(k) == last["state"].get(k) for k in STATE))


def _told(log: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """A log as an assertion message shows it."""
    return [(e["version"], e["type"], e["actor_id"], *(e["state"].get(k) for k in STATE)) for e in log]


async def _stranded(tenant_id: str) -> list[str]:
    """What the tenant's store holds that nobody will ever see or act on: a ticket document behind
    its log, an open ticket held by an inactive person, one waiting where no active agent works."""
    people = {
        u["_id"]: u
        for u in await _direct.users.find({"reseller_id": tenant_id, "role": {"$in": ["agent", "reseller"]}}).to_list(
            None
        )
    }
    staffed = {
        d for u in people.values() if u["role"] == "agent" and u.get("active", True) for d in u["department_ids"]
    }
    problems: list[str] = []
    for doc in await _direct.tickets.find({"reseller_id": tenant_id}).to_list(None):
        log = await _log(doc["_id"])
        state = log[-1]["state"] if log else {}
        if not _agrees(doc, log):
            stored = (doc["version"], *(doc.get(k) for k in STATE))
            problems.append(f"ticket {doc['_id']} stored as {stored}, its log says {_told(log)[-1:]}")
        if state.get("status") == "atendendo":
            holder = people.get(state.get("agent_id"))
            if holder is None or not holder.get("active", True):
                problems.append(f"ticket {doc['_id']} held by inactive {state.get('agent_id')}: log {_told(log)}")
        elif state.get("status") == "espera" and state.get("department_id") not in staffed:
            problems.append(f"ticket {doc['_id']} waits in {state.get('department_id')}, where no active agent works")
    return problems


async def _check_nothing_stranded(tenant_id: str) -> None:
    async def clean() -> bool:
        return not await _stranded(tenant_id)

    if not await last_within(clean, timeout=SETTLE):
        problems = await _stranded(tenant_id)
        assert not problems, "stored, and nobody will ever see it:\n" + "\n".join(problems)


async def _listed(browser: httpx.AsyncClient, headers: dict[str, str], status: str) -> set[str]:
    r = await browser.get(f"{API}/tickets", params={"status": status, "limit": 200}, headers=headers)
    assert r.status_code == 200, r.text
    return {t["id"] for t in r.json()["items"]}


async def _api_view(browser: httpx.AsyncClient, desk: Desk, ticket_id: str, dept_index: int) -> dict[str, Any]:
    """What the people see of a ticket (for a failure's message): the owner's view, and whether the
    department's active agent lists it or may open it."""
    colleague = desk.colleagues[dept_index]["headers"]
    owner = await browser.get(f"{API}/tickets/{ticket_id}", headers=desk.owner)
    thread = await browser.get(f"{API}/tickets/{ticket_id}/messages", headers=colleague)
    counts = await browser.get(f"{API}/tickets/counts", headers=colleague)
    return {
        "owner GET": {k: owner.json().get(k) for k in STATE} if owner.status_code == 200 else owner.status_code,
        "agent's espera list has it": ticket_id in await _listed(browser, colleague, "espera"),
        "agent GET messages": thread.status_code,
        "agent's counts": counts.json(),
    }


async def _check_handed_back(
    browser: httpx.AsyncClient, desk: Desk, ticket_id: str, *, dept_index: int, by: str | None = None
) -> None:
    """Waits in department `dept_index` with nobody, as its log says (within the sweep's bound),
    handed back once by a `transferred` event giving the deactivation (by `by` when given), and
    listed in that department's colleague's queue."""

    async def back() -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        doc, log = await _direct.tickets.find_one({"_id": ticket_id}), await _log(ticket_id)
        return (doc, log) if _agrees(doc, log) and doc["status"] == "espera" else None

    found = await last_within(back, timeout=SETTLE)
    doc, log = found or (await _direct.tickets.find_one({"_id": ticket_id}), await _log(ticket_id))
    assert (doc["status"], doc["agent_id"], doc["department_id"]) == ("espera", None, desk.dept(dept_index)), (
        f"ticket {ticket_id} stored as {(doc['version'], *(doc.get(k) for k in STATE))}; its log: {_told(log)}; "
        f"the API shows: {await _api_view(browser, desk, ticket_id, dept_index)}"
    )
    assert _agrees(doc, log), (doc, _told(log))
    hand_backs = [e for e in log if e["data"].get("reason") == REASON]
    assert len(hand_backs) == 1, f"ticket {ticket_id} handed back {len(hand_backs)} times: {_told(log)}"
    last = log[-1]
    assert last["_id"] == hand_backs[0]["_id"] and last["type"] == "transferred", _told(log)
    assert (last["from_status"], last["to_status"]) == ("atendendo", "espera"), last
    assert last["data"]["from_agent_id"] == desk.holder["id"], last
    if by is not None:
        assert last["actor_id"] == by, (by, _told(log))
    queue = await _listed(browser, desk.colleagues[dept_index]["headers"], "espera")
    assert ticket_id in queue, f"ticket {ticket_id} waits in department {dept_index}, its agent's queue lacks it"


async def _check_cannot_authenticate(browser: httpx.AsyncClient, desk: Desk) -> None:
    stored = await _direct.users.find_one({"_id": desk.holder["id"]})
    assert stored["active"] is False, stored
    r = await browser.get(f"{API}/auth/me", headers=desk.holder["headers"])
    assert r.status_code == 401, f"the deactivated agent's token still works: {r.status_code} {r.text}"
    r = await _login(browser, desk.holder["email"], AGENT_PASSWORD)
    assert r.status_code == 401, f"the deactivated agent still logs in: {r.status_code} {r.text}"


async def _check_counts(browser: httpx.AsyncClient, desk: Desk) -> None:
    """`/tickets/counts` (the owner's) says what the tenant's stored tickets say, within the sweep's bound."""
    statuses = ("espera", "atendendo", "finalizado")

    async def both() -> tuple[dict[str, int], dict[str, int]]:
        r = await browser.get(f"{API}/tickets/counts", headers=desk.owner)
        assert r.status_code == 200, r.text
        stored = {
            s: int(await _direct.tickets.count_documents({"reseller_id": desk.tenant.id, "status": s}))
            for s in statuses
        }
        return {s: int(r.json()[s]) for s in statuses}, stored

    async def agree() -> tuple[dict[str, int], dict[str, int]] | None:
        counted, stored = await both()
        return (counted, stored) if counted == stored else None

    found = await last_within(agree, timeout=SETTLE) or await both()
    assert found[0] == found[1], f"/tickets/counts says {found[0]}, the tenant's tickets {found[1]}"


async def _check_next_message_seen(
    browser: httpx.AsyncClient, evolution: FakeEvolution, desk: Desk, ticket_id: str, seer: dict[str, str]
) -> None:
    """The client of `ticket_id` writes again: its message lands in that ticket, still open, which
    `seer` (an active person) lists and whose thread shows it."""
    text = f"Alguém? {unique('')}"
    message, ticket = await _client_writes(evolution, desk, desk.phones[ticket_id], text)
    assert ticket["_id"] == ticket_id and ticket["status"] in ("espera", "atendendo"), (
        f"the client's next message went to {ticket['_id']} ({ticket['status']}), not its open ticket {ticket_id}"
    )
    assert ticket_id in await _listed(browser, seer, ticket["status"]), (
        f"the client's next message is in ticket {ticket_id} ({ticket['status']}, agent {ticket['agent_id']}), "
        "which the person who should answer does not list"
    )
    r = await browser.get(f"{API}/tickets/{ticket_id}/messages", params={"limit": 200}, headers=seer)
    assert r.status_code == 200, r.text
    assert message["_id"] in [m["id"] for m in r.json()["items"]], r.json()


async def _token_version(user_id: str) -> int:
    doc = await _direct.users.find_one({"_id": user_id})
    return int(doc.get("token_version", 0))


async def _user_write_landed(user_id: str) -> None:
    """The deactivation's user write, its answer lost, has run in the store (the relay delivered
    it; the store may take a moment)."""

    async def inactive() -> bool:
        return (await _direct.users.find_one({"_id": user_id}))["active"] is False

    await wait_for(inactive, timeout=WAIT)


async def _lost_click(
    proxy: StoreProxy, markers: tuple[bytes, ...], lose: Lose, request: Awaitable[httpx.Response], what: str
) -> "asyncio.Future[httpx.Response]":
    """Arms the trap on `markers` and sends `request`; returns it under way once the trap sprang."""
    sprung = proxy.stall_next(*markers, lose=lose)
    click = asyncio.ensure_future(request)
    await arrived(sprung, click, f"the trap on the {what}")
    return click


async def _fully_deactivated(browser: httpx.AsyncClient, evolution: FakeEvolution, desk: Desk) -> None:
    """The end of a deactivation: the agent locked out, each ticket it held back in its queue once
    and answered there, nothing stranded, the counts right."""
    await _check_cannot_authenticate(browser, desk)
    for i, ticket_id in enumerate(desk.held):
        await _check_handed_back(browser, desk, ticket_id, dept_index=i)
    await _check_nothing_stranded(desk.tenant.id)
    await _check_counts(browser, desk)
    for i, ticket_id in enumerate(desk.held):
        await _check_next_message_seen(browser, evolution, desk, ticket_id, desk.colleagues[i]["headers"])


# --- 1. a deactivation that loses one of its writes ---------------------------------------------

DEACTIVATION_WRITES = ["user", "event", "projection"]


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", DEACTIVATION_WRITES)
async def test_a_deactivation_that_loses_a_write_is_finished_by_the_owners_repeat(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
    holds: Callable[..., Hold],
    write: str,
    lose: Lose,
) -> None:
    """The owner deactivates an agent holding two tickets; the store loses the user write, or the
    first hand-back's event or projection; the click answers 503 and the owner clicks again. The
    sweep is paused until the click answers: its own hand-back of the agent's tickets (the owed
    release, its visits of recent tickets) would otherwise race the click's to the trap."""
    desk = await _desk(client, admin_headers, evolution)
    paused = await _pause_sweep(holds)
    tokens = await _token_version(desk.holder["id"])
    first_ticket = min(desk.held)  # the release walks the held tickets by id
    markers = {
        "user": _deactivation_write(desk.holder["id"]),
        "event": _hand_back_event(first_ticket),
        "projection": _projection(first_ticket, len(await _log(first_ticket)) + 1),
    }[write]
    click = await _lost_click(
        store_proxy, markers, lose, _set_active(browser, desk, desk.holder["id"], False), f"deactivation's {write}"
    )
    first = await click
    paused.go.set()
    assert unanswered(first), (
        f"the deactivation lost its {write} ({lose}) and answered {first.status_code}: {first.text}"
    )
    # Where the click stopped, as the store holds it.
    stored = await _direct.users.find_one({"_id": desk.holder["id"]})
    assert stored["active"] is (write == "user" and lose == "request"), stored
    logged = [e for e in await _log(first_ticket) if e["data"].get("reason") == REASON]
    if (write, lose) == ("event", "request"):
        # The hand-back never ran; the ticket sweep, seeing the holder inactive, may have made it since.
        assert len(logged) <= 1, _told(logged)
    else:  # a user write that landed is read back, and the release runs all the same
        assert len(logged) == (0 if (write, lose) == ("user", "request") else 1), _told(logged)

    again = await _set_active(browser, desk, desk.holder["id"], False)
    assert again.status_code == 200 and again.json()["active"] is False, again.text
    await _fully_deactivated(browser, evolution, desk)
    assert await _token_version(desk.holder["id"]) == tokens + 1, "the click and its repeat raised the token twice"


async def test_a_deactivation_whose_answer_was_lost_leaves_no_ticket_with_the_agent_without_a_repeat(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
) -> None:
    """The user write lands, its answer is lost (503). The owner reloads the agents page: the agent
    reads inactive, so the page offers "Reativar" only (frontend ActiveToggle) — there is no
    "Desativar" left to click again. The agent's tickets must still reach someone, and its clients'
    next messages be seen."""
    desk = await _desk(client, admin_headers, evolution)
    click = await _lost_click(
        store_proxy,
        _deactivation_write(desk.holder["id"]),
        "reply",
        _set_active(browser, desk, desk.holder["id"], False),
        "deactivation's user write",
    )
    assert unanswered(await click)
    r = await browser.get(f"{API}/users/{desk.holder['id']}", headers=desk.owner)
    assert r.status_code == 200 and r.json()["active"] is False, r.text  # what the reloaded page shows

    await _check_cannot_authenticate(browser, desk)
    for i, ticket_id in enumerate(desk.held):
        await _check_handed_back(browser, desk, ticket_id, dept_index=i)
        await _check_next_message_seen(browser, evolution, desk, ticket_id, desk.colleagues[i]["headers"])
    await _check_nothing_stranded(desk.tenant.id)


async def test_a_deactivation_killed_before_its_release_hands_back_conversations_nobody_touches(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    settings: Settings,
    holds: Callable[..., Hold],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deactivation's user write lands and its process dies before the release (here: the
    release is held for the rest of the test, so it never runs). The agent's two conversations are
    idle: no client writes, nobody moves them, so the sweep's visits of recent tickets never reach
    them (its look-back is cut to 0.2 s and they were last touched seconds ago). They must still go
    back to their queues, by the release the deactivation left owed, and the owed mark be paid."""
    monkeypatch.setattr(settings, "TICKET_SWEEP_LOOKBACK_SECONDS", 0.2)
    desk = await _desk(client, admin_headers, evolution)
    holder = desk.holder["id"]
    await asyncio.sleep(2.0)  # past the sweep's look-back: the tickets are idle to it
    held = holds(tickets_service, "release_held_by", lambda *a, **k: k.get("holder_id") == holder)
    killed = asyncio.ensure_future(_set_active(browser, desk, holder, False))
    await arrived(held.entered, killed, "the deactivation's release")
    stored = await _direct.users.find_one({"_id": holder})
    assert stored["active"] is False, stored

    await _check_cannot_authenticate(browser, desk)
    for i, ticket_id in enumerate(desk.held):
        await _check_handed_back(browser, desk, ticket_id, dept_index=i, by=holder)
    await _check_nothing_stranded(desk.tenant.id)
    await _check_counts(browser, desk)

    async def paid() -> bool:
        mark = await _direct.user_releases.find_one({"_id": holder})
        return mark is not None and mark["owed"] is None and mark["paid_at"] is not None

    assert await wait_for(paid, timeout=SETTLE), await _direct.user_releases.find_one({"_id": holder})
    for i, ticket_id in enumerate(desk.held):
        await _check_next_message_seen(browser, evolution, desk, ticket_id, desk.colleagues[i]["headers"])
    held.go.set()  # the request ends (a killed process's never would): its release finds nothing left
    answer = await killed
    assert answer.status_code == 200, answer.text
    for ticket_id in desk.held:
        handed = [e for e in await _log(ticket_id) if e["data"].get("reason") == REASON]
        assert len(handed) == 1, _told(handed)


async def test_a_deactivation_whose_user_write_was_lost_leaves_its_owed_mark_paid_while_the_agent_stays_active(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    settings: Settings,
    store_proxy: StoreProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The mark is written before the user write; that write never runs (503). The agent stays
    active and keeps its conversations: the sweep pays the mark once it is older than its look-back
    (a deactivation still under way has marked and not yet written) and hands nothing back."""
    monkeypatch.setattr(settings, "TICKET_SWEEP_LOOKBACK_SECONDS", 0.5)
    desk = await _desk(client, admin_headers, evolution)
    holder = desk.holder["id"]
    click = await _lost_click(
        store_proxy, _deactivation_write(holder), "request", _set_active(browser, desk, holder, False), "user write"
    )
    assert unanswered(await click)

    async def paid() -> bool:
        mark = await _direct.user_releases.find_one({"_id": holder})
        return mark is not None and mark["owed"] is None

    assert await wait_for(paid, timeout=SETTLE), await _direct.user_releases.find_one({"_id": holder})
    assert (await _direct.users.find_one({"_id": holder}))["active"] is True
    for ticket_id in desk.held:
        doc = await _direct.tickets.find_one({"_id": ticket_id})
        assert doc["status"] == "atendendo" and doc["agent_id"] == holder, doc
        assert not [e for e in await _log(ticket_id) if e["data"].get("reason") == REASON]


# --- 2. competitors between the deactivation's user write and its release -------------------------


async def test_an_assume_landing_between_the_user_write_and_the_release_is_handed_back(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
    holds: Callable[..., Hold],
) -> None:
    """The agent clicks Assumir on a waiting ticket (authenticated, held before its move); the owner
    deactivates it and the user write lands with its answer lost, so the release does not run; the
    assume lands in that window; then the owner clicks again."""
    desk = await _desk(client, admin_headers, evolution)
    waiting = await _waiting(client, evolution, desk)
    held = holds(tickets_service, "assume", lambda *a, **k: k.get("ticket_id") == waiting)
    assume = asyncio.ensure_future(browser.post(f"{API}/tickets/{waiting}/assume", headers=desk.holder["headers"]))
    await arrived(held.entered, assume, "the agent's assume reaching its move")

    click = await _lost_click(
        store_proxy,
        _deactivation_write(desk.holder["id"]),
        "reply",
        _set_active(browser, desk, desk.holder["id"], False),
        "deactivation's user write",
    )
    await _user_write_landed(desk.holder["id"])
    held.go.set()
    landed = await assume
    first = await click
    assert unanswered(first), first.text
    again = await _set_active(browser, desk, desk.holder["id"], False)
    assert again.status_code == 200, again.text

    await _fully_deactivated(browser, evolution, desk)
    await _check_handed_back(browser, desk, waiting, dept_index=0)
    moves = [(e["type"], e["actor_id"]) for e in (await _log(waiting))[1:]]
    assert moves[0] == ("assumed", desk.holder["id"]), moves
    await _check_next_message_seen(browser, evolution, desk, waiting, desk.colleagues[0]["headers"])
    assert landed.status_code == 401, f"the assume that did not hold answered {landed.status_code}: {landed.text}"


@pytest.mark.parametrize("by", ["colleague", "owner"])
async def test_a_transfer_to_the_agent_landing_between_the_user_write_and_the_release_is_handed_back(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
    holds: Callable[..., Hold],
    by: str,
) -> None:
    """A colleague holds a ticket; it (or the owner) transfers it to the agent, which passes the
    "agent is active" check and is held before its move; the owner deactivates the agent, the user
    write lands with its answer lost; the transfer lands in that window; the owner clicks again."""
    desk = await _desk(client, admin_headers, evolution)
    ticket_id = await _waiting(client, evolution, desk)
    colleague = desk.colleagues[0]
    await _click(client, colleague["headers"], ticket_id, "assume")
    mover = colleague["headers"] if by == "colleague" else desk.owner
    held = holds(
        tickets_service,
        "_transition",
        lambda *a, **k: k.get("action") is Action.TRANSFER_TO_AGENT and k["changes"]["agent_id"] == desk.holder["id"],
    )
    body = {"agent_id": desk.holder["id"]}
    transfer = asyncio.ensure_future(browser.post(f"{API}/tickets/{ticket_id}/transfer", json=body, headers=mover))
    await arrived(held.entered, transfer, "the transfer reaching its move")

    click = await _lost_click(
        store_proxy,
        _deactivation_write(desk.holder["id"]),
        "reply",
        _set_active(browser, desk, desk.holder["id"], False),
        "deactivation's user write",
    )
    await _user_write_landed(desk.holder["id"])
    held.go.set()
    landed = await transfer
    assert unanswered(await click)
    again = await _set_active(browser, desk, desk.holder["id"], False)
    assert again.status_code == 200, again.text

    await _fully_deactivated(browser, evolution, desk)
    await _check_handed_back(browser, desk, ticket_id, dept_index=0)
    await _check_next_message_seen(browser, evolution, desk, ticket_id, colleague["headers"])
    assert landed.status_code == 422 and landed.json()["detail"] == "agent is inactive", landed.text


@pytest.mark.parametrize("lose", ["request", "reply"])
@pytest.mark.parametrize("mover", ["assume", "transfer"])
async def test_a_move_in_flight_whose_hand_back_loses_its_event_leaves_nothing_with_the_inactive_agent(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
    holds: Callable[..., Hold],
    mover: str,
    lose: Lose,
) -> None:
    """The agent's own assume (authenticated before), or a colleague's transfer to the agent (which
    found it active), is held before its move; the owner's deactivation runs to its end (200: the
    owner has no reason to click again); the move lands, finds its agent inactive and hands the
    ticket back — and that hand-back's event is lost. The mover tries again, as a person does."""
    desk = await _desk(client, admin_headers, evolution)
    ticket_id = await _waiting(client, evolution, desk)
    colleague = desk.colleagues[0]
    if mover == "assume":
        held = holds(tickets_service, "assume", lambda *a, **k: k.get("ticket_id") == ticket_id)
        path, body, headers = f"{API}/tickets/{ticket_id}/assume", None, desk.holder["headers"]
    else:
        await _click(client, colleague["headers"], ticket_id, "assume")
        held = holds(
            tickets_service,
            "_transition",
            lambda *a, **k: k.get("action") is Action.TRANSFER_TO_AGENT,
        )
        path, body, headers = (
            f"{API}/tickets/{ticket_id}/transfer",
            {"agent_id": desk.holder["id"]},
            colleague["headers"],
        )
    move = asyncio.ensure_future(browser.post(path, json=body, headers=headers))
    await arrived(held.entered, move, f"the {mover} reaching its move")

    r = await _set_active(browser, desk, desk.holder["id"], False)
    assert r.status_code == 200, r.text
    sprung = store_proxy.stall_next(*_hand_back_event(ticket_id), lose=lose)
    held.go.set()
    await arrived(sprung, move, f"the trap on the {mover}'s hand-back event")
    landed = await move
    assert unanswered(landed), (
        f"the {mover}'s hand-back lost its event and it answered {landed.status_code}: {landed.text}"
    )
    retry = await browser.post(path, json=body, headers=headers)

    await _check_handed_back(browser, desk, ticket_id, dept_index=0)
    await _check_next_message_seen(browser, evolution, desk, ticket_id, colleague["headers"])
    await _check_nothing_stranded(desk.tenant.id)
    await _check_counts(browser, desk)
    expected = 401 if mover == "assume" else 422
    assert retry.status_code == expected, f"the {mover}'s retry answered {retry.status_code}: {retry.text}"


async def test_an_assume_whose_projection_was_lost_is_not_left_with_an_agent_deactivated_meanwhile(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
    holds: Callable[..., Hold],
) -> None:
    """The agent's assume logs its event and loses its projection (the document still reads
    espera, with a sweep slow to catch up); while it hangs, the owner deactivates the agent (200);
    then the sweep projects the assume."""
    desk = await _desk(client, admin_headers, evolution)
    ticket_id = await _waiting(client, evolution, desk)
    paused = await _pause_sweep(holds)
    version = len(await _log(ticket_id)) + 1
    path = f"{API}/tickets/{ticket_id}/assume"
    assume = await _lost_click(
        store_proxy,
        _projection(ticket_id, version),
        "request",
        browser.post(path, headers=desk.holder["headers"]),
        "assume's projection",
    )
    r = await _set_active(browser, desk, desk.holder["id"], False)
    assert r.status_code == 200, r.text
    assert unanswered(await assume)
    paused.go.set()
    retry = await browser.post(path, headers=desk.holder["headers"])
    assert retry.status_code == 401, retry.text

    await _check_handed_back(browser, desk, ticket_id, dept_index=0)
    await _check_next_message_seen(browser, evolution, desk, ticket_id, desk.colleagues[0]["headers"])
    await _check_nothing_stranded(desk.tenant.id)


# --- 3. reactivation, password and department changes of an agent holding tickets ------------------


async def _check_still_holds(browser: httpx.AsyncClient, desk: Desk, ticket_ids: list[str]) -> None:
    """Atendendo with the (active) holder as its log says, listed in the holder's atendendo tab."""
    for ticket_id in ticket_ids:
        doc, log = await _direct.tickets.find_one({"_id": ticket_id}), await _log(ticket_id)
        assert _agrees(doc, log), _told(log)
        assert (doc["status"], doc["agent_id"]) == ("atendendo", desk.holder["id"]), _told(log)
    listed = await _listed(browser, desk.holder["headers"], "atendendo")
    assert set(ticket_ids) <= listed, f"the holder lists {listed}, it holds {ticket_ids}"


async def _check_holds_or_handed_back(browser: httpx.AsyncClient, desk: Desk, ticket_id: str) -> None:
    """Either outcome of a reactivation racing the ticket sweep: still held by the (active) agent,
    or handed back once to its queue while the agent was inactive."""
    doc = await _direct.tickets.find_one({"_id": ticket_id})
    if doc["status"] == "atendendo":
        await _check_still_holds(browser, desk, [ticket_id])
    else:
        await _check_handed_back(browser, desk, ticket_id, dept_index=desk.held.index(ticket_id))


async def test_a_reactivation_after_a_deactivation_whose_answer_was_lost_finds_its_tickets_in_their_queues(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
) -> None:
    """The deactivation's user write lands with its answer lost (503): read back, its release runs
    all the same. The owner, who now sees the agent inactive, clicks Reativar. The agent, logged in
    again, finds its tickets waiting in their queues (as after any deactivation) and takes one
    again; its old session stays over."""
    desk = await _desk(client, admin_headers, evolution)
    tokens = await _token_version(desk.holder["id"])
    old = dict(desk.holder["headers"])
    click = await _lost_click(
        store_proxy,
        _deactivation_write(desk.holder["id"]),
        "reply",
        _set_active(browser, desk, desk.holder["id"], False),
        "deactivation's user write",
    )
    assert unanswered(await click)
    for i, ticket_id in enumerate(desk.held):
        await _check_handed_back(browser, desk, ticket_id, dept_index=i)
    r = await _set_active(browser, desk, desk.holder["id"], True)
    assert r.status_code == 200 and r.json()["active"] is True, r.text

    assert (await _direct.users.find_one({"_id": desk.holder["id"]}))["active"] is True
    assert await _token_version(desk.holder["id"]) == tokens + 2  # the deactivation's, the reactivation's
    assert (await browser.get(f"{API}/auth/me", headers=old)).status_code == 401
    await _relogin(browser, desk.holder)
    await _click(client, desk.holder["headers"], desk.held[0], "assume")
    await _check_still_holds(browser, desk, [desk.held[0]])
    await _check_nothing_stranded(desk.tenant.id)
    await _check_counts(browser, desk)
    await _check_next_message_seen(browser, evolution, desk, desk.held[0], desk.holder["headers"])


async def test_a_reactivation_between_the_repeats_user_write_and_its_release_hands_back_nothing_more(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    holds: Callable[..., Hold],
) -> None:
    """The owner clicks Desativar in one tab while Reativar is clicked in another (two managers):
    the reactivation lands after the deactivation's user write, before its release reads what the
    agent holds. The release finds the agent active and hands back nothing; a ticket the sweep saw
    while the agent was inactive may be back in its queue, each one at most once."""
    desk = await _desk(client, admin_headers, evolution)
    held = holds(tickets_service, "release_held_by", lambda *a, **k: k.get("holder_id") == desk.holder["id"])
    deactivation = asyncio.ensure_future(_set_active(browser, desk, desk.holder["id"], False))
    await arrived(held.entered, deactivation, "the deactivation reaching its release")
    r = await _set_active(browser, desk, desk.holder["id"], True)
    assert r.status_code == 200, r.text
    held.go.set()
    answered = await deactivation
    assert answered.status_code == 200, answered.text

    assert (await _direct.users.find_one({"_id": desk.holder["id"]}))["active"] is True
    await _relogin(browser, desk.holder)
    for ticket_id in desk.held:
        await _check_holds_or_handed_back(browser, desk, ticket_id)
    await _check_nothing_stranded(desk.tenant.id)
    await _check_counts(browser, desk)


async def test_a_reactivation_between_two_hand_backs_then_a_new_deactivation_hands_back_the_rest(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
) -> None:
    """The deactivation hands back its first ticket and loses the second's event (503); the agent
    is reactivated in between: the first waits in its queue, the second is still the agent's, or
    back in its queue if the ticket sweep saw it while the agent was inactive. Deactivated again
    later, the agent hands back whatever it still holds: each ticket once."""
    desk = await _desk(client, admin_headers, evolution)
    first_ticket, second_ticket = sorted(desk.held)  # the release walks them by id
    click = await _lost_click(
        store_proxy,
        _hand_back_event(second_ticket),
        "request",
        _set_active(browser, desk, desk.holder["id"], False),
        "second hand-back's event",
    )
    assert unanswered(await click)
    r = await _set_active(browser, desk, desk.holder["id"], True)
    assert r.status_code == 200, r.text

    await _relogin(browser, desk.holder)
    await _check_holds_or_handed_back(browser, desk, second_ticket)
    await _check_handed_back(browser, desk, first_ticket, dept_index=desk.held.index(first_ticket))
    await _check_nothing_stranded(desk.tenant.id)
    await _check_counts(browser, desk)

    r = await _set_active(browser, desk, desk.holder["id"], False)
    assert r.status_code == 200, r.text
    await _fully_deactivated(browser, evolution, desk)


@pytest.mark.parametrize("lose", LOSSES)
async def test_a_password_change_that_loses_its_write_keeps_the_agents_tickets_with_it(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
    lose: Lose,
) -> None:
    """The owner sets a new password for an agent holding two tickets; the write is lost (503) and
    the owner saves again. The agent's old sessions end, it logs in with the new password and holds
    and sees its tickets; nothing is handed back."""
    desk = await _desk(client, admin_headers, evolution)
    old = dict(desk.holder["headers"])
    new_password = "agent-pass-2-new"
    path, body = f"{API}/users/{desk.holder['id']}", {"password": new_password}
    click = await _lost_click(
        store_proxy,
        _user_write(desk.holder["id"], b"\x02password_hash\x00"),
        lose,
        browser.patch(path, json=body, headers=desk.owner),
        "password write",
    )
    assert unanswered(await click)
    again = await browser.patch(path, json=body, headers=desk.owner)
    assert again.status_code == 200, again.text

    assert (await browser.get(f"{API}/auth/me", headers=old)).status_code == 401
    assert (await _login(browser, desk.holder["email"], AGENT_PASSWORD)).status_code == 401
    await _relogin(browser, desk.holder, new_password)
    await _check_still_holds(browser, desk, desk.held)
    for ticket_id in desk.held:
        assert not [e for e in await _log(ticket_id) if e["data"].get("reason") == REASON], _told(await _log(ticket_id))
    await _check_nothing_stranded(desk.tenant.id)
    await _check_counts(browser, desk)
    await _check_next_message_seen(browser, evolution, desk, desk.held[1], desk.holder["headers"])


async def test_an_agent_taken_out_of_a_department_keeps_its_ticket_there_and_hands_it_back_when_deactivated(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
) -> None:
    """The owner takes the agent out of department 1 (where it holds a ticket, and another waits);
    the write lands with its answer lost and the owner saves again. The agent keeps and sees the
    ticket it holds there (tests/tickets/test_holder_left_department.py); the waiting one stays in
    the colleague's queue. Then the agent is deactivated: the ticket goes back to department 1."""
    desk = await _desk(client, admin_headers, evolution)
    waiting = await _waiting(client, evolution, desk, dept_index=1)
    path, body = f"{API}/users/{desk.holder['id']}", {"department_ids": [desk.dept(0)]}
    click = await _lost_click(
        store_proxy,
        _user_write(desk.holder["id"], b"\x04department_ids\x00"),
        "reply",
        browser.patch(path, json=body, headers=desk.owner),
        "department change",
    )
    assert unanswered(await click)
    again = await browser.patch(path, json=body, headers=desk.owner)
    assert again.status_code == 200 and again.json()["department_ids"] == [desk.dept(0)], again.text

    await _check_still_holds(browser, desk, desk.held)
    assert waiting not in await _listed(browser, desk.holder["headers"], "espera")
    assert waiting in await _listed(browser, desk.colleagues[1]["headers"], "espera")
    await _check_next_message_seen(browser, evolution, desk, desk.held[1], desk.holder["headers"])
    await _check_nothing_stranded(desk.tenant.id)

    r = await _set_active(browser, desk, desk.holder["id"], False)
    assert r.status_code == 200, r.text
    await _fully_deactivated(browser, evolution, desk)


# --- 4. departments -------------------------------------------------------------------------------


def _department_deactivation(department_id: str) -> tuple[bytes, ...]:
    return command_marker("update", "departments"), string_element("_id", department_id), bool_element("active", False)


@pytest.mark.parametrize("lose", LOSSES)
async def test_a_department_deactivation_that_loses_its_write_leaves_its_conversations_seen(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
    lose: Lose,
) -> None:
    """Department 1 has a ticket waiting and one held; the owner deactivates it, the write is lost
    (503) and the owner clicks again. What waits there stays in its agents' queue, what is held
    stays with its holder, the clients' next messages are seen; and once the holder is deactivated
    too, its ticket waits in department 1 where the colleague still sees it."""
    desk = await _desk(client, admin_headers, evolution)
    waiting = await _waiting(client, evolution, desk, dept_index=1)
    path = f"{API}/departments/{desk.dept(1)}"
    click = await _lost_click(
        store_proxy,
        _department_deactivation(desk.dept(1)),
        lose,
        browser.patch(path, json={"active": False}, headers=desk.owner),
        "department write",
    )
    assert unanswered(await click)
    again = await browser.patch(path, json={"active": False}, headers=desk.owner)
    assert again.status_code == 200 and again.json()["active"] is False, again.text
    assert (await _direct.departments.find_one({"_id": desk.dept(1)}))["active"] is False

    doc = await _direct.tickets.find_one({"_id": waiting})
    assert (doc["status"], doc["department_id"]) == ("espera", desk.dept(1)), doc
    assert waiting in await _listed(browser, desk.colleagues[1]["headers"], "espera")
    await _check_still_holds(browser, desk, desk.held)
    await _check_nothing_stranded(desk.tenant.id)
    await _check_counts(browser, desk)
    await _check_next_message_seen(browser, evolution, desk, waiting, desk.colleagues[1]["headers"])
    await _check_next_message_seen(browser, evolution, desk, desk.held[1], desk.holder["headers"])

    r = await _set_active(browser, desk, desk.holder["id"], False)
    assert r.status_code == 200, r.text
    await _fully_deactivated(browser, evolution, desk)


async def test_a_connections_default_department_cannot_be_deactivated(
    client: httpx.AsyncClient, browser: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution
) -> None:
    tenant = await make_tenant(client, admin_headers, departments=1, agents=1)
    conn = await make_connection(client, tenant, evolution)
    dept = tenant.departments[0]["id"]
    r = await browser.patch(f"{API}/departments/{dept}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 409 and conn["name"] in r.json()["detail"], r.text
    assert (await _direct.departments.find_one({"_id": dept}))["active"] is True


@pytest.mark.parametrize("checked_first", ["deactivation", "default_change"])
async def test_a_default_change_racing_a_department_deactivation_never_opens_conversations_in_an_inactive_one(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    holds: Callable[..., Hold],
    checked_first: str,
) -> None:
    """The owner deactivates department 1 while a manager makes it the connection's default: one
    passes its check (no connection defaults there; the department is active) and is held before
    its write while the other runs to its end. Whatever the order, no connection may be left
    opening new conversations in an inactive department, and a new client's first message must
    wait in a queue an active agent sees."""
    desk = await _desk(client, admin_headers, evolution)
    dept = desk.dept(1)
    deactivate = browser.patch(f"{API}/departments/{dept}", json={"active": False}, headers=desk.owner)
    default = browser.patch(
        f"{API}/whatsapp-connections/{desk.conn['id']}", json={"default_department_id": dept}, headers=desk.owner
    )
    if checked_first == "deactivation":
        held = holds(departments_service, "update", lambda *a, **k: k.get("department_id") == dept)
        first, second = asyncio.ensure_future(deactivate), default
    else:
        held = holds(
            connections_repository, "update", lambda *a, **k: len(a) > 3 and a[3].get("default_department_id") == dept
        )
        first, second = asyncio.ensure_future(default), deactivate
    await arrived(held.entered, first, f"the {checked_first} passing its check")
    other = await second
    held.go.set()
    answers = {checked_first: (await first).status_code, "other": other.status_code}
    assert set(answers.values()) <= {200, 409, 422}, answers

    conn = await _direct.whatsapp_connections.find_one({"_id": desk.conn["id"]})
    target = await _direct.departments.find_one({"_id": conn["default_department_id"]})
    assert target["active"] is True, (
        f"connection {conn['_id']} opens its new conversations in department {target['_id']}, which is "
        f"inactive (no agent can be added to it); answers: {answers}"
    )
    phone = unique_phone()
    _, ticket = await _client_writes(evolution, desk, phone, "Oi, primeira mensagem")
    assert ticket["status"] == "espera", ticket
    seers = [desk.colleagues[i]["headers"] for i in range(2) if desk.dept(i) == ticket["department_id"]]
    assert seers and ticket["_id"] in await _listed(browser, seers[0], "espera"), ticket
    await _check_nothing_stranded(desk.tenant.id)


async def test_a_default_change_given_way_takes_back_only_its_own_value(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    holds: Callable[..., Hold],
) -> None:
    """A manager makes department 1 the connection's default; its write lands and it is held before
    its check after the write. Meanwhile another save makes department 2 the default, and the owner
    deactivates department 1 (no connection defaults there any more). The first save then finds
    its department inactive and gives way: it must take back its own value only, never the later
    save's department 2, which it would otherwise replace with the default it read first (0)."""
    tenant = await make_tenant(client, admin_headers, departments=3, agents=1)
    conn = await make_connection(client, tenant, evolution)
    first_default, mine, later = (d["id"] for d in tenant.departments)
    url = f"{API}/whatsapp-connections/{conn['id']}"
    stored = await _direct.whatsapp_connections.find_one({"_id": conn["id"]})
    assert stored["default_department_id"] == first_default, stored
    # The check after the write names the department alone (the one before it also passes `kept`).
    held = holds(departments_service, "require_active_ids", lambda *a, **k: "kept" not in k and list(a[2]) == [mine])
    given_way = asyncio.ensure_future(browser.patch(url, json={"default_department_id": mine}, headers=tenant.headers))
    await arrived(held.entered, given_way, "the first save's check after its write")

    r = await browser.patch(url, json={"default_department_id": later}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["default_department_id"] == later, r.text
    r = await browser.patch(f"{API}/departments/{mine}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    held.go.set()
    answer = await given_way
    assert answer.status_code == 422, answer.text

    stored = await _direct.whatsapp_connections.find_one({"_id": conn["id"]})
    assert stored["default_department_id"] == later, (
        f"the save that gave way put back {stored['default_department_id']} over the later save's {later}"
    )
    r = await browser.get(url, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["default_department_id"] == later, r.text


# --- 5. the owed release against a second deactivation, a reactivation and the sweep ---------------
#
# One mark per person (`user_releases`): each deactivation rewrites it with its own name before its
# user write, and a payment clears it only while it still names the deactivation it pays
# (users.repository.release_paid). The tests below let a payment land after another deactivation
# rewrote the mark, and a reactivation land between a mark and the sweep that pays it.


async def _mark(user_id: str) -> dict[str, Any]:
    found: dict[str, Any] | None = await _direct.user_releases.find_one({"_id": user_id})
    assert found is not None, f"no release mark for {user_id}"
    return found


async def _check_mark_paid(user_id: str) -> None:
    async def paid() -> bool:
        mark = await _direct.user_releases.find_one({"_id": user_id})
        return mark is not None and mark["owed"] is None and mark["paid_at"] is not None

    assert await last_within(paid, timeout=SETTLE), f"the mark stays owed: {await _mark(user_id)}"


def _paying(user_id: str, names: list[str]) -> Callable[..., bool]:
    """A `holds` condition on users.service.release_paid(db, user_id, owed) for `user_id`, noting
    the name of the mark the held call pays."""

    def when(*args: Any, **kwargs: Any) -> bool:
        if args[1] != user_id:
            return False
        names.append(args[2])
        return True

    return when


async def _check_never_handed_back(ticket_ids: list[str]) -> None:
    for ticket_id in ticket_ids:
        log = await _log(ticket_id)
        assert not [e for e in log if e["data"].get("reason") == REASON], _told(log)


async def test_the_sweeps_payment_of_a_stale_mark_leaves_a_second_deactivations_mark_owed(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    settings: Settings,
    store_proxy: StoreProxy,
    holds: Callable[..., Hold],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A first deactivation loses its user write (503): its mark stays owed and the agent active.
    The sweep finds that mark older than its look-back with the agent active and is held just
    before paying it. The owner deactivates again: the second deactivation rewrites the mark with
    its own name and is held before its user write. Now the sweep's payment lands: it names the
    first mark, so the second stays owed. The second deactivation writes the user and dies before
    its release. The agent's conversations are idle (the sweep's visits of recent tickets never
    reach them): only the second mark, paid by the sweep's next pass with the agent inactive, hands
    them back. Had the stale payment cleared it, they would stay with a person nobody can reach."""
    monkeypatch.setattr(settings, "TICKET_SWEEP_LOOKBACK_SECONDS", 0.2)
    desk = await _desk(client, admin_headers, evolution)
    holder = desk.holder["id"]
    await asyncio.sleep(2.0)  # past the sweep's look-back: the tickets are idle to it
    paying: list[str] = []
    stale_payment = holds(users_service, "release_paid", _paying(holder, paying))
    click = await _lost_click(
        store_proxy, _deactivation_write(holder), "request", _set_active(browser, desk, holder, False), "user write"
    )
    assert unanswered(await click)
    first = (await _mark(holder))["owed"]
    assert first is not None
    await asyncio.wait_for(stale_payment.entered.wait(), WAIT)
    assert paying == [first], paying  # the sweep, about to pay the first mark (the agent is active)
    assert (await _direct.users.find_one({"_id": holder}))["active"] is True

    user_write = holds(users_service, "update", lambda *a, **k: k.get("user_id") == holder)
    killed = holds(tickets_service, "release_held_by", lambda *a, **k: k.get("holder_id") == holder)
    second = asyncio.ensure_future(_set_active(browser, desk, holder, False))
    await arrived(user_write.entered, second, "the second deactivation reaching its user write")
    owed = await _mark(holder)
    assert owed["owed"] not in (None, first) and owed["paid_at"] is None, owed
    paused = holds(sweep, "sweep_once", lambda *a, **k: True)
    stale_payment.go.set()
    await asyncio.wait_for(paused.entered.wait(), WAIT)  # the pass that paid the first mark is over
    after = await _mark(holder)
    assert (after["owed"], after["paid_at"]) == (owed["owed"], None), (
        f"the sweep's payment of the first mark {first} cleared the second's {owed['owed']}: {after}"
    )

    user_write.go.set()
    await arrived(killed.entered, second, "the second deactivation's release")
    paused.go.set()
    await _check_cannot_authenticate(browser, desk)
    for i, ticket_id in enumerate(desk.held):
        await _check_handed_back(browser, desk, ticket_id, dept_index=i, by=holder)
    await _check_mark_paid(holder)
    await _check_nothing_stranded(desk.tenant.id)
    await _check_counts(browser, desk)
    for i, ticket_id in enumerate(desk.held):
        await _check_next_message_seen(browser, evolution, desk, ticket_id, desk.colleagues[i]["headers"])
    killed.go.set()  # the request ends; its release finds nothing left to hand back
    answer = await second
    assert answer.status_code == 200, answer.text
    for i, ticket_id in enumerate(desk.held):
        await _check_handed_back(browser, desk, ticket_id, dept_index=i, by=holder)


async def test_a_mark_left_owed_by_a_deactivation_reactivated_before_the_sweep_leaves_the_agents_tickets_alone(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    settings: Settings,
    holds: Callable[..., Hold],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deactivation writes the user and dies before its release (its mark owed); the sweep is
    slow (paused). The owner reactivates the agent, which takes a waiting ticket and is given
    another by a colleague. When the sweep runs, the mark's person is active: the release it owed
    is void (the person may hold tickets again), so the sweep pays the mark once it is older than
    its look-back and hands nothing back — neither the tickets the agent held before the
    deactivation (it never lost them) nor those it took since."""
    monkeypatch.setattr(settings, "TICKET_SWEEP_LOOKBACK_SECONDS", 0.2)
    desk = await _desk(client, admin_headers, evolution)
    holder = desk.holder["id"]
    paused = await _pause_sweep(holds)
    killed = holds(tickets_service, "release_held_by", lambda *a, **k: k.get("holder_id") == holder)
    deactivation = asyncio.ensure_future(_set_active(browser, desk, holder, False))
    await arrived(killed.entered, deactivation, "the deactivation's release")
    assert (await _mark(holder))["owed"] is not None
    r = await _set_active(browser, desk, holder, True)
    assert r.status_code == 200 and r.json()["active"] is True, r.text

    await _relogin(browser, desk.holder)
    taken = await _waiting(client, evolution, desk, dept_index=0)
    await _click(client, desk.holder["headers"], taken, "assume")
    given = await _waiting(client, evolution, desk, dept_index=1)
    await _click(client, desk.colleagues[1]["headers"], given, "assume")
    r = await browser.post(
        f"{API}/tickets/{given}/transfer", json={"agent_id": holder}, headers=desk.colleagues[1]["headers"]
    )
    assert r.status_code == 200 and r.json()["agent_id"] == holder, r.text
    paused.go.set()

    await _check_mark_paid(holder)
    held = [*desk.held, taken, given]
    await _check_still_holds(browser, desk, held)
    await _check_never_handed_back(held)
    await _check_nothing_stranded(desk.tenant.id)
    await _check_counts(browser, desk)
    killed.go.set()  # the request ends: its release finds the agent active and hands nothing back
    answer = await deactivation
    assert answer.status_code == 200, answer.text
    await _check_still_holds(browser, desk, held)
    await _check_never_handed_back(held)
    await _check_mark_paid(holder)
    await _check_next_message_seen(browser, evolution, desk, given, desk.holder["headers"])


async def test_a_reactivation_after_the_sweep_found_the_agent_inactive_keeps_its_tickets_with_it(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    settings: Settings,
    holds: Callable[..., Hold],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deactivation writes the user and dies before its release. The sweep reads the owed mark,
    finds the agent inactive, lists its (idle) tickets and is held before handing the first back.
    Meanwhile the owner reactivates the agent, which takes a new ticket. Each hand-back reads its
    person afresh: the agent is active again, so it keeps both old tickets and the new one, and the
    mark ends paid (the release it owed is void)."""
    monkeypatch.setattr(settings, "TICKET_SWEEP_LOOKBACK_SECONDS", 0.2)
    desk = await _desk(client, admin_headers, evolution)
    holder = desk.holder["id"]
    await asyncio.sleep(2.0)  # past the sweep's look-back: only the owed release reaches the tickets
    # The owed release's hand-back of a ticket (the sweep's visits pass the holders they read).
    handing = holds(
        tickets_service, "hand_back_if_inactive", lambda *a, **k: "holders" not in k and a[1].agent_id == holder
    )
    killed = holds(tickets_service, "release_held_by", lambda *a, **k: k.get("holder_id") == holder)
    deactivation = asyncio.ensure_future(_set_active(browser, desk, holder, False))
    await arrived(killed.entered, deactivation, "the deactivation's release")
    await arrived(handing.entered, deactivation, "the sweep's owed release reaching a hand-back")
    r = await _set_active(browser, desk, holder, True)
    assert r.status_code == 200, r.text
    await _relogin(browser, desk.holder)
    taken = await _waiting(client, evolution, desk, dept_index=0)
    await _click(client, desk.holder["headers"], taken, "assume")
    handing.go.set()

    await _check_mark_paid(holder)
    held = [*desk.held, taken]
    await _check_still_holds(browser, desk, held)
    await _check_never_handed_back(held)
    await _check_nothing_stranded(desk.tenant.id)
    await _check_counts(browser, desk)
    killed.go.set()
    answer = await deactivation
    assert answer.status_code == 200, answer.text
    await _check_still_holds(browser, desk, held)
    await _check_next_message_seen(browser, evolution, desk, desk.held[0], desk.holder["headers"])


async def test_a_deactivations_late_payment_of_its_mark_leaves_the_next_deactivations_mark_owed(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    settings: Settings,
    holds: Callable[..., Hold],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A deactivation hands the agent's tickets back and is held before it pays its mark (slow).
    The owner reactivates the agent, which takes a new ticket and leaves it idle; then deactivates
    it again: the second deactivation rewrites the mark and dies before its release. The first
    deactivation's payment lands last: it names its own mark, so the second's stays owed, and the
    sweep hands the idle new ticket back. A payment that cleared whatever mark it found would leave
    that ticket with the inactive agent for good."""
    monkeypatch.setattr(settings, "TICKET_SWEEP_LOOKBACK_SECONDS", 0.2)
    desk = await _desk(client, admin_headers, evolution)
    holder = desk.holder["id"]
    paused = await _pause_sweep(holds)  # the first payment held must be the deactivation's own
    paying: list[str] = []
    late_payment = holds(users_service, "release_paid", _paying(holder, paying))
    first = asyncio.ensure_future(_set_active(browser, desk, holder, False))
    await arrived(late_payment.entered, first, "the first deactivation paying its mark")
    assert paying == [(await _mark(holder))["owed"]], paying
    paused.go.set()
    for i, ticket_id in enumerate(desk.held):
        await _check_handed_back(browser, desk, ticket_id, dept_index=i)
    r = await _set_active(browser, desk, holder, True)
    assert r.status_code == 200, r.text
    await _relogin(browser, desk.holder)
    later = await _waiting(client, evolution, desk, dept_index=0)
    await _click(client, desk.holder["headers"], later, "assume")
    await asyncio.sleep(2.0)  # past the sweep's look-back: the new ticket is idle to it

    killed = holds(tickets_service, "release_held_by", lambda *a, **k: k.get("holder_id") == holder)
    second = asyncio.ensure_future(_set_active(browser, desk, holder, False))
    await arrived(killed.entered, second, "the second deactivation's release")
    owed = (await _mark(holder))["owed"]
    assert owed not in (None, paying[0]), owed
    late_payment.go.set()
    answer = await first
    assert answer.status_code == 200, answer.text

    await _check_handed_back(browser, desk, later, dept_index=0, by=holder)
    await _check_mark_paid(holder)
    await _check_cannot_authenticate(browser, desk)
    for i, ticket_id in enumerate(desk.held):
        await _check_handed_back(browser, desk, ticket_id, dept_index=i)
    await _check_nothing_stranded(desk.tenant.id)
    await _check_counts(browser, desk)
    await _check_next_message_seen(browser, evolution, desk, later, desk.colleagues[0]["headers"])
    killed.go.set()
    answer = await second
    assert answer.status_code == 200, answer.text


async def test_a_mark_the_sweep_paid_before_a_late_user_write_is_owed_again_by_the_deactivation(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    settings: Settings,
    holds: Callable[..., Hold],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deactivation marks its release owed; its user write is slow (held: a failover can hold
    one as long as the store's socket timeout, longer than the sweep's look-back). The sweep finds
    the mark older than its look-back with the agent still active and pays it. Then the user write
    lands and the deactivation dies before its release. The agent's conversations are idle (the
    sweep's visits of recent tickets never reach them): only a mark owed again after the user write
    hands them back; left paid, they would stay with a person nobody can reach."""
    monkeypatch.setattr(settings, "TICKET_SWEEP_LOOKBACK_SECONDS", 0.2)
    desk = await _desk(client, admin_headers, evolution)
    holder = desk.holder["id"]
    await asyncio.sleep(2.0)  # past the sweep's look-back: the tickets are idle to it
    user_write = holds(users_service, "update", lambda *a, **k: k.get("user_id") == holder)
    killed = holds(tickets_service, "release_held_by", lambda *a, **k: k.get("holder_id") == holder)
    deactivation = asyncio.ensure_future(_set_active(browser, desk, holder, False))
    await arrived(user_write.entered, deactivation, "the deactivation reaching its user write")
    owed = (await _mark(holder))["owed"]
    assert owed is not None
    await _check_mark_paid(holder)  # by the sweep: the agent is active, the mark older than the look-back
    assert (await _direct.users.find_one({"_id": holder}))["active"] is True
    await _check_still_holds(browser, desk, desk.held)

    user_write.go.set()
    await arrived(killed.entered, deactivation, "the deactivation's release")
    await _check_cannot_authenticate(browser, desk)
    for i, ticket_id in enumerate(desk.held):
        await _check_handed_back(browser, desk, ticket_id, dept_index=i, by=holder)
    await _check_mark_paid(holder)
    await _check_nothing_stranded(desk.tenant.id)
    await _check_counts(browser, desk)
    killed.go.set()  # the request ends; its release finds nothing left to hand back
    answer = await deactivation
    assert answer.status_code == 200, answer.text
    for i, ticket_id in enumerate(desk.held):
        await _check_handed_back(browser, desk, ticket_id, dept_index=i, by=holder)
