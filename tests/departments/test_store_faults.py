"""Departments (queues) while a competitor comes between two writes, or the store loses one.

Every rule that consults a department and spans two steps, each step a check or a write with no
transaction joining them (FerretDB has none):
- a client's first WhatsApp message: the delivery reads its connection (the default department,
  where the new ticket waits), then writes the ticket's event v1 (tickets.service `_create`);
- the department menu's answer: the chosen department is read (active?), then the `routed` event
  is written (automation.service `_menu_answer` → tickets.choose_department);
- a transfer to a department: the department is read (active?), then the `transferred` event and
  its projection onto the ticket are written (tickets.service.transfer);
- an assume: the agent (its departments) is read at authentication, then the `assumed` event;
- a department's deactivation against a connection's default (connections.service): the
  deactivation checks no connection defaults there, writes the department, checks again and
  writes it back active when one does (`update_department`); a default change checks the
  department is active, writes the connection, checks again and takes its value back when the
  department went inactive (`update`). Each side's undo is a second write.

A competitor is let in deterministically: the first writer is held in-process between its check
and its write (tests/holds.py: a slow request, not a failing one) while the competitor runs to its
end; or the store relay (tests/tcp_relay.py) loses one write's request (it never runs) or its reply
(it runs, unheard), the request failing after 1.5 s (503 "the database did not answer; retry") —
then the person does what a person does: clicks again. The ticket sweep runs every 0.5 s.

The end state must hold through the API and in the store (read past the relay): a ticket's stored
document is its log's newest event; an open ticket waits where an active agent of its department
lists it (or is held by an active person who lists it), never only in a queue nobody works; each
person's `/tickets/counts` agrees with what that person lists, the owner's with the tenant's
tickets; no connection opens its new conversations in an inactive department (no agent can be
added to one); the client's next message lands in its open ticket, seen.

Where a racing order ends exactly as one serial order would, that is the outcome asserted: a
conversation waiting in a department when it is deactivated stays in its agents' queue
(tests/departments/test_deactivation_and_connections.py), and an agent taken out of a department
keeps the tickets it holds there (tests/tickets/test_holder_left_department.py)."""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from backend.audit import service as audit_service
from backend.connections import repository as connections_repository
from backend.departments import service as departments_service
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
)
from tests.holds import Hold, arrived, holds
from tests.tcp_relay import Lose, StoreProxy, command_marker, relayed, string_element, unanswered
from tests.webhooks.helpers import settled

__all__ = ["app", "backend_port", "evolution", "holds", "settings"]

WAIT = 30.0  # a trap's springing, a held call's arrival, a delivery's processing (a loaded 2-core box)
SETTLE = 15.0  # how long the end state may take: a stall (1.5 s), sweep periods (0.5 s each)
LOSSES: list[Lose] = ["request", "reply"]
MENU_TEXT = "Escolha o departamento:"


@pytest.fixture(scope="module")
def settings_overrides(store_relay: StoreProxy) -> dict[str, Any]:
    return {**relayed(store_relay), "TICKET_SWEEP_SECONDS": 0.5, "WEBHOOK_BACKOFF_BASE_SECONDS": 0.1}


_direct: Any = None  # the store past the relay, for helpers called without it (set by the autouse fixture)


@pytest.fixture(autouse=True)
def _the_store(direct: Any) -> None:
    global _direct
    _direct = direct


# --- the desk -----------------------------------------------------------------------------------


@dataclass
class Desk:
    """A company with three departments; `staff[i]` is an agent of department i alone. Its WhatsApp
    connection opens new conversations in department 0 (its default)."""

    tenant: Tenant
    conn: dict[str, Any]
    staff: list[dict[str, Any]]
    phones: dict[str, str] = field(default_factory=dict)  # ticket id -> its client's phone

    @property
    def owner(self) -> dict[str, str]:
        return self.tenant.headers

    def dept(self, i: int) -> str:
        return str(self.tenant.departments[i]["id"])

    def people(self) -> dict[str, dict[str, str]]:
        """Everyone whose inbox is checked: the owner and each department's agent."""
        return {"owner": self.owner, **{f"agent of department {i}": a["headers"] for i, a in enumerate(self.staff)}}


