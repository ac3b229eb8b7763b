"""An agent's Assumir, Transferir (to an agent, to a department) and Finalizar while the store loses
one of the writes the move makes.

The backend reaches the store through a relay (tests/tcp_relay.py) that stalls the one connection
carrying a chosen write: the command never runs (`lose="request"`) or it runs and its answer never
comes back (`lose="reply"`); with MONGO_SOCKET_TIMEOUT_MS the request then fails after 1.5 s, as
on any store hiccup. The writes of a move, in the order it makes them (tickets.service._transition):
its event (`ticket_events`), the reports' entry for it (`report_entries`), its counts delta
(`ticket_count_deltas`), its projection onto the ticket (`tickets` findAndModify) and its
announcement (`tenant_events`); a finalize then raises the client's slot hint (`users`) and runs
its hooks (backend/gates.py): the refile of racing client messages (its `refiled` mark), the
closing message and the survey question (`messages`, `automation_surveys`), and the hooks' end
mark (`finalize-hooks`).

Whatever is lost, the agent then does what a person does — clicks again — and the ticket sweep runs
in the app (every TICKET_SWEEP_SECONDS). The end state must hold: the ticket reads what its event
log says (one event for the move, never two), lists and `/tickets/counts` agree with the tickets'
logs, the click's retry gets a clear answer (2xx, or a 409 naming the state — never a 5xx for a
move that already happened), the tenant's open screens are told (the move's record, or a resync
when its writer failed after logging it: the repeat, refused, announces nothing), and for Finalizar
the closing message and the survey question reach the client once, and a client message arriving
right after the lost write ends in an open ticket where agents see it, never left in the finalized
one."""

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from backend.audit.service import event_id
from backend.automation.service import CLOSING, SURVEY, automatic_id
from backend.tickets import reads
from backend.webhooks.service import message_id_for
from tests.automation.helpers import company, open_ticket, write
from tests.factories import API, Tenant, unique_phone
from tests.fakes.harness import FakeEvolution, app, backend_port, evolution, last_within, settings, wait_for
from tests.holds import Hold, holds
from tests.tcp_relay import Lose, StoreProxy, command_marker, string_element
from tests.webhooks.helpers import settled

__all__ = ["app", "backend_port", "evolution", "holds", "settings"]

STALL = 15.0  # how long a trap may take to spring once its click is under way
SETTLE = 30.0  # how long the end state may take: a stall, a sweep period, the outbox worker
CLOSING_TEXT = "Obrigado, {{cliente}}! O protocolo {{protocolo}} foi encerrado."
QUESTION_TEXT = "De 1 a 5, que nota você dá ao atendimento {{protocolo}}?"
CONFIG = {
    "closing_message": CLOSING_TEXT,
    "csat_enabled": True,
    "csat_window_hours": 2,
    "csat_message": QUESTION_TEXT,
    "signature_enabled": False,
}
# The writes every move makes, in order (module docstring); a finalize's own after them.
MOVE_WRITES = ["event", "report", "count", "projection", "feed"]
FINALIZE_WRITES = [*MOVE_WRITES, "slot_hint", "refile_mark", "closing", "survey", "survey_record", "hooks_mark"]
LOSSES: list[Lose] = ["request", "reply"]


@pytest.fixture(scope="module")
def settings_overrides(store_relay: StoreProxy) -> dict[str, Any]:
    return {"MONGO_URL": store_relay.url, "MONGO_SOCKET_TIMEOUT_MS": 1500, "TICKET_SWEEP_SECONDS": 0.5}


@dataclass
class Scene:
    tenant: Tenant
    conn: dict[str, Any]
    phone: str
    ticket_id: str
    client_id: str
    holder: dict[str, Any]  # the agent who clicks (agents[0], of the ticket's department)
    other: dict[str, Any]  # another agent of the tenant (agents[1], of the second department)


@dataclass(frozen=True)
class Move:
    """A click: its path and body, the event it logs and where it leaves the ticket."""

    path: str
    body: dict[str, Any] | None
    event: str
    status: str
    agent_id: str | None
    department_id: str


