"""Unread counts while the store loses one of their writes, and with a competitor let in between two
of their writes: what the store holds and what the API answers (the realtime side of the same
faults, the frames and the badges the screens keep, is tests/realtime/test_store_faults.py).

The backend reaches the store through a relay (tests/tcp_relay.py) that stalls the one connection
carrying a chosen write: the command never runs (`lose="request"`) or it runs and its answer never
comes back (`lose="reply"`); with MONGO_SOCKET_TIMEOUT_MS the caller gives up after 1.5 s. A webhook
delivery that failed so is retried by the processor (WEBHOOK_BACKOFF_BASE_SECONDS 0.1 here); a
person's click answers 503 and the screen asks again.

The writes of unread (backend/unread): a client message's number, an `inbound_seq` insert
"<ticket>:<n>" (unread.record_inbound, from the message path once the message is settled in its
ticket: messages.service); a read (POST /tickets/{id}/read), a `read_markers` insert
"<user>:<ticket>:<k>" holding `seq`, the count it read through (unread.mark_read), then the hints.

What must hold, whatever was lost and whoever came in between (`_check`): a ticket's client
messages are numbered 1..N without a hole, each once, and every client message filed under the
ticket has its number; a person's marker chain only moves forward; a person's unread count is N
minus where that chain ends, and the API shows exactly that on GET /tickets/{id} and on the ticket's
row in that person's list. And what the test expects: the client messages after the person's last
read — never 0 while one waits unread (a message nobody will be told of is lost to them), never
one counted twice.

Competitors are let in deterministically: a write the relay stalls hangs its caller for the
timeout, and the test acts meanwhile; or a backend function is held in-process (`holds`) at the
chosen moment and let go once the competitor is done. The last test plays processes: other backend
processes on the same database (tests/persistence/procs.py), one killed (SIGKILL) and restarted."""

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from backend.audit import service as audit_service
from backend.core import natural_keys
from backend.core.config import Settings
from backend.core.runtime import runtime_of
from backend.messages import repository as messages_repository
from backend.messages.service import message_id_for
from backend.tickets import service as tickets_service
from backend.tickets import sweep as tickets_sweep
from backend.tickets.states import Action
from backend.unread import repository as unread_repository
from backend.unread import service as unread_service
from backend.unread.repository import marker_prefix
from tests.factories import API, Tenant, make_tenant, unique_phone
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
from tests.persistence.procs import Backend
from tests.tcp_relay import Lose, StoreProxy, command_marker, relayed, string_element, unanswered
from tests.webhooks.evolution_shapes import key_id
from tests.webhooks.helpers import settled

__all__ = ["app", "backend_port", "evolution", "holds", "settings"]

WAIT = 30.0  # a bound only: a trap's springing, a held call's arrival, a delivery's processing
SETTLE = 5.0  # how long a repair may take once its mechanism ran (five ticket-sweep periods)
LOSSES: list[Lose] = ["request", "reply"]


@pytest.fixture(scope="module")
def settings_overrides(store_relay: StoreProxy) -> dict[str, Any]:
    # The ticket sweep every second: it re-runs a finalize's hooks that did not run to their end.
    return {**relayed(store_relay), "WEBHOOK_BACKOFF_BASE_SECONDS": 0.1, "TICKET_SWEEP_SECONDS": 1.0}


# --- held calls ---------------------------------------------------------------------------------


def _told(answer: Any) -> str:
    return f"{answer.status_code} {answer.text}" if isinstance(answer, httpx.Response) else repr(answer)


async def _lost(
    proxy: StoreProxy, markers: tuple[bytes, ...], lose: Lose, request: Awaitable[httpx.Response], what: str
) -> "asyncio.Future[httpx.Response]":
    """Arms the trap on `markers` and sends `request`; returns it under way once the trap sprang."""
    sprung = proxy.stall_next(*markers, lose=lose)
    click = asyncio.ensure_future(request)
    await arrived(sprung, click, f"the trap on {what}")
    return click


# --- a conversation -----------------------------------------------------------------------------


@dataclass
class Desk:
    """A company with one department, two agents in it — `reader`, who reads the ticket, and
    `peer`, who never does — and its owner; a WhatsApp connection; one client's phone (the test's
    own), whose open ticket is `ticket_id` once it wrote."""

    tenant: Tenant
    conn: dict[str, Any]
    phone: str
    ticket_id: str = ""

    @property
    def reader(self) -> dict[str, Any]:
        return self.tenant.agents[0]

    @property
    def peer(self) -> dict[str, Any]:
        return self.tenant.agents[1]

    def people(self) -> dict[str, tuple[str, dict[str, str]]]:
        """Who looks at the ticket: name -> (user id, headers)."""
        return {
            "reader": (self.reader["id"], self.reader["headers"]),
            "peer": (self.peer["id"], self.peer["headers"]),
            "owner": (self.tenant.owner_id, self.tenant.headers),
        }

    def next_message(self) -> tuple[str, str]:
        """(provider key, IAZE message id) of the client's next WhatsApp message."""
        key = key_id()
        return key, message_id_for(self.conn["id"], key)


@dataclass
class Company:
    tenant: Tenant
    conn: dict[str, Any]


