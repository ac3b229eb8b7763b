"""Scheduled messages while the store loses one write, and with a competitor let in between two
writes of a due pass.

The backend reaches the store through a relay (tests/tcp_relay.py) that stalls the one connection
carrying a chosen write: the command never runs (`lose="request"`) or it runs and its answer never
comes back (`lose="reply"`); with MONGO_SOCKET_TIMEOUT_MS the caller gives up after 1.5 s (a request
answers 503 "the database did not answer; retry", over the real port; a due pass logs it and leaves
the schedule to the next pass). Then the person does what a person does: clicks again.

The writes (backend/scheduled/service.py):
- scheduling: the schedule's insert (`scheduled_messages`, its `_id` derived from the request);
- a due pass (`run_due` → `deliver`): the outcome key's claim (`natural_keys` insert
  "scheduled-outcome:<tenant>:<schedule>", target "sent"), then the reply it becomes (`_send` →
  messages.send_as_agent: its chat position and queue entry, `outbox_chats` and `outbox`, then the
  message, `messages`, its `_id` derived from the schedule's), then the status projection
  (`scheduled_messages` update, `settle`);
- a cancel: the key's claim (target "canceled"), then the projection;
- an edit (`replace`): the edited schedule's insert (`replaces` the old one), the old one's key
  claimed for it (target "edited:<new>"), the old one's projection.

The due pass is the product's own (`service.run_due`), run here at a `now` past every schedule's
time (the background pass is off in this module's app: no pass runs but the test's). The outbox
worker and the ticket sweep run in the app as in production.

Competitors are let in deterministically: the pass is held in-process (monkeypatch, `holds`) at
one of three points — after reading the ticket and its connection, before claiming "sent"
("before the claim"); between that claim and storing the reply ("after the claim"); between
storing the reply and its status write ("after the send") — while a person's request runs to its
end over the real port; then the pass goes on.

Two processes (the last tests): a second backend process on the same store, past the relay, runs
its own due pass (every 0.2 s) and outbox worker while the app's pass loses a write or is held.

The end state, whatever was lost and whoever came in between: the schedule's stored status, reason
and outcome key agree; it is sent once (its message stored once in its ticket, queued, taken once
by the fake provider, shown in the ticket's thread) or never (no message, no queue entry: nothing
can ever send it) and then shown canceled or failed with its reason; what the API lists (the
ticket's schedules, the author's "Agendamentos") says the same; and nothing of the test is left
"scheduled" once its time came and a pass ran."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from backend.core import natural_keys
from backend.core.clock import utcnow
from backend.messages import service as messages_service
from backend.scheduled import repository as scheduled_repository
from backend.scheduled import service
from backend.tickets import sweep as tickets_sweep
from tests.factories import API, Tenant, make_agent, make_tenant, unique, unique_phone
from tests.fakes.harness import FakeEvolution, app, backend_port, evolution, last_within, make_connection, settings
from tests.holds import Hold, arrived, holds
from tests.outbound.helpers import unsigned
from tests.realtime.conftest import Server, start_server
from tests.tcp_relay import Lose, StoreProxy, command_marker, relayed, string_element, unanswered
from tests.webhooks.helpers import settled

__all__ = ["app", "backend_port", "evolution", "holds", "settings"]

WAIT = 30.0  # a trap's springing, a held pass's arrival, a delivery's processing (a loaded 2-core box)
SETTLE = 20.0  # how long an outcome may take to show: a stall (1.5 s), the worker's send, sweep periods
SHOWN = 5.0  # how long a reloaded screen may take to show what an outcome key decided (a bound only)
LOSSES: list[Lose] = ["request", "reply"]
AHEAD = timedelta(hours=1)  # every schedule's time: far enough that only the test's own pass meets it
LATER = timedelta(hours=2)  # the `now` of the test's passes: past every schedule's time


@pytest.fixture(scope="module")
def settings_overrides(store_relay: StoreProxy) -> dict[str, Any]:
    return {
        **relayed(store_relay),
        "SCHEDULED_MESSAGES_ENABLED": False,  # the tests run their due passes themselves
        "TICKET_SWEEP_SECONDS": 0.5,  # it re-runs a finalize's hooks that a lost write stopped
    }


# --- held passes ----------------------------------------------------------------------------------


async def _lost_click(
    proxy: StoreProxy, markers: tuple[bytes, ...], lose: Lose, request: Awaitable[httpx.Response], what: str
) -> httpx.Response:
    """Arms the trap on `markers`, sends `request` and returns its answer once the trap sprang."""
    sprung = proxy.stall_next(*markers, lose=lose)
    click = asyncio.ensure_future(request)
    await arrived(sprung, click, f"the trap on the {what}")
    return await click


# --- the desk -------------------------------------------------------------------------------------


@dataclass
class Desk:
    """A company's WhatsApp conversation held (atendendo) by `agent`, who schedules in it;
    `colleague` works in the same department."""

    tenant: Tenant
    conn: dict[str, Any]
    agent: dict[str, Any]
    colleague: dict[str, Any]
    ticket_id: str
    phone: str

    @property
    def owner(self) -> dict[str, str]:
        return self.tenant.headers

    @property
    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = self.agent["headers"]
        return headers


@dataclass
class Company:
    tenant: Tenant
    conn: dict[str, Any]


_companies: list[Company] = []  # the module's one company (created by the first test that asks)
_desks: list[Desk] = []  # every desk a test made: what it left waiting is canceled after it


async def _company(client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution) -> Company:
    if not _companies:
        tenant = await make_tenant(client, admin_headers, agents=2)
        conn = await make_connection(client, tenant, evolution)
        _companies.append(Company(tenant, conn))
    return _companies[0]


async def _desk(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    direct: Any,
    *,
    own_agent: bool = False,
    own_connection: bool = False,
) -> Desk:
    """A new client writes in on WhatsApp and the agent assumes its ticket. The company and its
    agents are the module's, unless the test changes them (`own_agent`: an agent of its own, to
    deactivate; `own_connection`: a connection of its own, to deactivate)."""
    company = await _company(client, admin_headers, evolution)
    tenant, conn = company.tenant, company.conn
    agent, colleague = tenant.agents
    if own_agent:
        agent = await make_agent(client, tenant, [tenant.departments[0]["id"]])
    if own_connection:
        conn = await make_connection(client, tenant, evolution)
    phone = unique_phone()
    result = await evolution.inbound(conn["instance_name"], phone, "Olá, preciso de ajuda")
    raw = await settled(direct, result, within=WAIT)
    assert raw["status"] == "processed", raw
    customer = await direct.users.find_one({"reseller_id": tenant.id, "phone": phone})
    ticket = await direct.tickets.find_one({"client_id": customer["_id"], "status": "espera"})
    r = await client.post(f"{API}/tickets/{ticket['_id']}/assume", headers=agent["headers"])
    assert r.status_code == 200, r.text
    desk = Desk(tenant, conn, agent, colleague, str(ticket["_id"]), phone)
    _desks.append(desk)
    return desk


@pytest.fixture(autouse=True)
async def _nothing_left_waiting(client: httpx.AsyncClient, store_relay: StoreProxy) -> AsyncIterator[None]:
    """After each test, whatever it left waiting is canceled by the owner (the next test's pass
    would otherwise meet it)."""
    yield
    store_relay.traps.clear()
    for desk in _desks:
        r = await client.get(f"{API}/tickets/{desk.ticket_id}/scheduled-messages", headers=desk.owner)
        for s in r.json()["items"] if r.status_code == 200 else []:
            if s["status"] == "scheduled":
                await client.post(f"{API}/scheduled-messages/{s['id']}/cancel", headers=desk.owner)
    _desks.clear()


def _at(delta: timedelta = AHEAD) -> str:
    return (utcnow() + delta).isoformat()


def _text(what: str) -> str:
    return f"{what} {unique('')}"


async def _schedule(browser: httpx.AsyncClient, desk: Desk, body: str, send_at: str | None = None) -> dict[str, Any]:
    r = await browser.post(
        f"{API}/tickets/{desk.ticket_id}/scheduled-messages",
        json={"body": body, "send_at": send_at or _at()},
        headers=desk.headers,
    )
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    assert created["status"] == "scheduled", created
    return created


async def _pass(db: Any) -> int:
    """One due pass of the product's, at a `now` past every schedule's time."""
    return await service.run_due(db, utcnow() + LATER)


def _key_id(desk: Desk, schedule_id: str) -> str:
    return natural_keys.key_id(service.OUTCOME, desk.tenant.id, schedule_id)


# --- wire markers ---------------------------------------------------------------------------------


def _claim(desk: Desk, schedule_id: str, target: str) -> tuple[bytes, ...]:
    return (
        command_marker("insert", "natural_keys"),
        string_element("_id", _key_id(desk, schedule_id)),
        string_element("target", target),
    )


def _projection(schedule_id: str, status: str) -> tuple[bytes, ...]:
    return (
        command_marker("update", "scheduled_messages"),
        string_element("_id", schedule_id),
        string_element("status", status),
    )


# --- the truth, read past the relay, and what the API shows -------------------------------------


async def _outcome(direct: Any, desk: Desk, schedule_id: str) -> str | None:
    key = await direct.natural_keys.find_one({"_id": _key_id(desk, schedule_id)})
    return None if key is None else str(key["target"])


async def _received(evolution: FakeEvolution, desk: Desk, body: str) -> list[dict[str, Any]]:
    """What the provider took for the desk's client with this text (signature removed)."""
    return [s for s in await evolution.sent() if s["number"] == desk.phone and unsigned(s["text"]) == body]