def _move(scene: Scene, transition: str) -> Move:
    tid, dept0, dept1 = scene.ticket_id, scene.tenant.departments[0]["id"], scene.tenant.departments[1]["id"]
    base = f"{API}/tickets/{tid}"
    if transition == "assume":
        return Move(f"{base}/assume", None, "assumed", "atendendo", scene.holder["id"], dept0)
    if transition == "transfer_to_agent":
        body = {"agent_id": scene.other["id"]}
        return Move(f"{base}/transfer", body, "transferred", "atendendo", scene.other["id"], dept0)
    if transition == "transfer_to_department":
        return Move(f"{base}/transfer", {"department_id": dept1}, "transferred", "espera", None, dept1)
    assert transition == "finalize", transition
    return Move(f"{base}/finalize", None, "finalized", "finalizado", scene.holder["id"], dept0)


def int_element(key: str, value: int) -> bytes:
    """A BSON int32 element on the wire, e.g. `version: 3` in a command's document."""
    return b"\x10" + key.encode() + b"\x00" + value.to_bytes(4, "little", signed=True)


def _markers(write_: str, scene: Scene, move: Move, version: int) -> tuple[bytes, ...]:
    """The bytes only the chosen write of this move carries."""
    tid, eid = scene.ticket_id, event_id(scene.ticket_id, version)
    markers: dict[str, tuple[bytes, ...]] = {
        "event": (command_marker("insert", "ticket_events"), string_element("_id", eid)),
        "report": (command_marker("insert", "report_entries"), string_element("key", f"ev:{eid}")),
        "count": (
            command_marker("insert", "ticket_count_deltas"),
            string_element("ticket_id", tid),
            int_element("version", version),
        ),
        # apply_state's $set carries the new version; an activity write carries none.
        "projection": (
            command_marker("findAndModify", "tickets"),
            string_element("_id", tid),
            int_element("version", version),
        ),
        "feed": (
            command_marker("insert", "tenant_events"),
            string_element("type", f"ticket.{move.event}"),
            string_element("id", tid),
        ),
        "slot_hint": (command_marker("update", "users"), string_element("_id", scene.client_id), b"\x03$max\x00"),
        "refile_mark": (command_marker("insert", "natural_keys"), string_element("_id", f"refiled:{tid}")),
        "closing": (command_marker("insert", "messages"), string_element("_id", automatic_id(tid, CLOSING))),
        "survey": (command_marker("insert", "messages"), string_element("_id", automatic_id(tid, SURVEY))),
        "survey_record": (command_marker("insert", "automation_surveys"), string_element("ticket_id", tid)),
        "hooks_mark": (command_marker("insert", "natural_keys"), string_element("_id", f"finalize-hooks:{tid}")),
    }
    return markers[write_]


async def _scene(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any, *, held: bool
) -> Scene:
    """A company with two departments and an agent in each, a client who wrote in on WhatsApp (its
    ticket waits in the first department), assumed by the first agent when `held`."""
    tenant, conn = await company(client, admin_headers, evolution, config=CONFIG)
    phone = unique_phone()
    await write(evolution, db, conn, phone, "preciso de ajuda com o boleto")
    ticket = await open_ticket(db, tenant, phone)
    scene = Scene(tenant, conn, phone, ticket["_id"], ticket["client_id"], tenant.agents[0], tenant.agents[1])
    if held:
        r = await client.post(f"{API}/tickets/{scene.ticket_id}/assume", headers=scene.holder["headers"])
        assert r.status_code == 200, r.text
    return scene