@pytest.fixture(scope="module")
async def company(client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution) -> Company:
    """The module's company (each test has a client of its own, so a ticket of its own)."""
    tenant = await make_tenant(client, admin_headers, agents=2)
    return Company(tenant, await make_connection(client, tenant, evolution))


async def _desk(company: Company) -> Desk:
    return Desk(company.tenant, company.conn, unique_phone())


_direct: Any = None  # the store past the relay, for helpers called without it (set by the autouse fixture)


@pytest.fixture(autouse=True)
def _the_store(direct: Any) -> None:
    global _direct
    _direct = direct


async def _post(evolution: FakeEvolution, desk: Desk, text: str, key: str | None = None) -> tuple[str, dict[str, Any]]:
    """The client writes on WhatsApp; the fake posts the webhook, acknowledged once stored.
    Returns (message id, the acknowledgement) — processed later by the app's processor."""
    key = key or key_id()
    body = f"{text} {uuid.uuid4().hex[:6]}"
    result = await evolution.inbound(desk.conn["instance_name"], desk.phone, body, key_id=key, push_name="Maria")
    assert result.get("status_code") == 200, result
    return message_id_for(desk.conn["id"], key), result


async def _processed(ack: dict[str, Any]) -> dict[str, Any]:
    """The delivery once processed (after any retry the processor made)."""
    raw = await settled(_direct, ack, within=WAIT)
    assert raw["status"] == "processed", raw
    return raw


async def _says(evolution: FakeEvolution, desk: Desk, text: str) -> str:
    """The client writes and its delivery is processed; the message lands in the desk's ticket
    (the first one opens it)."""
    message_id, ack = await _post(evolution, desk, text)
    await _processed(ack)
    message = await _direct.messages.find_one({"_id": message_id})
    assert message is not None, f"{text!r} processed, not stored"
    if not desk.ticket_id:
        desk.ticket_id = str(message["ticket_id"])
    assert message["ticket_id"] == desk.ticket_id, (message["ticket_id"], desk.ticket_id)
    return message_id


async def _held_and_read(company: Company, browser: httpx.AsyncClient, evolution: FakeEvolution) -> tuple[Desk, str]:
    """A client's ticket, opened by its first message (returned), held by the reader, who has
    read it."""
    desk = await _desk(company)
    opening = await _says(evolution, desk, "bom dia")
    r = await browser.post(f"{API}/tickets/{desk.ticket_id}/assume", headers=desk.reader["headers"])
    assert r.status_code == 200, r.text
    assert await _read(browser, desk.reader["headers"], desk.ticket_id) == 0
    return desk, opening


def _finalize_event_of(ticket_id: str) -> Callable[..., bool]:
    """For `holds` on audit.service `insert`: the call storing the ticket's finalize event."""

    def its_finalize(*a: Any, **k: Any) -> bool:
        event = a[1] if len(a) > 1 else k.get("event")
        return getattr(event, "ticket_id", None) == ticket_id and event.data.get("action") == Action.FINALIZE.value

    return its_finalize


def _read_path(ticket_id: str) -> str:
    return f"{API}/tickets/{ticket_id}/read"


async def _read(http: httpx.AsyncClient, headers: dict[str, str], ticket_id: str) -> int:
    """A read that goes through: the count it answers."""
    r = await http.post(_read_path(ticket_id), headers=headers)
    assert r.status_code == 200, r.text
    return int(r.json()["unread_count"])


# --- wire markers -------------------------------------------------------------------------------


def _number_write(message_id: str) -> tuple[bytes, ...]:
    """The insert of a client message's inbound number (in whichever ticket)."""
    return command_marker("insert", "inbound_seq"), string_element("message_id", message_id)


def _count_hint_write(ticket_id: str) -> tuple[bytes, ...]:
    """The raise of the ticket's stored count hint (at every INBOUND_HINT_EVERY-th number)."""
    return command_marker("update", "unread_hints"), string_element("_id", f"in:{ticket_id}")


def _move_write(message_id: str, from_ticket_id: str) -> tuple[bytes, ...]:
    """The move of a client message out of a finalized ticket (messages.repository.move_to_ticket)."""
    return (
        command_marker("findAndModify", "messages"),
        string_element("_id", message_id),
        string_element("moved_from_ticket_id", from_ticket_id),
    )


def _marker_write(user_id: str, ticket_id: str, k: int) -> tuple[bytes, ...]:
    """The insert of entry k of a person's read-marker chain of the ticket."""
    return command_marker("insert", "read_markers"), string_element("_id", f"{marker_prefix(user_id, ticket_id)}:{k}")


# --- the truth, read past the relay, and what the API shows ---------------------------------------


async def _numbers(ticket_id: str) -> list[tuple[int, str]]:
    """(n, message id) of the ticket's numbered client messages."""
    docs = await _direct.inbound_seq.find({"ticket_id": ticket_id}).to_list(None)
    return sorted((int(d["n"]), str(d["message_id"])) for d in docs)


async def _marks(user_id: str, ticket_id: str) -> list[tuple[int, int]]:
    """(k, seq) of the person's read-marker chain of the ticket."""
    docs = await _direct.read_markers.find({"user_id": user_id, "ticket_id": ticket_id}).to_list(None)
    return sorted((int(d["k"]), int(d["seq"])) for d in docs)