async def _api_schedules(browser: httpx.AsyncClient, desk: Desk, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The ticket's schedules as a screen showing it lists them."""
    r = await browser.get(f"{API}/tickets/{desk.ticket_id}/scheduled-messages", headers=headers)
    assert r.status_code == 200, r.text
    return {s["id"]: s for s in r.json()["items"]}


async def _agendamentos(browser: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The person's "Agendamentos" page (every status, every page)."""
    found: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        r = await browser.get(f"{API}/scheduled-messages", params=params, headers=headers)
        assert r.status_code == 200, r.text
        found.update({s["id"]: s for s in r.json()["items"]})
        cursor = r.json()["next_cursor"]
        if not cursor:
            return found


async def _thread(browser: httpx.AsyncClient, desk: Desk, headers: dict[str, str]) -> list[dict[str, Any]]:
    r = await browser.get(f"{API}/tickets/{desk.ticket_id}/messages", params={"limit": 200}, headers=headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def _none_waiting(direct: Any, desk: Desk) -> None:
    """Nothing of the ticket is still "scheduled" (every schedule's time came and a pass ran)."""
    waiting = await direct.scheduled_messages.find({"ticket_id": desk.ticket_id, "status": "scheduled"}).to_list(None)
    assert not waiting, f"still waiting after their time and a pass: {[(w['_id'], w['body']) for w in waiting]}"


async def _check_sent_once(
    browser: httpx.AsyncClient,
    direct: Any,
    evolution: FakeEvolution,
    desk: Desk,
    schedule_id: str,
    body: str,
    *,
    author: dict[str, Any] | None = None,
    viewer: dict[str, str] | None = None,
    lister: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Sent once: settled "sent" as its key says, its message stored once in its ticket as the
    author's, taken once by the provider (signed by its author), and shown so by the API: in the
    ticket's strip and thread as `viewer` (its agent) sees them, in "Agendamentos" as `lister`
    (its author) sees it. Returns the stored message."""
    author = author or desk.agent
    viewer = viewer or desk.headers
    lister = lister or author["headers"]
    message_id = service.message_id_of(schedule_id)
    assert await _outcome(direct, desk, schedule_id) == service.SENT
    doc = await direct.scheduled_messages.find_one({"_id": schedule_id})
    assert (doc["status"], doc.get("reason"), doc.get("message_id")) == ("sent", None, message_id), doc

    async def delivered() -> dict[str, Any] | None:
        found: dict[str, Any] | None = await direct.messages.find_one({"_id": message_id, "status": {"$ne": "pending"}})
        return found

    message: dict[str, Any] | None = await last_within(delivered, timeout=SETTLE)
    assert message is not None, f"still pending: {await direct.messages.find_one({'_id': message_id})}"
    assert message["status"] == "sent", message
    assert (message["ticket_id"], message["sender_id"]) == (desk.ticket_id, author["id"]), message
    assert await direct.messages.count_documents({"_id": message_id}) == 1
    taken = await _received(evolution, desk, body)
    assert len(taken) == 1, f"the provider took {body!r} {len(taken)} times: {taken}"
    assert taken[0]["text"] == messages_service.signed(author["name"], body), taken
    # One attempt, and it sent: the worker makes no second once the message reads "sent".
    attempts = await direct.outbox_attempts.find({"message_id": message_id}).to_list(None)
    assert [a.get("result") for a in attempts] == ["sent"], attempts
    assert message["provider_message_id"] == taken[0]["key_id"], (message, taken)

    shown = (await _api_schedules(browser, desk, viewer))[schedule_id]
    assert (shown["status"], shown["reason"], shown["message_id"]) == ("sent", None, message_id), shown
    listed = (await _agendamentos(browser, lister))[schedule_id]
    assert (listed["status"], listed["message_id"]) == ("sent", message_id), listed
    thread = [m for m in await _thread(browser, desk, viewer) if m["id"] == message_id]
    assert len(thread) == 1 and thread[0]["status"] == "sent", thread
    await _none_waiting(direct, desk)
    return message


async def _check_never_sent(
    browser: httpx.AsyncClient,
    direct: Any,
    evolution: FakeEvolution,
    desk: Desk,
    schedule_id: str,
    body: str,
    *,
    status: str,
    reason: str,
    outcome: str,
) -> None:
    """Never sent, and shown why: settled `status` with `reason` as its key (`outcome`) says; no
    message of it stored, nothing of it queued (so nothing can ever send it), nothing of it taken
    by the provider; its author sees it so (the ticket's strip and thread, Agendamentos)."""
    message_id = service.message_id_of(schedule_id)
    assert await _outcome(direct, desk, schedule_id) == outcome
    doc = await direct.scheduled_messages.find_one({"_id": schedule_id})
    assert (doc["status"], doc.get("reason"), doc.get("message_id")) == (status, reason, None), doc
    assert await direct.messages.find_one({"_id": message_id}) is None
    assert await direct.outbox.find_one({"message_id": message_id}) is None
    assert await _received(evolution, desk, body) == []
    shown = (await _api_schedules(browser, desk, desk.headers))[schedule_id]
    assert (shown["status"], shown["reason"], shown["message_id"]) == (status, reason, None), shown
    listed = (await _agendamentos(browser, desk.headers))[schedule_id]
    assert (listed["status"], listed["reason"]) == (status, reason), listed
    assert message_id not in [m["id"] for m in await _thread(browser, desk, desk.headers)]
    await _none_waiting(direct, desk)


# --- 1. scheduling, its insert lost ---------------------------------------------------------------


@pytest.mark.parametrize("lose", LOSSES)
async def test_a_schedule_whose_insert_is_lost_is_stored_once_by_the_agents_repeat(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    lose: Lose,
) -> None:
    """The agent clicks Agendar; the schedule's insert is lost (503) and the agent clicks again with
    the same form. One schedule waits, the one the repeat answers; its time comes: sent once."""
    desk = await _desk(client, admin_headers, evolution, direct)
    body, send_at = _text("lembrete: o boleto vence amanhã"), _at()
    url, form = f"{API}/tickets/{desk.ticket_id}/scheduled-messages", {"body": body, "send_at": send_at}
    first = await _lost_click(
        store_proxy,
        (command_marker("insert", "scheduled_messages"), string_element("body", body)),
        lose,
        browser.post(url, json=form, headers=desk.headers),
        "schedule's insert",
    )
    assert unanswered(first), (first.status_code, first.text)
    stored = await direct.scheduled_messages.find({"ticket_id": desk.ticket_id}).to_list(None)
    assert len(stored) == (1 if lose == "reply" else 0), stored
    # What the agent's strip shows on reload: what the store holds.
    assert set(await _api_schedules(browser, desk, desk.headers)) == {s["_id"] for s in stored}

    again = await browser.post(url, json=form, headers=desk.headers)
    assert again.status_code == 201 and again.json()["status"] == "scheduled", again.text
    schedule_id = again.json()["id"]
    if stored:
        assert schedule_id == stored[0]["_id"], "the repeat stored a second schedule"
    waiting = await direct.scheduled_messages.find({"ticket_id": desk.ticket_id}).to_list(None)
    assert [(s["_id"], s["status"]) for s in waiting] == [(schedule_id, "scheduled")], waiting
    shown = await _api_schedules(browser, desk, desk.headers)
    assert [(s["id"], s["status"]) for s in shown.values()] == [(schedule_id, "scheduled")], shown
    listed = await _agendamentos(browser, desk.headers)
    assert [s for s in listed.values() if s["ticket_id"] == desk.ticket_id] == list(shown.values())

    assert await _pass(db) == 1
    assert await _pass(db) == 0  # settled: no pass takes it again
    await _check_sent_once(browser, direct, evolution, desk, schedule_id, body)


# --- 2. a due pass, one of its writes lost --------------------------------------------------------

PASS_WRITES = ["claim", "outbox", "message", "status"]


def _pass_write(desk: Desk, schedule_id: str, write: str) -> tuple[bytes, ...]:
    message_id = service.message_id_of(schedule_id)
    return {
        "claim": _claim(desk, schedule_id, service.SENT),
        "outbox": (command_marker("insert", "outbox"), string_element("message_id", message_id)),
        "message": (command_marker("insert", "messages"), string_element("_id", message_id)),
        "status": _projection(schedule_id, "sent"),
    }[write]


# Where a pass that lost the write stopped, as the store holds it: the outcome key, the reply's
# queue entries, whether the reply is stored, the schedule's status. None: the pass got past the
# loss itself (the queue's append retries a store error, and tells its own entry that landed from
# another writer's: backend/core/seqlog.py `_insert_in_order`).
STOPPED: dict[tuple[str, str], tuple[str | None, int, bool, str] | None] = {
    ("claim", "request"): (None, 0, False, "scheduled"),
    ("claim", "reply"): ("sent", 0, False, "scheduled"),
    ("outbox", "request"): None,
    ("outbox", "reply"): None,
    ("message", "request"): ("sent", 1, False, "scheduled"),
    ("message", "reply"): ("sent", 1, True, "scheduled"),
    ("status", "request"): ("sent", 1, True, "scheduled"),
    ("status", "reply"): ("sent", 1, True, "sent"),
}


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", PASS_WRITES)
async def test_a_due_pass_that_loses_a_write_is_finished_by_the_next_pass_and_sends_once(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    write: str,
    lose: Lose,
) -> None:
    """The schedule's time comes; the pass loses its outcome claim, the reply's queue entry, the
    reply itself or the status write, and gives up on it (1.5 s). Until the next pass the agent
    sees it waiting (or sent, when the status write landed); the next pass finishes it: the reply
    reaches the client once, the schedule reads "sent" and the reply shows in the ticket."""
    desk = await _desk(client, admin_headers, evolution, direct)
    body = _text(f"pass loses its {write} ({lose})")
    schedule_id = (await _schedule(browser, desk, body))["id"]
    message_id = service.message_id_of(schedule_id)
    sprung = store_proxy.stall_next(*_pass_write(desk, schedule_id, write), lose=lose)
    stopped = STOPPED[write, lose]
    assert await _pass(db) == (1 if stopped is None else 0)
    assert sprung.is_set()

    if stopped is not None:
        outcome, queued, stored, status = stopped
        assert await _outcome(direct, desk, schedule_id) == outcome
        assert await direct.outbox.count_documents({"message_id": message_id}) == queued
        assert (await direct.messages.find_one({"_id": message_id}) is not None) == stored
        assert (await direct.scheduled_messages.find_one({"_id": schedule_id}))["status"] == status
        # What the agent sees until the next pass: what the store holds.
        shown = (await _api_schedules(browser, desk, desk.headers))[schedule_id]
        assert shown["status"] == status, shown
        assert await _pass(db) == (0 if status == "sent" else 1)
    assert await _pass(db) == 0  # settled: no pass takes it again
    await _check_sent_once(browser, direct, evolution, desk, schedule_id, body)
    # A pass that queued it and lost the reply left a queue entry; the next queued it again. The
    # provider took it once all the same (checked above): the worker sends a message, not an entry.
    queued = await direct.outbox.count_documents({"message_id": message_id})
    assert queued == (2 if (write, lose) == ("message", "request") else 1)


# --- 3. a cancel or an edit that loses a write ------------------------------------------------------


def _cancel_write(desk: Desk, schedule_id: str, write: str) -> tuple[bytes, ...]:
    if write == "claim":
        return _claim(desk, schedule_id, service.CANCELED)
    return (*_projection(schedule_id, "canceled"), string_element("reason", "canceled"))


def _cancel(browser: httpx.AsyncClient, schedule_id: str, headers: dict[str, str]) -> Awaitable[httpx.Response]:
    return browser.post(f"{API}/scheduled-messages/{schedule_id}/cancel", headers=headers)


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", ["claim", "status"])
async def test_a_cancel_that_loses_a_write_is_finished_by_the_repeat_and_never_sent(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    write: str,
    lose: Lose,
) -> None:
    """The agent cancels a waiting schedule; the cancel's claim or its status write is lost (503);
    the agent clicks Cancelar again: 200, canceled; its time comes and nothing is sent."""
    desk = await _desk(client, admin_headers, evolution, direct)
    body = _text(f"cancel loses its {write} ({lose})")
    schedule_id = (await _schedule(browser, desk, body))["id"]
    first = await _lost_click(
        store_proxy,
        _cancel_write(desk, schedule_id, write),
        lose,
        _cancel(browser, schedule_id, desk.headers),
        f"cancel's {write}",
    )
    assert unanswered(first), (first.status_code, first.text)
    claimed = (write, lose) != ("claim", "request")
    assert await _outcome(direct, desk, schedule_id) == (service.CANCELED if claimed else None)
    projected = (write, lose) == ("status", "reply")
    assert (await direct.scheduled_messages.find_one({"_id": schedule_id}))["status"] == (
        "canceled" if projected else "scheduled"
    )

    again = await _cancel(browser, schedule_id, desk.headers)
    assert again.status_code == 200, again.text
    assert (again.json()["status"], again.json()["reason"]) == ("canceled", "canceled"), again.text
    assert await _pass(db) == 0  # nothing due: it is canceled
    await _check_never_sent(
        browser, direct, evolution, desk, schedule_id, body, status="canceled", reason="canceled", outcome="canceled"
    )


def _edit(browser: httpx.AsyncClient, schedule_id: str, form: dict[str, str], headers: dict[str, str]) -> Any:
    return browser.post(f"{API}/scheduled-messages/{schedule_id}/replace", json=form, headers=headers)


def _edit_write(desk: Desk, old_id: str, new_body: str, write: str) -> tuple[bytes, ...]:
    return {
        "insert": (command_marker("insert", "scheduled_messages"), string_element("body", new_body)),
        "claim": (command_marker("insert", "natural_keys"), string_element("_id", _key_id(desk, old_id))),
        "status": (*_projection(old_id, "canceled"), string_element("reason", "edited")),
    }[write]


EDIT_WRITES = ["insert", "claim", "status"]


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", EDIT_WRITES)
async def test_an_edit_that_loses_a_write_is_finished_by_the_repeat_and_only_the_edited_text_goes(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    write: str,
    lose: Lose,
) -> None:
    """The author edits a waiting schedule (new text, new time); the edited schedule's insert, the
    claim of the old one's outcome for it, or the old one's status write is lost (503); the author
    saves again. The edited one waits in the old one's place, which reads "edited"; their time
    comes: the edited text is sent once, the old text never."""
    desk = await _desk(client, admin_headers, evolution, direct)
    old_body, new_body = _text("texto antigo"), _text(f"texto novo, edit loses its {write} ({lose})")
    old_id = (await _schedule(browser, desk, old_body))["id"]
    form = {"body": new_body, "send_at": _at(AHEAD + timedelta(minutes=30))}
    first = await _lost_click(
        store_proxy,
        _edit_write(desk, old_id, new_body, write),
        lose,
        _edit(browser, old_id, form, desk.headers),
        f"edit's {write}",
    )
    assert unanswered(first), (first.status_code, first.text)
    landed = EDIT_WRITES.index(write) + (1 if lose == "reply" else 0)  # how many of its writes ran
    edits = await direct.scheduled_messages.find({"replaces": old_id}).to_list(None)
    assert len(edits) == (1 if landed >= 1 else 0), edits
    assert (await _outcome(direct, desk, old_id) is not None) == (landed >= 2)

    again = await _edit(browser, old_id, form, desk.headers)
    if (write, lose) == ("status", "reply"):
        # The edit ran to its end: its repeat finds the old one no longer waiting and says so
        # (409, "canceled"); the screen reloads the strip, which shows the edit waiting in its place.
        assert again.status_code == 409 and again.json()["detail"]["status"] == "canceled", again.text
        new_id = edits[0]["_id"]
    else:
        assert again.status_code == 201, again.text
        new_id = again.json()["id"]
        assert (again.json()["replaces"], again.json()["status"], again.json()["body"]) == (
            old_id,
            "scheduled",
            new_body,
        )
        if edits:
            assert new_id == edits[0]["_id"], "the repeat stored a second edit"
    assert await _outcome(direct, desk, old_id) == service.EDITED + new_id
    schedules = {s["_id"]: s for s in await direct.scheduled_messages.find({"ticket_id": desk.ticket_id}).to_list(None)}
    assert set(schedules) == {old_id, new_id}, schedules
    old = schedules[old_id]
    assert (old["status"], old["reason"], old["replaced_by"]) == ("canceled", "edited", new_id), old
    shown = await _api_schedules(browser, desk, desk.headers)
    assert {k: (s["status"], s["reason"]) for k, s in shown.items()} == {
        old_id: ("canceled", "edited"),
        new_id: ("scheduled", None),
    }, shown

    assert await _pass(db) == 1
    await _check_sent_once(browser, direct, evolution, desk, new_id, new_body)
    assert await direct.messages.find_one({"_id": service.message_id_of(old_id)}) is None
    assert await direct.outbox.find_one({"message_id": service.message_id_of(old_id)}) is None
    assert await _received(evolution, desk, old_body) == []
    assert (await _api_schedules(browser, desk, desk.headers))[old_id]["status"] == "canceled"


# A cancel or an edit whose answer was lost and that the person did not repeat (503 "retry": they
# may not): the screens must not go on showing as waiting a schedule the key already decided.


@pytest.mark.parametrize(("write", "lose"), [("claim", "reply"), ("status", "request")])
async def test_a_cancel_whose_answer_was_lost_is_not_shown_waiting_without_a_repeat(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    write: str,
    lose: Lose,
) -> None:
    """The agent clicks Cancelar; the claim lands (the schedule is canceled for good) and then the
    claim's answer, or the status write after it, is lost: 503. The agent reloads the ticket: the
    strip must not show "Agendada" (and offer Cancelar) for a message that will never leave. Its
    time comes: nothing is sent, the schedule reads canceled."""
    desk = await _desk(client, admin_headers, evolution, direct)
    body = _text(f"cancel not repeated, its {write} ({lose}) lost")
    schedule_id = (await _schedule(browser, desk, body))["id"]
    first = await _lost_click(
        store_proxy,
        _cancel_write(desk, schedule_id, write),
        lose,
        _cancel(browser, schedule_id, desk.headers),
        f"cancel's {write}",
    )
    assert unanswered(first), (first.status_code, first.text)
    assert await _outcome(direct, desk, schedule_id) == service.CANCELED  # decided: never sent

    async def shown() -> tuple[str, str] | None:
        found = (await _api_schedules(browser, desk, desk.headers))[schedule_id]
        listed = (await _agendamentos(browser, desk.headers))[schedule_id]
        pair = (found["status"], listed["status"])
        return None if "scheduled" in pair else pair

    after_reload = await last_within(shown, timeout=SHOWN)
    doc = await direct.scheduled_messages.find_one({"_id": schedule_id})

    await _pass(db)  # its time: the pass settles it as the key says (if nothing did before)
    await _check_never_sent(
        browser, direct, evolution, desk, schedule_id, body, status="canceled", reason="canceled", outcome="canceled"
    )
    assert after_reload is not None, (
        f"canceled for good (outcome key {service.CANCELED!r}), yet the ticket's strip and Agendamentos "
        f"showed it 'scheduled' until its time came (stored: status {doc['status']!r})"
    )


@pytest.mark.parametrize("then", ["cancels the old one", "edits the old one again"])
async def test_an_edit_whose_claim_was_lost_leaves_nothing_shown_waiting_that_will_not_go(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    then: str,
) -> None:
    """The author edits a waiting schedule; the edited one is stored, the claim of the old one's
    outcome is lost (503). The author reloads and sees both texts waiting ("Agendada"), then does
    what a person does with what looks like a duplicate: cancels the old one, or edits the old one
    again with a corrected text (200/201). Whatever the strip then shows waiting must be sent at
    its time; what will not be sent must not be shown waiting."""
    desk = await _desk(client, admin_headers, evolution, direct)
    old_body, new_body = _text("texto antigo"), _text("texto novo (edição sem resposta)")
    old_id = (await _schedule(browser, desk, old_body))["id"]
    form = {"body": new_body, "send_at": _at(AHEAD + timedelta(minutes=10))}
    first = await _lost_click(
        store_proxy,
        _edit_write(desk, old_id, new_body, "claim"),
        "request",
        _edit(browser, old_id, form, desk.headers),
        "edit's claim",
    )
    assert unanswered(first), (first.status_code, first.text)
    (edited,) = await direct.scheduled_messages.find({"replaces": old_id}).to_list(None)
    assert edited["status"] == "scheduled", edited
    assert await _outcome(direct, desk, old_id) is None  # the edit's second write never ran

    # The author acts on the old one as the strip shows it (today: both waiting; 409 once a
    # reload finishes the edit, which leaves nothing to act on).
    texts = {old_id: old_body, edited["_id"]: new_body}
    if then == "cancels the old one":
        r = await _cancel(browser, old_id, desk.headers)
        assert r.status_code in (200, 409), r.text
    else:
        third_body = _text("texto corrigido")
        third = {"body": third_body, "send_at": _at(AHEAD + timedelta(minutes=20))}
        r = await _edit(browser, old_id, third, desk.headers)
        assert r.status_code in (201, 409), r.text
        if r.status_code == 201:
            texts[r.json()["id"]] = third_body
    shown = await _api_schedules(browser, desk, desk.headers)
    waiting = {k for k, s in shown.items() if s["status"] == "scheduled"}

    assert await _pass(db) >= 1
    await _none_waiting(direct, desk)
    docs = {d["_id"]: d for d in await direct.scheduled_messages.find({"ticket_id": desk.ticket_id}).to_list(None)}
    sent = {k for k, d in docs.items() if d["status"] == "sent"}
    assert len(sent) <= 1, f"two versions of one schedule sent: {sent}"
    for schedule_id in sent:
        await _check_sent_once(browser, direct, evolution, desk, schedule_id, texts[schedule_id])
    for schedule_id in set(docs) - sent:
        assert await direct.messages.find_one({"_id": service.message_id_of(schedule_id)}) is None
        assert await _received(evolution, desk, texts[schedule_id]) == []
    never = {k: (docs[k]["status"], docs[k].get("reason")) for k in waiting - sent}
    assert not never, (
        f"after the author {then}, the strip showed {sorted(waiting)} waiting; at their time these were "
        f"never sent: {never} (the edit whose claim was lost: {edited['_id']})"
    )


# --- 4. a competitor between two writes of a due pass ---------------------------------------------

POINTS = ["before the claim", "after the claim", "after the send"]


def _hold_pass(holds: Callable[..., Hold], point: str, schedule_id: str) -> Hold:
    """Holds the pass on `schedule_id` at `point` (module docstring)."""
    if point == "before the claim":
        return holds(
            natural_keys,
            "claim",
            lambda *a, **k: a[1] == service.OUTCOME and a[-1] == schedule_id and k.get("target") == service.SENT,
        )
    if point == "after the claim":
        return holds(service, "_send", lambda *a, **k: a[1].id == schedule_id)
    return holds(
        scheduled_repository, "settle_internal", lambda *a, **k: a[1] == schedule_id and a[2].get("status") == "sent"
    )


async def _held_pass(db: Any, held: Hold, point: str) -> "asyncio.Future[int]":
    """Starts a due pass and returns it under way once it is held at `point`."""
    under_way = asyncio.ensure_future(_pass(db))
    await arrived(held.entered, under_way, f"the pass reaching {point}")
    return under_way


COMPETITORS = ["finalize", "transfer", "author deactivated", "cancel"]


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("competitor", COMPETITORS)
async def test_a_competitor_between_two_writes_of_a_pass_leaves_an_outcome_the_screens_explain(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    holds: Callable[..., Hold],
    competitor: str,
    point: str,
) -> None:
    """The schedule's time comes and a pass takes it; held at `point`, a person acts on it or its
    ticket through the real port, to the end: the agent finalizes the ticket, or transfers it to
    a colleague, or the owner deactivates the author (which hands the ticket back to its queue),
    or the agent cancels the schedule. Then the pass goes on.

    A finalize or a cancel that comes before the pass's claim wins: never sent, canceled with its
    reason. One that comes after it finds "sent" claimed (the cancel answers 409 "sent"; the
    finalize's own hook finishes the send, as for a reply that raced it). A transfer or the
    author's deactivation change nothing about it: sent once, signed as its author, in its ticket,
    which whoever holds it now sees."""
    desk = await _desk(client, admin_headers, evolution, direct, own_agent=competitor == "author deactivated")
    body = _text(f"{competitor} {point}")
    schedule_id = (await _schedule(browser, desk, body))["id"]
    held = _hold_pass(holds, point, schedule_id)
    under_way = await _held_pass(db, held, point)

    if competitor == "finalize":
        r = await browser.post(f"{API}/tickets/{desk.ticket_id}/finalize", headers=desk.headers)
        assert r.status_code == 200 and r.json()["status"] == "finalizado", r.text
        if point == "after the claim":
            # Its hook met "sent" claimed and stored the reply itself, before answering.
            stored = await direct.messages.find_one({"_id": service.message_id_of(schedule_id)})
            assert stored is not None and stored["ticket_id"] == desk.ticket_id, stored
    elif competitor == "transfer":
        transfer = {"agent_id": desk.colleague["id"]}
        r = await browser.post(f"{API}/tickets/{desk.ticket_id}/transfer", json=transfer, headers=desk.headers)
        assert r.status_code == 200 and r.json()["agent_id"] == desk.colleague["id"], r.text
    elif competitor == "author deactivated":
        r = await browser.patch(f"{API}/users/{desk.agent['id']}", json={"active": False}, headers=desk.owner)
        assert r.status_code == 200 and r.json()["active"] is False, r.text
    else:
        r = await _cancel(browser, schedule_id, desk.headers)
        won = point == "before the claim"
        assert r.status_code == (200 if won else 409), r.text
        assert (r.json() if won else r.json()["detail"])["status"] == ("canceled" if won else "sent"), r.text
    held.go.set()
    assert await under_way == 1
    assert await _pass(db) == 0  # settled: no pass takes it again

    ticket = await direct.tickets.find_one({"_id": desk.ticket_id})
    if competitor in ("finalize", "cancel") and point == "before the claim":
        reason = "finalized" if competitor == "finalize" else "canceled"
        await _check_never_sent(
            browser, direct, evolution, desk, schedule_id, body, status="canceled", reason=reason, outcome=reason
        )
        return
    viewer, lister = desk.headers, desk.headers
    if competitor == "finalize":
        assert ticket["status"] == "finalizado", ticket
    elif competitor == "transfer":
        assert (ticket["status"], ticket["agent_id"]) == ("atendendo", desk.colleague["id"]), ticket
        viewer = desk.colleague["headers"]  # its holder now, who answers for what it shows
    elif competitor == "author deactivated":
        assert (ticket["status"], ticket["agent_id"]) == ("espera", None), ticket
        viewer, lister = desk.colleague["headers"], desk.owner  # the author can no longer log in
    await _check_sent_once(browser, direct, evolution, desk, schedule_id, body, viewer=viewer, lister=lister)


@pytest.mark.parametrize(
    "point",
    [
        "before the claim",
        "after the claim",
        "after the send",
    ],
)
async def test_a_connection_deactivated_while_a_pass_sends_never_shows_sent_what_never_left(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    holds: Callable[..., Hold],
    point: str,
) -> None:
    """A pass found the ticket's connection active and is held at `point`; the owner deactivates
    the connection (200). Deactivated before the pass stored and queued the reply, nothing can
    send it any more (the worker fails it: "connection missing or inactive"): the schedule must
    then read failed with a reason, as one whose time came with the connection off does, and not
    "sent". Deactivated once the provider took it, it was sent, once."""
    desk = await _desk(client, admin_headers, evolution, direct, own_connection=True)
    body = _text(f"connection deactivated {point}")
    schedule_id = (await _schedule(browser, desk, body))["id"]
    message_id = service.message_id_of(schedule_id)
    held = _hold_pass(holds, point, schedule_id)
    under_way = await _held_pass(db, held, point)

    async def settled_message() -> dict[str, Any] | None:
        found: dict[str, Any] | None = await direct.messages.find_one({"_id": message_id, "status": {"$ne": "pending"}})
        return found

    if point == "after the send":  # stored and queued: the worker hands it over meanwhile
        assert await last_within(settled_message, timeout=SETTLE), await direct.messages.find_one({"_id": message_id})
    r = await browser.patch(f"{API}/whatsapp-connections/{desk.conn['id']}", json={"active": False}, headers=desk.owner)
    assert r.status_code == 200 and r.json()["active"] is False, r.text
    held.go.set()
    assert await under_way == 1
    assert await _pass(db) == 0
    if point == "after the send":
        await _check_sent_once(browser, direct, evolution, desk, schedule_id, body)
        return

    message = await last_within(settled_message, timeout=SETTLE)
    assert message is not None, await direct.messages.find_one({"_id": message_id})
    # Never left, and the thread says so: failed, with its reason.
    assert await _received(evolution, desk, body) == []
    assert message["status"] == "failed" and message["failure_reason"], message
    (shown_message,) = [m for m in await _thread(browser, desk, desk.headers) if m["id"] == message_id]
    assert (shown_message["status"], shown_message["failure_reason"]) == ("failed", message["failure_reason"])
    await _none_waiting(direct, desk)
    doc = await direct.scheduled_messages.find_one({"_id": schedule_id})
    shown = (await _api_schedules(browser, desk, desk.headers))[schedule_id]
    listed = (await _agendamentos(browser, desk.headers))[schedule_id]
    # What tells its author, on any screen, that a schedule's reply did not go: the failure of a
    # message that names its schedule (the "scheduleFailed" notice, frontend alerts.ts).
    notices = await direct.tenant_events.count_documents(
        {
            "type": "message.status",
            "data.message_id": message_id,
            "data.status": "failed",
            "message.scheduled_id": schedule_id,
        }
    )
    # "sent" is the schedule's decided outcome (stored and queued); what both lists show of it is
    # its reply's delivery: failed, with the reason, never "sent" alone.
    shown_pairs = [(v["status"], v["delivery"], v["failure_reason"]) for v in (shown, listed)]
    assert shown_pairs == [("sent", "failed", message["failure_reason"])] * 2 and notices == 1, (
        f"its reply failed ({message['failure_reason']!r}) and never reached the provider, yet the "
        f"ticket's strip and Agendamentos show {shown_pairs} "
        f"(stored: {doc['status']!r}, outcome key {await _outcome(direct, desk, schedule_id)!r}; "
        f"failure notices to its author: {notices})"
    )


@pytest.mark.parametrize("lose", LOSSES)
async def test_a_finalize_that_loses_its_cancel_of_a_waiting_schedule_is_finished_by_the_sweep(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    holds: Callable[..., Hold],
    lose: Lose,
) -> None:
    """The agent finalizes a ticket with a schedule waiting; the finalize is stored, then its hook's
    claim of the schedule's outcome ("finalized") is lost: 503. The ticket reads finalizado; the
    ticket sweep runs the finalize's hooks again (its `finalize-hooks` key is missing): the
    schedule is canceled "finalized", shown so, and its time comes without anything sent. The
    sweep is held until the click is answered: one of its passes re-running the hooks beside the
    finalize's own run could make the claim the trap catches (then the click answers 200)."""
    desk = await _desk(client, admin_headers, evolution, direct)
    body = _text(f"finalize loses its cancel ({lose})")
    schedule_id = (await _schedule(browser, desk, body))["id"]
    paused = holds(tickets_sweep, "sweep_once", lambda *a, **k: True)
    await arrived(paused.entered, None, "the ticket sweep's next pass")
    first = await _lost_click(
        store_proxy,
        _claim(desk, schedule_id, service.FINALIZED),
        lose,
        browser.post(f"{API}/tickets/{desk.ticket_id}/finalize", headers=desk.headers),
        "finalize's cancel of the schedule",
    )
    paused.go.set()
    assert unanswered(first), (first.status_code, first.text)
    r = await browser.get(f"{API}/tickets/{desk.ticket_id}", headers=desk.headers)
    assert r.status_code == 200 and r.json()["status"] == "finalizado", r.text

    async def shown_canceled() -> tuple[str, str | None] | None:
        shown = (await _api_schedules(browser, desk, desk.headers))[schedule_id]
        pair = (shown["status"], shown["reason"])
        return pair if shown["status"] != "scheduled" else None

    assert await last_within(shown_canceled, timeout=SETTLE) == ("canceled", "finalized")
    assert await _pass(db) == 0  # nothing due: it is settled
    await _check_never_sent(
        browser, direct, evolution, desk, schedule_id, body, status="canceled", reason="finalized", outcome="finalized"
    )


# --- 5. two processes -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def peer(
    app: Any, mongo_url: str, db_name: str, evolution: FakeEvolution, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    """A second backend process on the same database, straight to the store (no relay), running
    its own due pass every 0.2 s and its own outbox worker; the app keeps processing the
    provider's webhooks. Started by the first test that asks (the last ones of the module)."""
    options = {
        "SCHEDULED_MESSAGES_POLL_SECONDS": "0.2",
        "WEBHOOK_PROCESSOR_ENABLED": "false",
        "CONNECTION_WATCH_ENABLED": "false",
        "EVOLUTION_BASE_URL": evolution.url,
        "EVOLUTION_API_KEY": evolution.api_key,
        "OUTBOUND_POLL_SECONDS": "0.1",
        "OUTBOUND_LEASE_SECONDS": "10",
    }
    workdir = tmp_path_factory.mktemp("peer")
    loop = asyncio.get_running_loop()
    server = await loop.run_in_executor(None, lambda: start_server(mongo_url, db_name, workdir, **options))
    try:
        yield server
    finally:
        await loop.run_in_executor(None, server.stop)


async def _now_due(direct: Any, schedule_id: str) -> None:
    """The schedule's time comes (moved into the past: scheduling takes at least 30 s ahead), so the
    peer's background pass meets it."""
    await direct.scheduled_messages.update_one(
        {"_id": schedule_id}, {"$set": {"send_at": utcnow() - timedelta(seconds=1)}}
    )


@pytest.mark.parametrize("app_pass", ["loses its reply's insert answer", "is held after its claim"])
async def test_a_pass_in_each_of_two_processes_sends_once(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    holds: Callable[..., Hold],
    peer: Server,
    app_pass: str,
) -> None:
    """The app's pass takes the schedule and either loses the answer of the reply's insert (the
    reply is stored, the pass gives up) or is held between its claim and the send; meanwhile the
    schedule's time comes for the other process, whose own pass takes it and runs to its end. Two
    passes and two outbox workers in two processes: the reply is stored once, taken once by the
    provider, and the schedule reads "sent"; the app's pass, let go, changes nothing."""
    desk = await _desk(client, admin_headers, evolution, direct)
    body = _text(f"two processes, the app's pass {app_pass}")
    schedule_id = (await _schedule(browser, desk, body))["id"]
    message_id = service.message_id_of(schedule_id)

    async def sent_by_peer() -> bool:
        doc = await direct.scheduled_messages.find_one({"_id": schedule_id})
        return bool(doc["status"] == "sent")

    if app_pass == "loses its reply's insert answer":
        sprung = store_proxy.stall_next(*_pass_write(desk, schedule_id, "message"), lose="reply")
        assert await _pass(db) == 0
        assert sprung.is_set() and await direct.messages.find_one({"_id": message_id}) is not None
        await _now_due(direct, schedule_id)
        assert await last_within(sent_by_peer, timeout=SETTLE), "the other process's pass never finished it"
    else:
        held = _hold_pass(holds, "after the claim", schedule_id)
        under_way = await _held_pass(db, held, "after the claim")
        await _now_due(direct, schedule_id)
        assert await last_within(sent_by_peer, timeout=SETTLE), "the other process's pass never finished it"
        held.go.set()
        assert await under_way == 1
    assert await _pass(db) == 0
    await _check_sent_once(browser, direct, evolution, desk, schedule_id, body)
    async with httpx.AsyncClient(base_url=peer.http, timeout=30) as other:  # the strip, served by the other process
        r = await other.get(f"{API}/tickets/{desk.ticket_id}/scheduled-messages", headers=desk.headers)
    assert r.status_code == 200, r.text
    assert [(s["id"], s["status"]) for s in r.json()["items"]] == [(schedule_id, "sent")], r.json()