async def _desk(client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution) -> Desk:
    tenant = await make_tenant(client, admin_headers, departments=3, agents=0)
    staff = [await make_agent(client, tenant, [d["id"]]) for d in tenant.departments]
    conn = await make_connection(client, tenant, evolution)
    return Desk(tenant, conn, staff)


async def _client_writes(
    evolution: FakeEvolution, desk: Desk, phone: str, text: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The client writes on WhatsApp (the fake posts the webhook, the real processor files it).
    Returns the stored message and the stored ticket it was filed under."""
    result = await evolution.inbound(desk.conn["instance_name"], phone, text, push_name="Maria")
    return await _filed(desk, result, text)


async def _filed(desk: Desk, result: dict[str, Any], text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    raw = await settled(_direct, result, within=WAIT)
    assert raw["status"] == "processed", raw
    message = await _direct.messages.find_one({"_id": message_id_for(desk.conn["id"], result["key_id"])})
    assert message is not None, f"{text!r} processed, not stored: {raw}"
    ticket = await _direct.tickets.find_one({"_id": message["ticket_id"]})
    return message, ticket


async def _new_conversation(evolution: FakeEvolution, desk: Desk) -> tuple[str, str]:
    """A new client writes in; its ticket waits in the connection's default department. Returns
    (ticket id, phone)."""
    phone = unique_phone()
    _, ticket = await _client_writes(evolution, desk, phone, "Olá, preciso de ajuda")
    assert ticket["status"] == "espera", ticket
    desk.phones[ticket["_id"]] = phone
    return str(ticket["_id"]), phone


def _held_event(holds: Callable[..., Hold], ticket_type: str, when: Callable[[Any], bool]) -> Hold:
    """The next ticket event of `ticket_type` matching `when` waits before its write (its checks
    passed: the department was read, the actor authorized)."""
    return holds(audit_service, "insert", lambda *a, **k: len(a) > 1 and a[1].type == ticket_type and when(a[1]))


async def _patch(browser: httpx.AsyncClient, desk: Desk, path: str, body: dict[str, Any]) -> httpx.Response:
    return await browser.patch(f"{API}/{path}", json=body, headers=desk.owner)


async def _deactivate(browser: httpx.AsyncClient, desk: Desk, i: int) -> httpx.Response:
    return await _patch(browser, desk, f"departments/{desk.dept(i)}", {"active": False})


async def _set_default(browser: httpx.AsyncClient, desk: Desk, i: int) -> httpx.Response:
    body = {"default_department_id": desk.dept(i)}
    return await _patch(browser, desk, f"whatsapp-connections/{desk.conn['id']}", body)


# --- wire markers -------------------------------------------------------------------------------


def bool_element(key: str, value: bool) -> bytes:
    return b"\x08" + key.encode() + b"\x00" + (b"\x01" if value else b"\x00")


def int_element(key: str, value: int) -> bytes:
    return b"\x10" + key.encode() + b"\x00" + value.to_bytes(4, "little", signed=True)


def _department_write(department_id: str, *, active: bool) -> tuple[bytes, ...]:
    """The department's update setting `active` (a deactivation, or its undo)."""
    return command_marker("update", "departments"), string_element("_id", department_id), bool_element("active", active)


def _default_taken_back(conn_id: str, restored: str) -> tuple[bytes, ...]:
    """A default change giving way: the connection's conditional write putting `restored` back."""
    return (
        command_marker("findAndModify", "whatsapp_connections"),
        string_element("_id", conn_id),
        string_element("default_department_id", restored),
    )


def _transfer_event(ticket_id: str, department_id: str) -> tuple[bytes, ...]:
    return (
        command_marker("insert", "ticket_events"),
        string_element("ticket_id", ticket_id),
        string_element("to_department_id", department_id),
    )


def _projection(ticket_id: str, version: int) -> tuple[bytes, ...]:
    return command_marker("findAndModify", "tickets"), string_element("_id", ticket_id), int_element("version", version)


# --- the truth, read past the relay, and what people see ----------------------------------------

STATE = ("status", "agent_id", "department_id")


async def _log(ticket_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (
        await _direct.ticket_events.find({"ticket_id": ticket_id}).sort("version", 1).to_list(None)
    )
    return found


def _told(log: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["version"], e["type"], e["actor_id"], *(e["state"].get(k) for k in STATE)) for e in log]


async def _unseen(tenant_id: str) -> list[str]:
    """What the tenant's store holds that nobody will ever see or serve: a ticket document behind
    its log, an open ticket held by an inactive person or waiting where no active agent works, a
    connection opening its new conversations in an inactive department."""
    people = await _direct.users.find({"reseller_id": tenant_id, "role": {"$in": ["agent", "reseller"]}}).to_list(None)
    active = {u["_id"] for u in people if u.get("active", True)}
    staffed = {d for u in people if u["role"] == "agent" and u["_id"] in active for d in u["department_ids"]}
    problems: list[str] = []
    for doc in await _direct.tickets.find({"reseller_id": tenant_id}).to_list(None):
        log = await _log(doc["_id"])
        state = log[-1]["state"] if log else {}
        if not log or doc["version"] != log[-1]["version"] or any(doc.get(k) != state.get(k) for k in STATE):
            problems.append(f"ticket {doc['_id']} stored as {[doc.get(k) for k in STATE]}, its log: {_told(log)}")
        if state.get("status") == "atendendo" and state.get("agent_id") not in active:
            problems.append(f"ticket {doc['_id']} held by inactive {state.get('agent_id')}: {_told(log)}")
        elif state.get("status") == "espera" and state.get("department_id") not in staffed:
            problems.append(f"ticket {doc['_id']} waits in {state.get('department_id')}, where no active agent works")
    for conn in await _direct.whatsapp_connections.find({"reseller_id": tenant_id}).to_list(None):
        dept = await _direct.departments.find_one({"_id": conn["default_department_id"]})
        if dept is None or not dept["active"]:
            problems.append(f"connection {conn['_id']} opens new conversations in inactive {dept and dept['_id']}")
    return problems


async def _check_nothing_unseen(tenant_id: str) -> None:
    async def clean() -> bool:
        return not await _unseen(tenant_id)

    if not await last_within(clean, timeout=SETTLE):
        problems = await _unseen(tenant_id)
        assert not problems, "stored, and nobody will ever see it:\n" + "\n".join(problems)


async def _listed(browser: httpx.AsyncClient, headers: dict[str, str], status: str) -> set[str]:
    r = await browser.get(f"{API}/tickets", params={"status": status, "limit": 200}, headers=headers)
    assert r.status_code == 200, r.text
    return {t["id"] for t in r.json()["items"]}


async def _inbox(browser: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, set[str]]:
    return {s: await _listed(browser, headers, s) for s in ("espera", "atendendo")}


async def _check_counts(browser: httpx.AsyncClient, desk: Desk) -> None:
    """Each person's `/tickets/counts` says what that person lists; the owner's says what the
    tenant's stored tickets say (within the sweep's bound)."""

    async def disagreements() -> list[str]:
        found = []
        for who, headers in desk.people().items():
            r = await browser.get(f"{API}/tickets/counts", headers=headers)
            assert r.status_code == 200, r.text
            inbox = await _inbox(browser, headers)
            listed = {s: len(ids) for s, ids in inbox.items()}
            counted = {s: int(r.json()[s]) for s in listed}
            if counted != listed:
                found.append(f"{who}: counts {counted}, lists {listed}")
        stored = {
            s: int(await _direct.tickets.count_documents({"reseller_id": desk.tenant.id, "status": s}))
            for s in ("espera", "atendendo")
        }
        owner = (await browser.get(f"{API}/tickets/counts", headers=desk.owner)).json()
        if {s: owner[s] for s in stored} != stored:
            found.append(f"owner counts {owner}, the tenant's tickets {stored}")
        return found

    async def agree() -> bool:
        return not await disagreements()

    if not await last_within(agree, timeout=SETTLE):
        assert not await disagreements()


async def _check_waits_for(browser: httpx.AsyncClient, desk: Desk, ticket_id: str, i: int) -> None:
    """The ticket waits in department i with nobody, its document as its log says (within the
    sweep's bound): department i's agent lists it, the other agents do not, the owner does."""

    async def waiting() -> dict[str, Any] | None:
        doc, log = await _direct.tickets.find_one({"_id": ticket_id}), await _log(ticket_id)
        ok = doc["version"] == log[-1]["version"] and (doc["status"], doc["department_id"]) == ("espera", desk.dept(i))
        return doc if ok else None

    doc = await last_within(waiting, timeout=SETTLE)
    stored = await _direct.tickets.find_one({"_id": ticket_id})
    assert doc is not None, (
        f"ticket {ticket_id} stored as {[stored.get(k) for k in STATE]} v{stored['version']}, "
        f"not waiting in department {i}; its log: {_told(await _log(ticket_id))}"
    )
    assert doc["agent_id"] is None, doc
    for j, agent in enumerate(desk.staff):
        queue = await _listed(browser, agent["headers"], "espera")
        assert (ticket_id in queue) == (i == j), f"agent of department {j} lists {ticket_id}: {ticket_id in queue}"
    assert ticket_id in await _listed(browser, desk.owner, "espera")


async def _check_next_message_seen(
    browser: httpx.AsyncClient, evolution: FakeEvolution, desk: Desk, ticket_id: str, seer: dict[str, str]
) -> None:
    """The client of `ticket_id` writes again: its message lands in that ticket, still open, which
    `seer` lists and whose thread shows it."""
    text = f"Alguém? {unique('')}"
    message, ticket = await _client_writes(evolution, desk, desk.phones[ticket_id], text)
    assert ticket["_id"] == ticket_id and ticket["status"] in ("espera", "atendendo"), (
        f"the client's next message went to {ticket['_id']} ({ticket['status']}), not its open ticket {ticket_id}"
    )
    assert ticket_id in await _listed(browser, seer, ticket["status"])
    r = await browser.get(f"{API}/tickets/{ticket_id}/messages", params={"limit": 200}, headers=seer)
    assert r.status_code == 200, r.text
    assert message["_id"] in [m["id"] for m in r.json()["items"]], r.json()


async def _answered_by(browser: httpx.AsyncClient, ticket_id: str, agent: dict[str, Any]) -> None:
    """The agent takes the ticket and answers the client."""
    r = await browser.post(f"{API}/tickets/{ticket_id}/assume", headers=agent["headers"])
    assert r.status_code == 200, r.text
    r = await browser.post(f"{API}/tickets/{ticket_id}/messages", json={"body": "Oi!"}, headers=agent["headers"])
    assert r.status_code in (200, 201), r.text


# --- 1. where a new conversation waits, decided before a deactivation lands -----------------------


async def test_a_first_message_routed_before_its_department_was_deactivated_waits_with_that_departments_agents(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    holds: Callable[..., Hold],
) -> None:
    """A new client's first message: the delivery has read its connection (default: department 0)
    and is held before the new ticket's event v1. Meanwhile the owner makes department 1 the
    default and deactivates department 0 (allowed: no connection defaults there any more). The
    ticket then opens in department 0. Right: it is what the message arriving a moment earlier
    gives (a ticket waiting in a department when it is deactivated stays in its agents' queue),
    and department 0's agent still works there: it lists the ticket, counts it, and answers it;
    department 1's agent (the new default) does not see it; the client's next message goes to the
    same ticket; a later new conversation opens in department 1."""
    desk = await _desk(client, admin_headers, evolution)
    phone = unique_phone()
    held = _held_event(holds, "created", lambda e: e.reseller_id == desk.tenant.id)
    result = await evolution.inbound(desk.conn["instance_name"], phone, "Primeira mensagem", push_name="Maria")
    await arrived(held.entered, None, "the delivery reaching its new ticket's event")

    r = await _set_default(browser, desk, 1)
    assert r.status_code == 200, r.text
    r = await _deactivate(browser, desk, 0)
    assert r.status_code == 200 and r.json()["active"] is False, r.text
    held.go.set()
    _, ticket = await _filed(desk, result, "Primeira mensagem")
    desk.phones[ticket["_id"]] = phone

    assert (await _direct.departments.find_one({"_id": desk.dept(0)}))["active"] is False
    await _check_waits_for(browser, desk, ticket["_id"], 0)
    await _check_counts(browser, desk)
    await _check_nothing_unseen(desk.tenant.id)
    await _check_next_message_seen(browser, evolution, desk, ticket["_id"], desk.staff[0]["headers"])
    await _answered_by(browser, ticket["_id"], desk.staff[0])
    later, _ = await _new_conversation(evolution, desk)
    await _check_waits_for(browser, desk, later, 1)
    await _check_counts(browser, desk)


async def test_a_menu_answer_chosen_before_its_department_was_deactivated_waits_with_that_departments_agents(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    holds: Callable[..., Hold],
) -> None:
    """The connection's menu offers departments 1 and 2. The client answers "1": department 1 is
    read active and the move is held before its `routed` event. Meanwhile the owner deactivates
    department 1 (a menu department may go: the menu skips it). The move lands: the ticket waits
    in department 1, as if the client had answered a moment earlier, where department 1's agent
    lists it and answers it, and department 0's agent (where it waited for the answer) no longer
    does. A new client's menu then offers department 2 alone."""
    desk = await _desk(client, admin_headers, evolution)
    menu = {"menu_enabled": True, "menu_department_ids": [desk.dept(1), desk.dept(2)], "menu_text": MENU_TEXT}
    r = await _patch(browser, desk, f"whatsapp-connections/{desk.conn['id']}", menu)
    assert r.status_code == 200, r.text
    ticket_id, phone = await _new_conversation(evolution, desk)
    assert (await _direct.tickets.find_one({"_id": ticket_id}))["menu_pending"] is True
    assert ticket_id in await _listed(browser, desk.staff[0]["headers"], "espera")

    held = _held_event(holds, "routed", lambda e: e.ticket_id == ticket_id)
    result = await evolution.inbound(desk.conn["instance_name"], phone, "1", push_name="Maria")
    await arrived(held.entered, None, "the menu answer reaching its move")
    r = await _deactivate(browser, desk, 1)
    assert r.status_code == 200 and r.json()["active"] is False, r.text
    held.go.set()
    await _filed(desk, result, "1")

    await _check_waits_for(browser, desk, ticket_id, 1)
    routed = (await _log(ticket_id))[-1]
    moved = (routed["type"], routed["actor_role"], routed["data"]["to_department_id"])
    assert moved == ("routed", "client", desk.dept(1)), _told(await _log(ticket_id))
    assert (await _direct.tickets.find_one({"_id": ticket_id}))["menu_pending"] is False
    await _check_counts(browser, desk)
    await _check_nothing_unseen(desk.tenant.id)
    await _check_next_message_seen(browser, evolution, desk, ticket_id, desk.staff[1]["headers"])
    await _answered_by(browser, ticket_id, desk.staff[1])

    later, _ = await _new_conversation(evolution, desk)
    department_2 = next(d["name"] for d in desk.tenant.departments if d["id"] == desk.dept(2))
    menus = [m["body"] for m in await _direct.messages.find({"ticket_id": later}).to_list(None) if m.get("automatic")]
    assert menus == [f"{MENU_TEXT}\n1 - {department_2}"], menus


async def test_a_transfer_checked_before_its_department_was_deactivated_waits_with_that_departments_agents(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    holds: Callable[..., Hold],
) -> None:
    """Department 0's agent holds a ticket and transfers it to department 1: department 1 is read
    active and the move is held before its `transferred` event. Meanwhile the owner deactivates
    department 1. The transfer lands (200): the ticket waits in department 1, as if transferred a
    moment earlier, where department 1's agent lists it, counts it and answers it; the agent who
    transferred it no longer sees it; a second transfer there is refused (422)."""
    desk = await _desk(client, admin_headers, evolution)
    ticket_id, _ = await _new_conversation(evolution, desk)
    other, _ = await _new_conversation(evolution, desk)
    for t in (ticket_id, other):
        r = await browser.post(f"{API}/tickets/{t}/assume", headers=desk.staff[0]["headers"])
        assert r.status_code == 200, r.text

    held = _held_event(holds, "transferred", lambda e: e.ticket_id == ticket_id)
    body = {"department_id": desk.dept(1)}
    transfer = asyncio.ensure_future(
        browser.post(f"{API}/tickets/{ticket_id}/transfer", json=body, headers=desk.staff[0]["headers"])
    )
    await arrived(held.entered, transfer, "the transfer reaching its move")
    r = await _deactivate(browser, desk, 1)
    assert r.status_code == 200 and r.json()["active"] is False, r.text
    held.go.set()
    landed = await transfer
    assert landed.status_code == 200, landed.text

    await _check_waits_for(browser, desk, ticket_id, 1)
    r = await browser.get(f"{API}/tickets/{ticket_id}", headers=desk.staff[0]["headers"])
    assert r.status_code == 404, r.text
    r = await browser.post(f"{API}/tickets/{other}/transfer", json=body, headers=desk.staff[0]["headers"])
    assert r.status_code == 422, r.text
    assert other in await _listed(browser, desk.staff[0]["headers"], "atendendo")
    await _check_counts(browser, desk)
    await _check_nothing_unseen(desk.tenant.id)
    await _check_next_message_seen(browser, evolution, desk, ticket_id, desk.staff[1]["headers"])
    await _answered_by(browser, ticket_id, desk.staff[1])


async def test_an_agent_taken_out_of_the_department_while_assuming_keeps_the_ticket_it_won(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    holds: Callable[..., Hold],
) -> None:
    """Department 0's agent clicks Assumir on a waiting ticket (authenticated as an agent of
    department 0, held before its `assumed` event); meanwhile the owner moves the agent to
    department 2. The assume lands (200): the agent holds the ticket, as if it had clicked a moment
    earlier (an agent taken out of a department keeps what it holds there). It lists the ticket,
    answers it and sees the client's next message; department 0's queue no longer has it; nobody's
    counts disagree; and the agent transferring it back puts it in department 0's queue."""
    desk = await _desk(client, admin_headers, evolution)
    colleague = await make_agent(client, desk.tenant, [desk.dept(0)])
    ticket_id, _ = await _new_conversation(evolution, desk)
    agent = desk.staff[0]

    held = _held_event(holds, "assumed", lambda e: e.ticket_id == ticket_id)
    assume = asyncio.ensure_future(browser.post(f"{API}/tickets/{ticket_id}/assume", headers=agent["headers"]))
    await arrived(held.entered, assume, "the assume reaching its move")
    r = await _patch(browser, desk, f"users/{agent['id']}", {"department_ids": [desk.dept(2)]})
    assert r.status_code == 200 and r.json()["department_ids"] == [desk.dept(2)], r.text
    held.go.set()
    landed = await assume
    assert landed.status_code == 200, landed.text

    doc = await _direct.tickets.find_one({"_id": ticket_id})
    assert (doc["status"], doc["agent_id"], doc["department_id"]) == ("atendendo", agent["id"], desk.dept(0)), doc
    assert ticket_id in await _listed(browser, agent["headers"], "atendendo")
    assert ticket_id not in await _listed(browser, colleague["headers"], "espera")
    await _check_counts(browser, desk)
    await _check_nothing_unseen(desk.tenant.id)
    await _check_next_message_seen(browser, evolution, desk, ticket_id, agent["headers"])
    r = await browser.post(f"{API}/tickets/{ticket_id}/messages", json={"body": "Oi!"}, headers=agent["headers"])
    assert r.status_code in (200, 201), r.text
    r = await browser.post(
        f"{API}/tickets/{ticket_id}/transfer", json={"department_id": desk.dept(0)}, headers=agent["headers"]
    )
    assert r.status_code == 200, r.text
    assert ticket_id in await _listed(browser, colleague["headers"], "espera")
    assert ticket_id not in await _listed(browser, agent["headers"], "espera")
    await _check_counts(browser, desk)


# --- 2. a deactivation against a default change: each side's undo lost ----------------------------


@pytest.mark.parametrize(
    "lose",
    [
        "request",
        "reply",
    ],
)
async def test_a_deactivation_refused_after_its_write_whose_undo_is_lost_leaves_the_default_active(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
    holds: Callable[..., Hold],
    lose: Lose,
) -> None:
    """The owner deactivates department 1: no connection defaults there, and the request is held
    before its write. Meanwhile department 1 is made the connection's default (active: 200). The
    deactivation writes, finds the connection on its check after the write, and writes the
    department back active — that undo is lost (503). The owner clicks again, as told: refused
    (409, the connection named). End: department 1 active (what a refused deactivation leaves), the
    connection's new conversations wait there with its agent, and an agent can still be added."""
    desk = await _desk(client, admin_headers, evolution)
    dept = desk.dept(1)
    held = holds(
        departments_service, "update", lambda *a, **k: k.get("department_id") == dept and k["data"].active is False
    )
    deactivation = asyncio.ensure_future(_deactivate(browser, desk, 1))
    await arrived(held.entered, deactivation, "the deactivation passing its check")
    r = await _set_default(browser, desk, 1)
    assert r.status_code == 200, r.text

    sprung = store_proxy.stall_next(*_department_write(dept, active=True), lose=lose)
    held.go.set()
    await arrived(sprung, deactivation, "the trap on the deactivation's undo")
    first = await deactivation
    assert unanswered(first) or first.status_code == 409, first.text
    again = await _deactivate(browser, desk, 1)
    assert again.status_code == 409 and desk.conn["name"] in again.json()["detail"], again.text

    stored = await _direct.departments.find_one({"_id": dept})
    conn = await _direct.whatsapp_connections.find_one({"_id": desk.conn["id"]})
    assert conn["default_department_id"] == dept, conn
    assert stored["active"] is True, (
        f"department {dept} is inactive while connection {conn['_id']} opens its new conversations there; "
        f"the repeat answered {again.status_code} {again.text}"
    )
    r = await browser.get(f"{API}/departments/{dept}", headers=desk.owner)
    assert r.status_code == 200 and r.json()["active"] is True, r.text
    ticket_id, _ = await _new_conversation(evolution, desk)
    await _check_waits_for(browser, desk, ticket_id, 1)
    r = await browser.post(
        f"{API}/users",
        json={
            "name": "Reforço",
            "email": f"{unique('agent')}@example.com",
            "password": "agent-pass-1",
            "role": "agent",
            "department_ids": [dept],
        },
        headers=desk.owner,
    )
    assert r.status_code == 201, f"no agent can be added to the connection's default department: {r.text}"
    await _check_counts(browser, desk)
    await _check_nothing_unseen(desk.tenant.id)


@pytest.mark.parametrize(
    "lose",
    [
        "request",
        "reply",
    ],
)
async def test_a_default_change_given_way_whose_take_back_is_lost_opens_nothing_in_the_inactive_department(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
    holds: Callable[..., Hold],
    lose: Lose,
) -> None:
    """Department 1 is being made the connection's default: found active, the request is held
    before its write. Meanwhile the owner deactivates department 1 (no connection defaults there:
    200). The default change writes, finds department 1 inactive on its check after the write, and
    takes its value back (department 0) — that write is lost (503). The same change is clicked
    again, as told: refused (422, the department is inactive). End: the connection opens its new
    conversations in department 0, active, where its agent lists them; none lands in department 1."""
    desk = await _desk(client, admin_headers, evolution)
    dept = desk.dept(1)
    held = holds(
        connections_repository, "update", lambda *a, **k: len(a) > 3 and a[3].get("default_department_id") == dept
    )
    change = asyncio.ensure_future(_set_default(browser, desk, 1))
    await arrived(held.entered, change, "the default change passing its check")
    r = await _deactivate(browser, desk, 1)
    assert r.status_code == 200 and r.json()["active"] is False, r.text

    sprung = store_proxy.stall_next(*_default_taken_back(desk.conn["id"], desk.dept(0)), lose=lose)
    held.go.set()
    await arrived(sprung, change, "the trap on the default change's take-back")
    first = await change
    assert unanswered(first) or first.status_code == 422, first.text
    again = await _set_default(browser, desk, 1)

    conn = await _direct.whatsapp_connections.find_one({"_id": desk.conn["id"]})
    assert conn["default_department_id"] == desk.dept(0), (
        f"connection {conn['_id']} opens its new conversations in {conn['default_department_id']} "
        f"(department 1 inactive: {(await _direct.departments.find_one({'_id': dept}))['active'] is False}); "
        f"the repeat answered {again.status_code} {again.text}"
    )
    assert again.status_code == 422, again.text
    r = await browser.get(f"{API}/whatsapp-connections/{desk.conn['id']}", headers=desk.owner)
    assert r.status_code == 200 and r.json()["default_department_id"] == desk.dept(0), r.text
    ticket_id, _ = await _new_conversation(evolution, desk)
    await _check_waits_for(browser, desk, ticket_id, 0)
    await _check_counts(browser, desk)
    await _check_nothing_unseen(desk.tenant.id)


# --- 3. a transfer to a department losing a write while the department is deactivated --------------


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", ["event", "projection"])
async def test_a_transfer_losing_a_write_while_its_department_is_deactivated_ends_seen(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
    write: str,
    lose: Lose,
) -> None:
    """Department 0's agent holds a ticket and transfers it to department 1 (found active). One of
    the transfer's writes is lost — its `transferred` event, or its projection onto the ticket —
    and while it hangs the owner deactivates department 1. The agent clicks again.
    - The event never ran: nothing moved, and the repeat is refused (422: the department is
      inactive now); the ticket stays with the agent, which lists and answers it.
    - The event ran (its reply lost, or its projection lost): the transfer happened before the
      deactivation. The repeat must not say otherwise — it is told the ticket already waits there
      (409), not that the department cannot take it — and the sweep brings the ticket's document
      to its log: waiting in department 1, where department 1's agent lists it and answers it."""
    desk = await _desk(client, admin_headers, evolution)
    ticket_id, _ = await _new_conversation(evolution, desk)
    agent = desk.staff[0]
    r = await browser.post(f"{API}/tickets/{ticket_id}/assume", headers=agent["headers"])
    assert r.status_code == 200, r.text
    version = int((await _direct.tickets.find_one({"_id": ticket_id}))["version"])
    markers = _transfer_event(ticket_id, desk.dept(1)) if write == "event" else _projection(ticket_id, version + 1)

    path, body = f"{API}/tickets/{ticket_id}/transfer", {"department_id": desk.dept(1)}
    sprung = store_proxy.stall_next(*markers, lose=lose)
    transfer = asyncio.ensure_future(browser.post(path, json=body, headers=agent["headers"]))
    await arrived(sprung, transfer, f"the trap on the transfer's {write}")
    r = await _deactivate(browser, desk, 1)
    assert r.status_code == 200, r.text
    first = await transfer
    assert unanswered(first), first.text
    again = await browser.post(path, json=body, headers=agent["headers"])

    if write == "event" and lose == "request":
        assert again.status_code == 422, again.text
        doc = await _direct.tickets.find_one({"_id": ticket_id})
        assert (doc["status"], doc["agent_id"]) == ("atendendo", agent["id"]), doc
        assert [e["type"] for e in await _log(ticket_id)] == ["created", "assumed"]
        assert ticket_id in await _listed(browser, agent["headers"], "atendendo")
        await _check_next_message_seen(browser, evolution, desk, ticket_id, agent["headers"])
    else:
        await _check_waits_for(browser, desk, ticket_id, 1)
        moves = [(e["type"], e["data"].get("to_department_id")) for e in await _log(ticket_id)]
        assert moves == [("created", None), ("assumed", None), ("transferred", desk.dept(1))], moves
        assert again.status_code == 409, f"the repeat of a transfer that happened answered {again.text}"
        await _check_next_message_seen(browser, evolution, desk, ticket_id, desk.staff[1]["headers"])
        await _answered_by(browser, ticket_id, desk.staff[1])
    await _check_counts(browser, desk)
    await _check_nothing_unseen(desk.tenant.id)