async def _filed(ticket_id: str) -> list[str]:
    """The client messages stored under the ticket (those its thread shows)."""
    docs = await _direct.messages.find({"ticket_id": ticket_id}).to_list(None)
    return [str(d["_id"]) for d in docs if (d["sender_type"], d["direction"]) == ("client", "in")]


async def _shown(http: httpx.AsyncClient, headers: dict[str, str], ticket_id: str) -> tuple[int, int]:
    """The person's unread count of the ticket as the API shows it: on the ticket, and on its row
    in the person's list of tickets in its status."""
    r = await http.get(f"{API}/tickets/{ticket_id}", headers=headers)
    assert r.status_code == 200, r.text
    one, status = int(r.json()["unread_count"]), r.json()["status"]
    r = await http.get(f"{API}/tickets", params={"status": status, "limit": 200}, headers=headers)
    assert r.status_code == 200, r.text
    rows = [t for t in r.json()["items"] if t["id"] == ticket_id]
    assert len(rows) == 1, f"ticket {ticket_id} ({status}) listed {len(rows)} times"
    return one, int(rows[0]["unread_count"])


async def _check(http: httpx.AsyncClient, desk: Desk, ticket_id: str, want: dict[str, int]) -> None:
    """The store's numbering of the ticket is whole, and each person in `want` (Desk.people) has
    exactly that many unread in it: by the store (numbers past its marker) and by the API."""
    numbers = await _numbers(ticket_id)
    assert [n for n, _ in numbers] == list(range(1, len(numbers) + 1)), f"a hole in the numbering: {numbers}"
    numbered = [m for _, m in numbers]
    assert len(set(numbered)) == len(numbered), f"a client message numbered twice in {ticket_id}: {numbers}"
    never = [m for m in await _filed(ticket_id) if m not in numbered]
    assert not never, f"client messages {never} stored in ticket {ticket_id}, never counted: numbers {numbers}"
    # What a process that knows nothing of the ticket counts: the stored hint, and a read past it.
    fresh = await unread_repository.inbound_head(_direct, ticket_id)
    assert fresh == len(numbers), f"a process without memory counts {fresh} in {ticket_id}: numbers {numbers}"
    people = desk.people()
    for name, count in want.items():
        user_id, headers = people[name]
        marks = await _marks(user_id, ticket_id)
        assert [k for k, _ in marks] == list(range(1, len(marks) + 1)), f"{name}'s marker chain: {marks}"
        seqs = [s for _, s in marks]
        assert all(a < b for a, b in itertools.pairwise(seqs)), f"{name}'s marker moved back: {marks}"
        assert not seqs or seqs[-1] <= len(numbers), f"{name} read past the count: {marks}, numbers {numbers}"
        stored = len(numbers) - (seqs[-1] if seqs else 0)
        shown = await _shown(http, headers, ticket_id)
        assert (stored, *shown) == (count, count, count), (
            f"{name} should have {count} unread in {ticket_id}: the store says {stored} (numbers {numbers}, "
            f"marker {marks}), the API {shown[0]} on the ticket and {shown[1]} on its list row"
        )


# --- 1. a client message whose number is lost -----------------------------------------------------


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("which", ["opening", "later", "count_hint"])
async def test_a_client_message_whose_number_is_lost_is_counted_once_by_the_processors_retry(
    company: Company,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
    which: str,
    lose: Lose,
) -> None:
    """A client message loses a write of its number: `opening`, the insert of the number of the
    message that opens the ticket (tried without a read: unread.starts_empty); `later`, the insert
    of a later one's, after the reader read the ticket; `count_hint`, the raise of the ticket's
    stored count hint that the 4th number makes (INBOUND_HINT_EVERY). While its delivery hangs,
    the client writes again. The processor retries the delivery: each message ends with one
    number, the reader has unread exactly the messages after its read, the peer and the owner
    every one — also as a process without memory of the ticket counts them."""
    assert unread_repository.INBOUND_HINT_EVERY == 4
    desk = await _desk(company)
    before = {"opening": 0, "later": 1, "count_hint": 3}[which]
    for i in range(before):
        await _says(evolution, desk, f"mensagem {i + 1}")
    if before:
        assert await _read(browser, desk.reader["headers"], desk.ticket_id) == 0
    key, lost_id = desk.next_message()
    markers = _count_hint_write(desk.ticket_id) if which == "count_hint" else _number_write(lost_id)
    sprung = store_proxy.stall_next(*markers, lose=lose)
    _, ack = await _post(evolution, desk, "o boleto venceu", key)
    await arrived(sprung, None, f"the trap on the message's {which} write")
    after_id, after_ack = await _post(evolution, desk, "consegue mandar outro?")
    raw = await _processed(ack)
    await _processed(after_ack)
    assert raw["attempts"] >= 2, f"the delivery that lost a write was not retried: {raw}"
    if not desk.ticket_id:
        desk.ticket_id = str((await _direct.messages.find_one({"_id": lost_id}))["ticket_id"])

    said = [m for _, m in await _numbers(desk.ticket_id)]
    assert said[before:] == [lost_id, after_id], f"numbered {said}; written: {lost_id}, then {after_id}"
    total = len(said)
    hint = await _direct.unread_hints.find_one({"_id": f"in:{desk.ticket_id}"})
    assert hint is None or 1 <= hint["n"] <= total, f"the count hint names no stored number: {hint}, {total}"
    await _check(browser, desk, desk.ticket_id, {"reader": total - before, "peer": total, "owner": total})
    assert await _read(browser, desk.reader["headers"], desk.ticket_id) == 0
    await _says(evolution, desk, "alguém aí?")
    await _check(browser, desk, desk.ticket_id, {"reader": 1, "peer": total + 1, "owner": total + 1})