async def _events(client: httpx.AsyncClient, scene: Scene, ticket_id: str | None = None) -> list[dict[str, Any]]:
    r = await client.get(
        f"{API}/tickets/{ticket_id or scene.ticket_id}/events", params={"limit": 200}, headers=scene.tenant.headers
    )
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def _folded(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Status, holder and department as the event log says (DOMAIN.md: each event's from/to, its
    actor, and where a transfer went)."""
    status, agent, dept = None, None, None
    for e in events:
        data = e["data"]
        if e["type"] == "created":
            opened = data.get("ticket", {})
            agent, dept = opened.get("agent_id"), opened.get("department_id")
        elif e["type"] == "assumed":
            agent = e["actor_id"]
        elif e["type"] == "transferred":
            if data.get("to_agent_id"):
                agent = data["to_agent_id"]
            else:
                agent, dept = None, data.get("to_department_id", dept)
        elif e["type"] == "routed":
            dept = data.get("to_department_id", dept)
        status = e["to_status"]
    return {"status": status, "agent_id": agent, "department_id": dept}


async def _click_with_a_lost_write(
    browser: httpx.AsyncClient, store_proxy: StoreProxy, scene: Scene, move: Move, write_: str, lose: Lose
) -> tuple[int, asyncio.Task[httpx.Response]]:
    """Arms the trap on the move's chosen write and clicks; returns the version the move's event
    takes and the click under way, once the trap sprang (the write was swallowed, or ran with its
    answer swallowed)."""
    version = len(await _events(browser, scene)) + 1  # versions are 1..n without holes
    sprung = store_proxy.stall_next(*_markers(write_, scene, move, version), lose=lose)
    click = asyncio.create_task(browser.post(move.path, json=move.body, headers=scene.holder["headers"]))
    waiter = asyncio.create_task(sprung.wait())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait({click, waiter}, timeout=STALL, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if not sprung.is_set():
        answer = (await click).text if click.done() else "still under way"
        raise AssertionError(f"the trap on the {write_!r} write never sprang (the click answered {answer})")
    return version, click


async def _screen(backend_port: int, scene: Scene) -> ClientConnection:
    """The owner's open screen (it receives every record of the tenant), greeted."""
    token = scene.tenant.headers["Authorization"].split()[1]
    socket = await connect(f"ws://127.0.0.1:{backend_port}{API}/ws?token={token}", open_timeout=10, close_timeout=2)
    hello = json.loads(await asyncio.wait_for(socket.recv(), timeout=STALL))
    assert hello["type"] == "hello", hello
    return socket


async def _check_told(socket: ClientConnection, scene: Scene, move: Move, version: int, *, redone: bool) -> None:
    """The open screen got the move's record (its ticket at the move's version or later), or was
    told to refetch: a screen left showing the ticket where it was would offer a queued ticket
    that is taken, or an open one that is closed, until someone reloads. `redone`: the first
    click's move was never stored and its repeat made it, so the repeat's record is what tells.
    Otherwise which of the two comes depends on who rolls the ticket forward, and when: the
    failed writer's resync, or the record of a roller that found the move older than its
    writer's time (each path has its own deterministic test in test_projection_settle.py)."""
    frames: list[dict[str, Any]] = []

    def told() -> bool:
        for frame in frames:
            ticket = frame.get("ticket") or {}
            moved = frame.get("event") == f"ticket.{move.event}" and ticket.get("id") == scene.ticket_id
            if (frame["type"] == "resync" and not redone) or (moved and int(ticket.get("version", 0)) >= version):
                return True
        return False

    deadline = asyncio.get_running_loop().time() + SETTLE
    with contextlib.suppress(TimeoutError):
        while not told():
            left = deadline - asyncio.get_running_loop().time()
            frames.append(json.loads(await asyncio.wait_for(socket.recv(), timeout=max(0.0, left))))
    await socket.close()
    seen = [(f["type"], f.get("event"), (f.get("ticket") or {}).get("version")) for f in frames if f["type"] != "ping"]
    assert told(), f"the {move.event} (v{version}) logged, and the open screen never told of it: {seen}"


async def _check_swept(direct: Any, scene: Scene, version: int) -> None:
    """With nobody reading the ticket (no API read settles it), the sweep brings its stored
    document to the event the failed click logged."""

    async def stored_version() -> int:
        doc = await direct.tickets.find_one({"_id": scene.ticket_id}, {"version": 1})
        return int(doc["version"]) if doc is not None else 0

    async def caught_up() -> bool:
        return await stored_version() >= version

    assert await last_within(caught_up, timeout=SETTLE), (
        f"the stored ticket stays at version {await stored_version()}, its log is at {version}"
    )


def _first_answer_ok(first: httpx.Response) -> None:
    # The store did not answer: what the request wrote may or may not be stored; the same click may
    # be tried again. 503 says so (app.py `_store_silent`); a 500 says nothing.
    assert first.status_code in (200, 503), (first.status_code, first.text)


def _retry_answer_ok(retry: httpx.Response, move: Move, already: bool) -> None:
    """The click again: done now (2xx) when the first one's move was not stored, else 2xx or a
    409 naming the state the ticket is in — never a 5xx, a 404 or a 409 that does not say."""
    if not already:
        assert retry.status_code == 200, (retry.status_code, retry.text)
        return
    assert retry.status_code in (200, 409), (
        f"the retry of a {move.event} that already happened answered {retry.status_code}: {retry.text}"
    )
    if retry.status_code == 409:
        detail = retry.json()["detail"]
        assert isinstance(detail, dict) and detail.get("status") == move.status, (
            f"the retry's 409 does not name the ticket's state ({move.status}): {retry.text}"
        )


async def _tenant_ticket_ids(direct: Any, tenant: Tenant) -> list[str]:
    """Every ticket of the tenant as the log knows them (the log is the truth; a document may lag)."""
    found = await direct.ticket_events.find({"reseller_id": tenant.id, "version": 1}, {"ticket_id": 1}).to_list(None)
    return sorted({e["ticket_id"] for e in found})


async def _check_ticket_reads_its_log(client: httpx.AsyncClient, scene: Scene, ticket_id: str) -> dict[str, Any]:
    """GET /tickets/{id} says what its event log says; returns the ticket as read."""
    events = await _events(client, scene, ticket_id)
    r = await client.get(f"{API}/tickets/{ticket_id}", headers=scene.tenant.headers)
    assert r.status_code == 200, r.text
    ticket: dict[str, Any] = r.json()
    read = {k: ticket[k] for k in ("status", "agent_id", "department_id")}
    assert read == _folded(events), f"ticket {ticket_id} reads {read}, its log says {_folded(events)}: {events}"
    return ticket


async def _listed_status(client: httpx.AsyncClient, scene: Scene) -> dict[str, str]:
    """Where each of the tenant's tickets is listed (the lists read the stored projection)."""
    where: dict[str, str] = {}
    for status in ("espera", "atendendo", "finalizado"):
        r = await client.get(f"{API}/tickets", params={"status": status, "limit": 200}, headers=scene.tenant.headers)
        assert r.status_code == 200, r.text
        where.update({t["id"]: status for t in r.json()["items"]})
    return where


async def _check_lists_and_counts(client: httpx.AsyncClient, direct: Any, scene: Scene) -> None:
    """The lists and /tickets/counts agree with the tenant's tickets' logs, within the sweep's bound
    (nobody needs to open a ticket for them to converge)."""
    truth: dict[str, str] = {}
    for ticket_id in await _tenant_ticket_ids(direct, scene.tenant):
        truth[ticket_id] = _folded(await _events(client, scene, ticket_id))["status"]
    expected = {s: 0 for s in ("espera", "atendendo", "finalizado")} | dict(Counter(truth.values()))

    async def listed() -> dict[str, str] | None:
        where = await _listed_status(client, scene)
        return where if where == truth else None

    where = await last_within(listed, timeout=SETTLE) or await _listed_status(client, scene)
    assert where == truth, f"the lists show {where}, the tickets' logs say {truth}"

    async def counted() -> dict[str, int] | None:
        r = await client.get(f"{API}/tickets/counts", headers=scene.tenant.headers)
        assert r.status_code == 200, r.text
        body: dict[str, int] = r.json()
        return body if body == expected else None

    counts = await last_within(counted, timeout=SETTLE)
    if not counts:
        counts = (await client.get(f"{API}/tickets/counts", headers=scene.tenant.headers)).json()
    assert counts == expected, f"/tickets/counts says {counts}, the tickets in each state are {expected}"


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write_", MOVE_WRITES)
@pytest.mark.parametrize("transition", ["assume", "transfer_to_agent", "transfer_to_department"])
async def test_a_lost_write_of_an_assume_or_transfer_and_the_agent_clicks_again(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    backend_port: int,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    transition: str,
    write_: str,
    lose: Lose,
) -> None:
    scene = await _scene(client, admin_headers, evolution, db, held=transition != "assume")
    move = _move(scene, transition)
    before = len(await _events(client, scene))
    screen = await _screen(backend_port, scene)

    version, click = await _click_with_a_lost_write(browser, store_proxy, scene, move, write_, lose)
    first = await click
    _first_answer_ok(first)
    already = not (write_ == "event" and lose == "request")  # only a swallowed event insert undoes the move
    if already:
        await _check_swept(direct, scene, version)
    retry = await browser.post(move.path, json=move.body, headers=scene.holder["headers"])
    await _check_told(screen, scene, move, version, redone=not already)

    events = await _events(client, scene)
    moves = events[before:]
    assert [(e["type"], e["to_status"]) for e in moves] == [(move.event, move.status)], (
        f"the click and its retry logged {moves}: one {move.event} event expected"
    )
    ticket = await _check_ticket_reads_its_log(client, scene, scene.ticket_id)
    assert (ticket["status"], ticket["agent_id"], ticket["department_id"]) == (
        move.status,
        move.agent_id,
        move.department_id,
    )
    await _check_lists_and_counts(client, direct, scene)
    _retry_answer_ok(retry, move, already)  # last: a wrong answer must not hide the end state


async def _sent_to(evolution: FakeEvolution, phone: str) -> list[str]:
    return [s["text"] for s in await evolution.sent() if s["number"] == phone]


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write_", FINALIZE_WRITES)
async def test_a_lost_write_of_a_finalize_with_a_client_message_right_after(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    backend_port: int,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    write_: str,
    lose: Lose,
) -> None:
    scene = await _scene(client, admin_headers, evolution, db, held=True)
    move = _move(scene, "finalize")
    before = len(await _events(client, scene))
    screen = await _screen(backend_port, scene)

    version, click = await _click_with_a_lost_write(browser, store_proxy, scene, move, write_, lose)
    # The client writes again right after the lost write, while the click still waits on the store.
    text = f"esqueci de perguntar uma coisa ({write_}/{lose})"
    sent = await evolution.inbound(scene.conn["instance_name"], scene.phone, text, push_name="Maria")
    message_id = message_id_for(scene.conn["id"], sent["key_id"])
    raw = await settled(db, sent)  # filed (and re-checked) before the agent can click again
    assert raw["status"] == "processed", raw
    first = await click
    _first_answer_ok(first)
    finalized_first = not (write_ == "event" and lose == "request")
    retry = await browser.post(move.path, json=move.body, headers=scene.holder["headers"])
    await _check_told(screen, scene, move, version, redone=not finalized_first)

    events = await _events(client, scene)
    moves = events[before:]
    assert [(e["type"], e["to_status"]) for e in moves] == [("finalized", "finalizado")], (
        f"the click and its retry logged {moves}: one finalized event expected"
    )
    ticket = await _check_ticket_reads_its_log(client, scene, scene.ticket_id)
    assert ticket["status"] == "finalizado"

    # The client's message: filed once, in an open ticket the agents see — or, when the finalize's
    # event was never stored, in this ticket while it was still open (then finalized by the retry).
    async def filed() -> dict[str, Any] | None:
        found: dict[str, Any] | None = await direct.messages.find_one({"_id": message_id})
        return found

    message = await wait_for(filed, timeout=SETTLE)
    assert await direct.messages.count_documents({"reseller_id": scene.tenant.id, "body": text}) == 1

    async def settled_where() -> dict[str, Any] | None:
        found: dict[str, Any] | None = await direct.messages.find_one({"_id": message_id})
        return found if found is not None and found["ticket_id"] != scene.ticket_id else None

    if finalized_first:
        message = await last_within(settled_where, timeout=SETTLE) or message
        assert message["ticket_id"] != scene.ticket_id, (
            f"the client's message that came right after the finalize was left in the finalized ticket: {message}"
        )
        home = await _check_ticket_reads_its_log(client, scene, message["ticket_id"])
        assert home["status"] in ("espera", "atendendo"), home
    else:
        assert message["ticket_id"] == scene.ticket_id, message
        home = ticket
        assert message["created_at"] < (await direct.tickets.find_one({"_id": scene.ticket_id}))["finalized_at"]
    r = await client.get(f"{API}/tickets/{home['id']}/messages", headers=scene.tenant.headers)
    assert r.status_code == 200, r.text
    assert message_id in [m["id"] for m in r.json()["items"]], f"the client's message is not shown in {home['id']}"

    # The closing message and the survey question: stored once each under the finalized ticket and
    # taken once each by the provider, the hooks' run then marked done.
    closing = f"Obrigado, Maria! O protocolo {ticket['number']} foi encerrado."
    question = f"De 1 a 5, que nota você dá ao atendimento {ticket['number']}?"
    ids = [automatic_id(scene.ticket_id, CLOSING), automatic_id(scene.ticket_id, SURVEY)]

    async def both_sent() -> list[dict[str, Any]] | None:
        found = await direct.messages.find({"_id": {"$in": ids}}).to_list(None)
        done = len(found) == 2 and all(m["status"] in ("sent", "delivered", "read") for m in found)
        texts = await _sent_to(evolution, scene.phone)
        return found if done and closing in texts and question in texts else None

    automatic = await last_within(both_sent, timeout=SETTLE)
    assert automatic, (
        f"closing message and survey not both sent within {SETTLE}s: stored "
        f"{await direct.messages.find({'_id': {'$in': ids}}).to_list(None)}, "
        f"provider took {await _sent_to(evolution, scene.phone)}"
    )
    assert {m["ticket_id"] for m in automatic} == {scene.ticket_id}, automatic

    async def hooks_done() -> bool:
        return await direct.natural_keys.find_one({"_id": f"finalize-hooks:{scene.ticket_id}"}) is not None

    assert await last_within(hooks_done, timeout=SETTLE), "the finalize's hooks were never marked done"
    taken = Counter(await _sent_to(evolution, scene.phone))
    assert (taken[closing], taken[question]) == (1, 1), f"the provider took {dict(taken)}"
    await _check_lists_and_counts(client, direct, scene)
    _retry_answer_ok(retry, move, finalized_first)


# --- read receipts when a ticket changes hands ------------------------------------------------------
#
# An assume, or a transfer to a person, acknowledges to the client's phone (blue ticks) what the new
# holder read of the thread before it held the ticket (tickets/reads.acknowledge_taken, a background
# task after the answer): it reads the ticket, checks the holder, reads the holder's read marker, then
# sends. A receipt tells the client its messages were read by the person answering; it must never
# cover a message nobody holding the ticket read, and no receipt work may touch the move itself.


async def _receipts(evolution: FakeEvolution, scene: Scene) -> list[str]:
    """The client message keys the provider was asked to show read (markMessageAsRead), in order."""
    asked: list[dict[str, Any]] = await evolution.control("GET", f"reads/{scene.conn['instance_name']}")
    return [r["id"] for r in asked]


async def _inbound_keys(direct: Any, scene: Scene) -> list[str]:
    """The provider's keys of the client's messages in the ticket, oldest first."""
    found = direct.messages.find({"ticket_id": scene.ticket_id, "direction": "in"}).sort("created_at", 1)
    return [m["provider_message_id"] for m in await found.to_list(None)]


async def _unread_for(client: httpx.AsyncClient, headers: dict[str, str], scene: Scene) -> int:
    r = await client.get(f"{API}/tickets/{scene.ticket_id}", headers=headers)
    assert r.status_code == 200, r.text
    return int(r.json()["unread_count"])


def _finished(monkeypatch: pytest.MonkeyPatch, name: str) -> list[Any]:
    """Notes each call of reads.`name` once it returned (before any hold of it is set up): the
    background work's end, which no answer shows."""
    done: list[Any] = []
    real = getattr(reads, name)

    async def noting(*args: Any, **kwargs: Any) -> None:
        try:
            await real(*args, **kwargs)
        finally:
            done.append(kwargs.get("holder_id") or args[2].agent_id)

    monkeypatch.setattr(reads, name, noting)
    return done


async def _move_to(browser: httpx.AsyncClient, scene: Scene, agent: dict[str, Any]) -> None:
    """The owner transfers the ticket to `agent` (over the real port: an in-process client's answer
    would wait for the background work that follows it)."""
    body = {"agent_id": agent["id"]}
    r = await browser.post(f"{API}/tickets/{scene.ticket_id}/transfer", json=body, headers=scene.tenant.headers)
    assert r.status_code == 200 and r.json()["agent_id"] == agent["id"], r.text


async def test_a_transfer_landing_before_the_assumes_acknowledgement_leaves_the_receipts_to_the_new_holder(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    holds: Callable[..., Hold],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first agent opens the waiting ticket (reading the client's two messages) and assumes it;
    its acknowledgement is held before it starts. The owner transfers the ticket to the other
    agent, who never opened it; then the first acknowledgement runs. It finds the ticket with
    someone else and tells the client nothing: the person answering now has read nothing, and
    blue ticks would say otherwise. The new holder's own acknowledgement has nothing to tell
    either (it read nothing); its unread count still shows both messages; once it opens the
    thread, the client's phone shows them read. The ticket reads its log throughout."""
    scene = await _scene(client, admin_headers, evolution, db, held=False)
    await write(evolution, db, scene.conn, scene.phone, "o boleto venceu ontem")
    keys = await _inbound_keys(direct, scene)
    assert len(keys) == 2, keys
    first, second = scene.holder, scene.other
    r = await browser.post(f"{API}/tickets/{scene.ticket_id}/read", headers=first["headers"])
    assert (r.status_code, r.json()["unread_count"]) == (200, 0), r.text  # opened from the queue
    done = _finished(monkeypatch, "acknowledge_taken")
    held = holds(reads, "acknowledge_taken", lambda *a, **k: k.get("holder_id") == first["id"])
    r = await browser.post(f"{API}/tickets/{scene.ticket_id}/assume", headers=first["headers"])
    assert r.status_code == 200, r.text
    await asyncio.wait_for(held.entered.wait(), STALL)

    await _move_to(browser, scene, second)
    held.go.set()
    await wait_for(lambda: _both_done(done, first["id"], second["id"]), timeout=SETTLE)
    assert await _receipts(evolution, scene) == [], "the first agent's reads were told after it no longer held it"
    ticket = await _check_ticket_reads_its_log(client, scene, scene.ticket_id)
    assert (ticket["status"], ticket["agent_id"]) == ("atendendo", second["id"]), ticket
    assert await _unread_for(client, second["headers"], scene) == 2, "messages marked read for one who never saw them"

    r = await browser.post(f"{API}/tickets/{scene.ticket_id}/read", headers=second["headers"])
    assert (r.status_code, r.json()["unread_count"]) == (200, 0), r.text

    async def told() -> list[str] | None:
        found = await _receipts(evolution, scene)
        return found if len(found) >= 2 else None

    assert await last_within(told, timeout=SETTLE) == keys
    await _check_lists_and_counts(client, direct, scene)


async def _both_done(done: list[Any], *holder_ids: str) -> bool:
    return set(holder_ids) <= set(done)


async def test_an_acknowledgement_overtaken_by_a_transfer_tells_only_what_its_holder_read(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    holds: Callable[..., Hold],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first agent opens the waiting ticket (two client messages), a third message arrives, and
    the agent assumes. Its acknowledgement checks that it holds the ticket, counts what it read (the
    first two) and is held before it sends; the owner transfers the ticket to the other agent. The
    receipts then sent cover the two messages the first agent read while it took the ticket — true
    of the person who was answering — and never the third, which nobody holding the ticket has
    seen: it stays unacknowledged, and unread for the new holder, until the new holder reads it.
    The ticket is the new holder's, as its log says, whatever the receipt work did."""
    scene = await _scene(client, admin_headers, evolution, db, held=False)
    await write(evolution, db, scene.conn, scene.phone, "o boleto venceu ontem")
    first, second = scene.holder, scene.other
    r = await browser.post(f"{API}/tickets/{scene.ticket_id}/read", headers=first["headers"])
    assert (r.status_code, r.json()["unread_count"]) == (200, 0), r.text
    await write(evolution, db, scene.conn, scene.phone, "e agora, alguém me ajuda?")  # after its look
    keys = await _inbound_keys(direct, scene)
    assert len(keys) == 3, keys
    done = _finished(monkeypatch, "send_receipts")
    held = holds(reads, "send_receipts", lambda *a, **k: a[2].agent_id == first["id"])
    r = await browser.post(f"{API}/tickets/{scene.ticket_id}/assume", headers=first["headers"])
    assert r.status_code == 200, r.text
    await asyncio.wait_for(held.entered.wait(), STALL)

    await _move_to(browser, scene, second)
    held.go.set()
    await wait_for(lambda: _both_done(done, first["id"]), timeout=SETTLE)
    await asyncio.sleep(0.5)  # the new holder's acknowledgement, which has nothing to tell
    assert await _receipts(evolution, scene) == keys[:2]
    ticket = await _check_ticket_reads_its_log(client, scene, scene.ticket_id)
    assert (ticket["status"], ticket["agent_id"]) == ("atendendo", second["id"]), ticket
    assert await _unread_for(client, second["headers"], scene) == 3, "messages marked read for one who never saw them"

    r = await browser.post(f"{API}/tickets/{scene.ticket_id}/read", headers=second["headers"])
    assert (r.status_code, r.json()["unread_count"]) == (200, 0), r.text

    async def third_told() -> list[str] | None:
        found = await _receipts(evolution, scene)
        return found if keys[2] in found else None

    told = await last_within(third_told, timeout=SETTLE)
    assert told and set(told) == set(keys), told
    await _check_lists_and_counts(client, direct, scene)