# --- 2. reads that lose their write, reads racing a client message ---------------------------------


@pytest.mark.parametrize("lose", LOSSES)
async def test_a_read_whose_marker_is_lost_leaves_a_later_message_unread_and_its_repeat_clears_it(
    company: Company,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
    lose: Lose,
) -> None:
    """Two unread client messages; the reader opens the thread and its read loses its marker
    write (503). The client writes again before the screen repeats the read: that message is
    unread for the reader whatever the lost read did; the repeat clears the count, the peer's
    stays whole."""
    desk = await _desk(company)
    await _says(evolution, desk, "bom dia")
    await _says(evolution, desk, "preciso da segunda via")
    reader_id, reader = desk.reader["id"], desk.reader["headers"]
    path = _read_path(desk.ticket_id)
    read = await _lost(
        store_proxy, _marker_write(reader_id, desk.ticket_id, 1), lose, browser.post(path, headers=reader), "the marker"
    )
    assert unanswered(await read), _told(read.result())
    landed = lose == "reply"  # the marker entry was stored, its answer lost
    assert await _marks(reader_id, desk.ticket_id) == ([(1, 2)] if landed else [])
    await _check(browser, desk, desk.ticket_id, {"reader": 0 if landed else 2, "peer": 2})

    await _says(evolution, desk, "alguém aí?")
    await _check(browser, desk, desk.ticket_id, {"reader": 1 if landed else 3, "peer": 3, "owner": 3})
    assert await _read(browser, reader, desk.ticket_id) == 0
    assert await _marks(reader_id, desk.ticket_id) == ([(1, 2), (2, 3)] if landed else [(1, 3)])
    await _check(browser, desk, desk.ticket_id, {"reader": 0, "peer": 3, "owner": 3})


async def test_a_read_while_a_client_message_waits_for_its_number_leaves_that_message_unread(
    company: Company,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    holds: Callable[..., Hold],
) -> None:
    """The client's message is stored in the ticket, and held before its number is taken; the
    reader's thread shows it and the screen marks the ticket read meanwhile. The read could not
    count a message without a number: once numbered, it is unread for the reader (an agent told
    once too often, never one told nothing)."""
    desk = await _desk(company)
    await _says(evolution, desk, "bom dia")
    reader = desk.reader["headers"]
    assert await _read(browser, reader, desk.ticket_id) == 0
    key, waiting_id = desk.next_message()
    held = holds(unread_service, "record_inbound", lambda *a, **k: len(a) > 2 and a[2].id == waiting_id)
    _, ack = await _post(evolution, desk, "o boleto venceu", key)
    await arrived(held.entered, None, "the client message reaching its number")

    stored = await _direct.messages.find_one({"_id": waiting_id})
    assert stored is not None and stored["ticket_id"] == desk.ticket_id, stored
    r = await browser.get(f"{API}/tickets/{desk.ticket_id}/messages", params={"limit": 200}, headers=reader)
    assert r.status_code == 200 and waiting_id in [m["id"] for m in r.json()["items"]], r.text
    assert await _read(browser, reader, desk.ticket_id) == 0  # nothing numbered past its last read yet
    held.go.set()
    await _processed(ack)
    assert [m for _, m in await _numbers(desk.ticket_id)][1:] == [waiting_id]
    await _check(browser, desk, desk.ticket_id, {"reader": 1, "peer": 2, "owner": 2})


async def test_a_client_message_numbered_between_a_reads_count_and_its_marker_stays_unread(
    company: Company,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    holds: Callable[..., Hold],
) -> None:
    """The reader's read has read the count (2) and its marker, and is held before writing its
    marker; the client's next message is stored and numbered (3) meanwhile. The read marks through
    2 only, answers 1 unread, and the message stays unread for the reader."""
    desk = await _desk(company)
    await _says(evolution, desk, "bom dia")
    await _says(evolution, desk, "preciso da segunda via")
    reader_id, reader = desk.reader["id"], desk.reader["headers"]
    held = holds(
        unread_repository,
        "insert_marker",
        lambda *a, **k: k.get("user_id") == reader_id and getattr(k.get("ticket"), "id", None) == desk.ticket_id,
    )
    read = asyncio.ensure_future(browser.post(_read_path(desk.ticket_id), headers=reader))
    await arrived(held.entered, read, "the read reaching its marker write")
    late = await _says(evolution, desk, "alguém aí?")
    held.go.set()
    answer = await read
    assert answer.status_code == 200, answer.text
    assert answer.json()["unread_count"] == 1, f"the read answered {answer.json()['unread_count']} unread"
    assert (await _numbers(desk.ticket_id))[-1] == (3, late)
    assert await _marks(reader_id, desk.ticket_id) == [(1, 2)]
    await _check(browser, desk, desk.ticket_id, {"reader": 1, "peer": 3, "owner": 3})


# --- 3. two devices of one agent ------------------------------------------------------------------


@pytest.mark.parametrize("lose", LOSSES)
async def test_two_devices_reading_at_once_with_one_marker_lost_only_move_the_marker_forward(
    company: Company,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
    lose: Lose,
) -> None:
    """The reader's phone marks the ticket read (count 2) and its marker write is lost; the client
    writes again and the reader's desktop marks it read (count 3) while the phone's request hangs.
    The phone's 503 and its repeat never move the marker back: 0 unread, then 1 after the next
    client message."""
    desk = await _desk(company)
    await _says(evolution, desk, "bom dia")
    await _says(evolution, desk, "preciso da segunda via")
    reader_id, reader = desk.reader["id"], desk.reader["headers"]
    path = _read_path(desk.ticket_id)
    phone = await _lost(
        store_proxy,
        _marker_write(reader_id, desk.ticket_id, 1),
        lose,
        browser.post(path, headers=reader),
        "the phone's marker",
    )
    await _says(evolution, desk, "alguém aí?")
    assert await _read(browser, reader, desk.ticket_id) == 0  # the desktop
    assert unanswered(await phone), _told(phone.result())
    chain = [(1, 2), (2, 3)] if lose == "reply" else [(1, 3)]
    assert await _marks(reader_id, desk.ticket_id) == chain
    await _check(browser, desk, desk.ticket_id, {"reader": 0, "peer": 3})
    assert await _read(browser, reader, desk.ticket_id) == 0  # the phone's repeat
    assert await _marks(reader_id, desk.ticket_id) == chain  # nothing new to read: no entry
    await _says(evolution, desk, "consegue mandar outro?")
    await _check(browser, desk, desk.ticket_id, {"reader": 1, "peer": 4, "owner": 4})


@pytest.mark.parametrize("lose", LOSSES)
async def test_a_stale_device_let_in_after_the_other_devices_lost_marker_never_moves_it_back(
    company: Company,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
    holds: Callable[..., Hold],
    lose: Lose,
) -> None:
    """The phone's read has read count 2 and is held before its marker write (a slow request);
    the client writes again; the desktop reads count 3 and its marker write is lost (503). Then
    the phone's write goes on: where the desktop's entry landed it must not put 2 back over 3;
    where it did not, the phone marks 2 and the third message stays unread until the desktop's
    repeat."""
    desk = await _desk(company)
    await _says(evolution, desk, "bom dia")
    await _says(evolution, desk, "preciso da segunda via")
    reader_id, reader = desk.reader["id"], desk.reader["headers"]
    path = _read_path(desk.ticket_id)
    held = holds(
        unread_repository,
        "insert_marker",
        lambda *a, **k: k.get("user_id") == reader_id and getattr(k.get("ticket"), "id", None) == desk.ticket_id,
    )
    phone = asyncio.ensure_future(browser.post(path, headers=reader))
    await arrived(held.entered, phone, "the phone's read reaching its marker write")
    await _says(evolution, desk, "alguém aí?")
    desktop = await _lost(
        store_proxy,
        _marker_write(reader_id, desk.ticket_id, 1),
        lose,
        browser.post(path, headers=reader),
        "the desktop's marker",
    )
    assert unanswered(await desktop), _told(desktop.result())
    held.go.set()
    answer = await phone
    assert answer.status_code == 200, answer.text
    landed = lose == "reply"
    assert answer.json()["unread_count"] == (0 if landed else 1), answer.text
    assert await _marks(reader_id, desk.ticket_id) == ([(1, 3)] if landed else [(1, 2)])
    await _check(browser, desk, desk.ticket_id, {"reader": 0 if landed else 1, "peer": 3})

    assert await _read(browser, reader, desk.ticket_id) == 0  # the desktop's repeat
    assert await _marks(reader_id, desk.ticket_id) == ([(1, 3)] if landed else [(1, 2), (2, 3)])
    await _check(browser, desk, desk.ticket_id, {"reader": 0, "peer": 3, "owner": 3})


# --- 4. a client message that races a finalize ----------------------------------------------------


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize(
    ("race", "lost"),
    [("before_its_settle", "number"), ("before_its_settle", "move"), ("before_its_retry", "number")],
)
async def test_a_client_message_that_races_a_finalize_is_unread_in_the_ticket_it_ends_in(
    company: Company,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
    holds: Callable[..., Hold],
    race: str,
    lost: str,
    lose: Lose,
) -> None:
    """The reader holds the ticket, has read it, and clicks Finalizar as the client writes again.
    `before_its_settle`: the message is stored, held before its ticket's re-load, the finalize
    lands, and the message moves on to a new ticket (messages.service `_file_client_message`);
    its move, or its number in the new ticket, is lost and the delivery retried.
    `before_its_retry`: its number in the open ticket is lost, the finalize lands while the
    delivery hangs, and the retry moves it on (`complete_stored`). Either way it ends in the
    client's new ticket, unread there for everyone who sees it, counted once there."""
    desk, first = await _held_and_read(company, browser, evolution)
    old, reader = desk.ticket_id, desk.reader["headers"]
    key, raced = desk.next_message()
    markers = _move_write(raced, old) if lost == "move" else _number_write(raced)
    sprung = store_proxy.stall_next(*markers, lose=lose)
    finalize = f"{API}/tickets/{old}/finalize"
    if race == "before_its_settle":
        held = holds(tickets_service, "touch_activity", lambda *a, **k: len(a) > 1 and getattr(a[1], "id", None) == old)
        _, ack = await _post(evolution, desk, "ainda estou aqui", key)
        await arrived(held.entered, None, "the client message reaching its ticket's re-load")
        r = await browser.post(finalize, headers=reader)
        assert r.status_code == 200, r.text
        held.go.set()
        await arrived(sprung, None, f"the trap on the moved message's {lost}")
    else:
        _, ack = await _post(evolution, desk, "ainda estou aqui", key)
        await arrived(sprung, None, "the trap on the message's number")
        r = await browser.post(finalize, headers=reader)
        assert r.status_code == 200, r.text
    raw = await _processed(ack)
    assert raw["attempts"] >= 2, raw

    message = await _direct.messages.find_one({"_id": raced})
    new = str(message["ticket_id"])
    assert new != old and message.get("moved_from_ticket_id") == old, message
    ticket = await _direct.tickets.find_one({"_id": new})
    assert ticket["status"] == "espera" and ticket["client_id"] == message["sender_id"], ticket
    assert await _numbers(new) == [(1, raced)]
    await _check(browser, desk, new, {"reader": 1, "peer": 1, "owner": 1})
    # The finalized ticket: its own client message, and the raced one only where its number there
    # was stored before it moved (backend/unread: counted in both, never missed).
    kept = [(1, first), (2, raced)] if (race, lose) == ("before_its_retry", "reply") else [(1, first)]
    assert await _numbers(old) == kept
    await _check(browser, desk, old, {"reader": len(kept) - 1, "owner": len(kept)})


@pytest.mark.parametrize(
    ("lost", "lose"),
    [
        ("number", "request"),
        ("number", "reply"),
        ("move", "reply"),
    ],
)
async def test_a_client_message_moved_by_the_finalizes_refile_that_loses_a_write_is_unread_where_it_ends(
    company: Company,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
    holds: Callable[..., Hold],
    lost: str,
    lose: Lose,
) -> None:
    """The reader clicks Finalizar; the finalize has taken its time (`finalized_at`) and is held
    before its event. The client writes meanwhile: stamped after `finalized_at`, stored, numbered
    and announced in the ticket, still open. The finalize goes on, and its refile
    (messages.service `refile_after_finalize`) moves the message on to a new ticket, losing a
    write there: the move itself (its answer), or the message's number in the new ticket. The
    finalize answers 503 and is clicked again; the ticket sweep re-runs the finalize's hooks,
    which did not run to their end. The message must end counted in the ticket it is in: unread
    there for everyone who sees it.

    Where the move's answer or the number's insert is lost, it is not: the refile's re-run reads
    the client messages still filed under the finalized ticket (messages.repository
    `client_messages_after_internal`), and this one was moved already, so nothing ever numbers it
    in its new ticket (nor announces it there): 0 unread for everyone while it waits there."""
    desk, opening = await _held_and_read(company, browser, evolution)
    old, reader = desk.ticket_id, desk.reader["headers"]
    held = holds(audit_service, "insert", _finalize_event_of(old))
    path = f"{API}/tickets/{old}/finalize"
    finalize = asyncio.ensure_future(browser.post(path, headers=reader))
    await arrived(held.entered, finalize, "the finalize reaching its event")
    raced = await _says(evolution, desk, "ainda estou aqui")  # numbered in the open ticket
    assert await _numbers(old) == [(1, opening), (2, raced)]
    markers = _move_write(raced, old) if lost == "move" else _number_write(raced)
    sprung = store_proxy.stall_next(*markers, lose=lose)
    held.go.set()
    await arrived(sprung, finalize, f"the trap on the refile's {lost}")
    first = await finalize
    assert unanswered(first), _told(first)
    again = await browser.post(path, headers=reader)
    assert again.status_code in (200, 409), again.text

    async def hooks_done() -> bool:
        key = natural_keys.key_id(tickets_service.FINALIZE_HOOKS_KEY, old)
        return await _direct.natural_keys.find_one({"_id": key}) is not None

    await wait_for(hooks_done, timeout=WAIT)  # the sweep re-ran the finalize's hooks to their end
    message = await _direct.messages.find_one({"_id": raced})
    new = str(message["ticket_id"])
    assert new != old and message.get("moved_from_ticket_id") == old, message
    assert (await _direct.tickets.find_one({"_id": new}))["status"] == "espera"

    async def counted() -> list[tuple[int, str]]:
        return [n for n in await _numbers(new) if n[1] == raced]

    assert await last_within(counted, timeout=SETTLE), (
        f"message {raced} waits in ticket {new}, never numbered there (its numbers: {await _numbers(new)}); "
        f"the API shows reader/peer/owner {[await _shown(browser, h, new) for _, h in desk.people().values()]} unread"
    )
    await _check(browser, desk, new, {"reader": 1, "peer": 1, "owner": 1})


async def test_a_sweep_rerun_that_finds_the_message_moved_by_a_failing_refile_still_counts_it(
    app: Any,
    company: Company,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
    holds: Callable[..., Hold],
) -> None:
    """Two runs of the finalize's refile at once: the finalize's own (F) and the ticket sweep's
    re-run of its hooks (S, which does not wait for a finalize in progress). Both read the raced
    client message still filed under the finalized ticket; F moves it on to the new ticket first,
    and S's move finds it gone. F's number insert in the new ticket is then lost: F answers 503.
    S must not leave the message to F: it completes the message where it is, or S claims the
    refile (and the hooks) done with the message unnumbered and unannounced in its new ticket,
    and no later run looks at it again — 0 unread for everyone while it waits there (the open
    race the sweep met under load in CI, made deterministic here)."""
    desk, opening = await _held_and_read(company, browser, evolution)
    old, reader = desk.ticket_id, desk.reader["headers"]
    paused = holds(tickets_sweep, "sweep_once", lambda *a, **k: True)
    await arrived(paused.entered, None, "the ticket sweep's next pass")  # S is ours to run

    sweeps: set[asyncio.Task[Any] | None] = set()

    def in_sweep(*a: Any, **k: Any) -> bool:
        return asyncio.current_task() in sweeps

    f_moves = holds(messages_repository, "move_to_ticket", lambda *a, **k: not in_sweep())
    s_moves = holds(messages_repository, "move_to_ticket", in_sweep)
    held = holds(audit_service, "insert", _finalize_event_of(old))
    finalize = asyncio.ensure_future(browser.post(f"{API}/tickets/{old}/finalize", headers=reader))
    await arrived(held.entered, finalize, "the finalize reaching its event")
    raced = await _says(evolution, desk, "ainda estou aqui")  # numbered in the open ticket
    assert await _numbers(old) == [(1, opening), (2, raced)]
    held.go.set()
    await arrived(f_moves.entered, finalize, "the finalize's move of the raced message")

    db = app.state.db
    closed = await tickets_service.load(db, old)
    assert closed is not None and closed.status == "finalizado", closed
    sweep = asyncio.ensure_future(tickets_service.after_finalize(db, closed))
    sweeps.add(sweep)
    await arrived(s_moves.entered, sweep, "the sweep's move of the raced message")
    sprung = store_proxy.stall_next(*_number_write(raced), lose="request")
    f_moves.go.set()
    await arrived(sprung, finalize, "the trap on the finalize's number write")
    first = await finalize
    assert unanswered(first), _told(first)
    s_moves.go.set()
    await asyncio.wait_for(sweep, timeout=WAIT)
    paused.go.set()

    key = natural_keys.key_id(tickets_service.FINALIZE_HOOKS_KEY, old)
    assert await _direct.natural_keys.find_one({"_id": key}) is not None  # S ran the hooks to their end
    message = await _direct.messages.find_one({"_id": raced})
    new = str(message["ticket_id"])
    assert new != old and message.get("moved_from_ticket_id") == old, message

    async def counted() -> list[tuple[int, str]]:
        return [n for n in await _numbers(new) if n[1] == raced]

    assert await last_within(counted, timeout=SETTLE), (
        f"message {raced} waits in ticket {new}, never numbered there (its numbers: {await _numbers(new)})"
    )
    await _check(browser, desk, new, {"reader": 1, "peer": 1, "owner": 1})


# --- 5. other processes, one killed and restarted -----------------------------------------------


def _process_env(evolution: FakeEvolution, port: int) -> dict[str, str]:
    """A backend process of the same deployment (its store through the relay): its processor takes
    over another process's delivery 1.5 leases (3 s) after it was acknowledged."""
    return {
        "EVOLUTION_BASE_URL": evolution.url,
        "EVOLUTION_API_KEY": evolution.api_key,
        "EVOLUTION_TIMEOUT_SECONDS": "5",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "MONGO_SOCKET_TIMEOUT_MS": "1500",
        "WEBHOOK_BACKOFF_BASE_SECONDS": "0.1",
        "WEBHOOK_LEASE_SECONDS": "2",
        "WORKERS": "1",
        "LOG_LEVEL": "WARNING",
        "CONNECTION_WATCH_ENABLED": "false",
        "OUTBOUND_WORKER_ENABLED": "false",
        "TICKET_SWEEP_ENABLED": "false",
        "SCHEDULED_MESSAGES_ENABLED": "false",
        "MEDIA_FETCH_ENABLED": "false",
    }


async def _started(store_relay: StoreProxy, settings: Settings, evolution: FakeEvolution, log: Path) -> Backend:
    backend = Backend(store_relay.url, settings.MONGO_DB, log)
    backend.extra_env = _process_env(evolution, backend.port)
    # Off the loop: the relay this process reaches its store through runs on it.
    await asyncio.get_running_loop().run_in_executor(None, backend.start)
    return backend


async def _stopped(backend: Backend, *, kill: bool = False) -> None:
    await asyncio.get_running_loop().run_in_executor(None, backend.kill if kill else backend.stop)


async def _webhook_to(evolution: FakeEvolution, desk: Desk, base_url: str) -> None:
    """The connection's instance posts its webhooks to the backend at `base_url` (same path and
    headers: any process of the deployment files them)."""
    instance = desk.conn["instance_name"]
    async with httpx.AsyncClient(base_url=evolution.url, timeout=30) as c:
        r = await c.get(f"/webhook/find/{instance}", headers={"apikey": evolution.api_key})
    assert r.status_code == 200 and r.json(), r.text
    row, target = r.json(), urlsplit(base_url)
    url = urlunsplit(urlsplit(row["url"])._replace(scheme=target.scheme, netloc=target.netloc))
    webhook = {
        "url": url,
        "headers": row["headers"],
        "enabled": row["enabled"],
        "events": row["events"],
        "byEvents": row["webhookByEvents"],
        "base64": row["webhookBase64"],
    }
    await evolution.set_webhook(instance, webhook)


async def test_counts_survive_other_processes_and_a_killed_one_and_no_process_memory_misnumbers(
    app: Any,
    backend_port: int,
    company: Company,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
    store_relay: StoreProxy,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """The app numbers messages 1-3 (it remembers the ticket's count: 3). A new backend process on
    the same database, knowing nothing of the ticket, shows the same counts and numbers 4 and 5.
    Its number of message 6 is stored, its answer lost, and the process is SIGKILLed right then;
    restarted (a new process, nothing in memory), it retries the delivery. Then the app, whose
    memory still says 3, numbers message 7. Every message once, 1..7 without a hole, and each
    person's count the same through every process; a read through the restarted process counts
    everywhere."""
    desk = await _desk(company)
    said = [await _says(evolution, desk, text) for text in ("bom dia", "preciso da segunda via")]
    assert await _read(browser, desk.reader["headers"], desk.ticket_id) == 0
    said.append(await _says(evolution, desk, "alguém aí?"))
    await _check(browser, desk, desk.ticket_id, {"reader": 1, "peer": 3, "owner": 3})
    heads, key = runtime_of(app.state.db).unread_inbound_heads, (settings.MONGO_DB, desk.ticket_id)
    assert heads.get(key) == 3, heads.get(key)  # the app's memory of the ticket's count

    first = await _started(store_relay, settings, evolution, tmp_path / "first.log")
    second: Backend | None = None
    try:
        async with httpx.AsyncClient(base_url=first.base_url, timeout=60) as there:
            await _check(there, desk, desk.ticket_id, {"reader": 1, "peer": 3, "owner": 3})
            await _webhook_to(evolution, desk, first.base_url)
            said += [await _says(evolution, desk, text) for text in ("o boleto venceu", "vence hoje")]
            await _check(there, desk, desk.ticket_id, {"reader": 3, "peer": 5})
            key6, sixth = desk.next_message()
            sprung = store_proxy.stall_next(*_number_write(sixth), lose="reply")
            _, ack = await _post(evolution, desk, "consegue mandar outro?", key6)
            await arrived(sprung, None, "the trap on the sixth message's number")
            await _stopped(first, kill=True)
        await _webhook_to(evolution, desk, f"http://127.0.0.1:{backend_port}")

        async def numbered() -> bool:
            return await _direct.inbound_seq.find_one({"message_id": sixth}) is not None

        await wait_for(numbered, timeout=WAIT)  # the killed process's insert ran in the store
        second = await _started(store_relay, settings, evolution, tmp_path / "second.log")
        raw = await _processed(ack)  # the restarted process takes the delivery over as a retry
        claims = await _direct.webhook_attempts.find({"raw_id": raw["_id"]}).to_list(None)
        assert claims and all(c["worker"] != raw["handed_to"] for c in claims), (raw, claims)
        assert any("completed after an unfinished attempt" in r for r in raw["result"] or []), raw
        said.append(sixth)
        assert await _numbers(desk.ticket_id) == list(enumerate(said, 1))
        assert heads.get(key) == 3, heads.get(key)  # the app has not looked at the ticket since

        said.append(await _says(evolution, desk, "oi?"))
        assert heads.get(key) == 7, f"the app did not number the 7th message itself (memory {heads.get(key)})"
        assert await _numbers(desk.ticket_id) == list(enumerate(said, 1))
        async with httpx.AsyncClient(base_url=second.base_url, timeout=60) as restarted:
            for http in (restarted, browser):
                await _check(http, desk, desk.ticket_id, {"reader": 5, "peer": 7, "owner": 7})
            assert await _read(restarted, desk.reader["headers"], desk.ticket_id) == 0
            said.append(await _says(evolution, desk, "obrigada"))
            for http in (browser, restarted):
                await _check(http, desk, desk.ticket_id, {"reader": 1, "peer": 8, "owner": 8})
    finally:
        for backend in (first, second):
            if backend is not None:
                await _stopped(backend)
        await _webhook_to(evolution, desk, f"http://127.0.0.1:{backend_port}")
