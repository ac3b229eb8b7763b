"""The automatic messages (backend/automation) while the store loses one of their writes.

The backend reaches the store through a relay (tests/tcp_relay.py) that stalls the one connection
carrying a chosen write: the command never runs (`lose="request"`) or it runs and its answer never
comes back (`lose="reply"`); with MONGO_SOCKET_TIMEOUT_MS the step then fails after 1.5 s, as on
any store hiccup, and the product's own retry path takes over: the webhook processor retries the
delivery (a retry completes what its failed attempt left, automation `after_client_message`
with `retry`), the ticket sweep re-runs a finalize's hooks until they ran to their end, the
outbound worker sends what is queued and stored. The steps and their writes:

- a client's first message opens a ticket, greeted, told the company is closed, offered the menu
  (`_opened`): each automatic message takes its chat position (`outbox_chats`), its queue entry
  (`outbox`), is stored (`messages`, its `_id` derived from ticket and purpose: the once-only
  claim), moves the ticket's activity (`tickets` findAndModify) and is announced;
- the client's answer to the menu (`_menu_answer`): an invalid one claims its number k
  (`natural_keys` "menu-answer:<ticket>:<k>") and repeats the menu (a `messages` insert), a valid
  one routes the ticket (a `routed` event in `ticket_events`);
- Finalizar (`after_finalize`): the closing message and the survey question (`messages`, activity)
  and the chat's survey record (`automation_surveys`);
- the client's digit (`take_rating`, `complete_rating`): the rating message filed under the
  finalized ticket (`messages`, activity), the `rated` event, the survey marked answered.

IAZE has no inactivity auto-close (DOMAIN.md: only a person's Finalizar closes a ticket; no
background job moves one), so the close a client message lands around is Finalizar and its hooks.
And competitors landing between two writes of a step, placed deterministically by wrapping the
service the step calls next: a Finalizar between the menu answer's decision and its routing; a
client message between the survey question and its survey record; a Finalizar between the
greeting's queue entry and its message.

The end state a helpdesk user expects, whatever was lost: every client message stored once, in an
open ticket an agent of its department can open (a rating, in the finalized ticket it rates);
each automatic message stored once and taken once by the provider, in the chat's order, none
shown as sent that the provider did not take; a survey answer recorded once, the ticket's state
the same in GET /tickets/{id}, the lists and /tickets/counts; every stored message announced to
open screens (`tenant_events` "message.created", naming the ticket it is in)."""

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from backend.audit.service import event_id
from backend.automation import repository as survey_store
from backend.automation import texts
from backend.automation.models import Survey
from backend.automation.service import CLOSING, GREETING, MENU, SURVEY, automatic_id
from backend.outbound import service as outbound
from backend.tickets import service as tickets_service
from backend.tickets import sweep as tickets_sweep
from backend.tickets.models import Ticket
from backend.webhooks.service import message_id_for
from tests.automation.helpers import TOKYO_HOURS, TUESDAY_NIGHT, at, company, sent_to
from tests.factories import API, Tenant, unique, unique_phone
from tests.fakes.harness import FakeEvolution, last_within, wait_for
from tests.holds import Hold, arrived, holds
from tests.tcp_relay import Lose, StoreProxy, command_marker, relayed, string_element
from tests.webhooks.helpers import raw_id_of

__all__ = ["holds"]

STALL = 30.0  # how long a trap may take to spring once its step is under way
SETTLE = 60.0  # how long an end state may take: a stall, the processor's backoff, a sweep, the worker
SHOWN = 2.0  # an announcement's grace once the step that stores its message has ended
LEFT = ("sent", "delivered", "read")
LOSSES: list[Lose] = ["request", "reply"]
MENU_TEXT = "Escolha o departamento:"
CONFIG = {
    "welcome_message": "Olá {{cliente}}! Seu protocolo é {{protocolo}}.",
    "away_message": "Estamos fechados agora; protocolo {{protocolo}}.",
    "closing_message": "Obrigado, {{cliente}}! O protocolo {{protocolo}} foi encerrado.",
    "csat_enabled": True,
    "csat_window_hours": 2,
    "csat_message": "De 1 a 5, que nota você dá ao atendimento {{protocolo}}?",
    "timezone": "Asia/Tokyo",
    "business_hours": TOKYO_HOURS,
    "signature_enabled": False,
}
MENU_BODY = texts.menu(MENU_TEXT, ["Suporte", "Financeiro"])
MENU_REPEAT = texts.menu(MENU_TEXT, ["Suporte", "Financeiro"], repeat=True)


@pytest.fixture(scope="module")
def settings_overrides(store_relay: StoreProxy) -> dict[str, Any]:
    return {
        **relayed(store_relay),
        "WEBHOOK_BACKOFF_BASE_SECONDS": 0.1,
        "TICKET_SWEEP_SECONDS": 0.5,
        "OUTBOUND_LEASE_SECONDS": 3.0,
    }


@dataclass
class Shop:
    """One company for the whole module (each test's chat is a client of its own): two
    departments (Suporte, the connection's default, and Financeiro) with an agent each, every
    automatic message on, the menu offering both departments."""

    tenant: Tenant
    conn: dict[str, Any]

    @property
    def suporte(self) -> str:
        return str(self.tenant.departments[0]["id"])

    @property
    def financeiro(self) -> str:
        return str(self.tenant.departments[1]["id"])

    def agent_of(self, department_id: str) -> dict[str, str]:
        index = [d["id"] for d in self.tenant.departments].index(department_id)
        headers: dict[str, str] = self.tenant.agents[index]["headers"]
        return headers


@pytest.fixture(scope="module")
async def shop(client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution) -> Shop:
    tenant, conn = await company(client, admin_headers, evolution, config=CONFIG)
    menu = {"menu_enabled": True, "menu_department_ids": [d["id"] for d in tenant.departments], "menu_text": MENU_TEXT}
    r = await client.patch(f"{API}/whatsapp-connections/{conn['id']}", json=menu, headers=tenant.headers)
    assert r.status_code == 200, r.text
    return Shop(tenant, r.json())


@dataclass
class Said:
    text: str
    message_id: str
    raw_id: str


@dataclass
class Chat:
    """One client writing in on the shop's WhatsApp number (a name of its own: the automatic
    texts that name the client are this chat's alone)."""

    shop: Shop
    phone: str = field(default_factory=unique_phone)
    name: str = field(default_factory=lambda: unique("Maria ").replace("-", " "))
    said: list[Said] = field(default_factory=list)

    @property
    def chat_key(self) -> str:
        return outbound.chat_key(str(self.shop.conn["id"]), self.phone)


async def _say(evolution: FakeEvolution, chat: Chat, text: str) -> Said:
    """The client sends `text` (a unique key id, so its message id is known before it is stored)."""
    key = unique("KEY").replace("-", "").upper()
    conn = chat.shop.conn
    result = await evolution.inbound(conn["instance_name"], chat.phone, text, push_name=chat.name, key_id=key)
    said = Said(text, message_id_for(str(conn["id"]), key), raw_id_of(result))
    chat.said.append(said)
    return said


async def _processed(direct: Any, said: list[Said]) -> None:
    ids = [s.raw_id for s in said]

    async def done() -> bool:
        n = await direct.webhook_events_raw.count_documents({"_id": {"$in": ids}, "status": "processed"})
        return bool(n == len(ids))

    if not await last_within(done, timeout=SETTLE):
        found = await direct.webhook_events_raw.find({"_id": {"$in": ids}}).to_list(None)
        raise AssertionError(f"deliveries not processed: {[(r['_id'], r['status'], r.get('error')) for r in found]}")


async def _sprung(event: asyncio.Event, what: str) -> None:
    """The trap caught its write (else the test would pass having lost nothing)."""
    try:
        await asyncio.wait_for(event.wait(), STALL)
    except TimeoutError:
        raise AssertionError(f"the trap on the {what} write never sprang") from None


async def _ticket_of(direct: Any, message_id: str) -> str:
    async def filed() -> str | None:
        doc = await direct.messages.find_one({"_id": message_id}, {"ticket_id": 1})
        return None if doc is None else str(doc["ticket_id"])

    found: str = await wait_for(filed, timeout=SETTLE)
    return found


async def _tickets_of(direct: Any, chat: Chat) -> list[dict[str, Any]]:
    """The client's tickets, oldest first."""
    customer = await direct.users.find_one({"reseller_id": chat.shop.tenant.id, "phone": chat.phone})
    assert customer is not None, f"no client stored for {chat.phone}"
    found = await direct.tickets.find({"client_id": customer["_id"]}).to_list(None)
    return sorted(found, key=lambda t: t["number"])


async def _events(direct: Any, ticket_id: str) -> list[dict[str, Any]]:
    found = await direct.ticket_events.find({"ticket_id": ticket_id}).to_list(None)
    return sorted(found, key=lambda e: e["version"])


async def _automatic(direct: Any, ticket_id: str) -> list[dict[str, Any]]:
    found = await direct.messages.find({"ticket_id": ticket_id, "automatic": True}).to_list(None)
    return sorted(found, key=lambda m: (m["created_at"], m["_id"]))


async def _left(direct: Any, ticket_id: str, purpose: str) -> dict[str, Any]:
    """The ticket's automatic message of `purpose` once the provider took it."""

    async def done() -> dict[str, Any] | None:
        found = [m for m in await _automatic(direct, ticket_id) if m["automatic_purpose"] == purpose]
        return found[0] if found and found[0]["status"] in LEFT else None

    result: dict[str, Any] = await wait_for(done, timeout=SETTLE)
    return result


async def _hooks_done(direct: Any, ticket_id: str) -> None:
    async def done() -> bool:
        return await direct.natural_keys.find_one({"_id": f"finalize-hooks:{ticket_id}"}) is not None

    assert await last_within(done, timeout=SETTLE), f"the finalize hooks of {ticket_id} never ran to their end"


# --- the end state ---------------------------------------------------------------------------


def _without_away(purposes: list[str]) -> list[str]:
    """The away message depends on the hour the test runs at (Tokyo business hours) unless the
    test fixes the clock: it is checked apart (at most one per ticket here)."""
    return [p for p in purposes if p != "away"]


async def _check_filed(client: httpx.AsyncClient, direct: Any, chat: Chat, where: dict[str, str]) -> None:
    """Each client message stored once, under the ticket `where` names, shown in its thread to
    the people who see that ticket: an open one to an agent of its department."""
    shop = chat.shop
    customer = await direct.users.find_one({"reseller_id": shop.tenant.id, "phone": chat.phone})
    assert customer is not None, f"no client stored for {chat.phone}"
    for said in chat.said:
        mine = {"reseller_id": shop.tenant.id, "sender_id": customer["_id"], "body": said.text}
        n = await direct.messages.count_documents(mine)
        assert n == 1, f"the client's {said.text!r} is stored {n} times"
        doc = await direct.messages.find_one({"_id": said.message_id})
        assert doc is not None, f"the client's {said.text!r} was never stored"
        assert doc["ticket_id"] == where[said.message_id], (
            f"the client's {said.text!r} is in ticket {doc['ticket_id']}, expected {where[said.message_id]}"
        )
    for ticket_id in set(where.values()):
        r = await client.get(f"{API}/tickets/{ticket_id}", headers=shop.tenant.headers)
        assert r.status_code == 200, r.text
        ticket = r.json()
        headers = shop.agent_of(ticket["department_id"]) if ticket["status"] == "espera" else shop.tenant.headers
        r = await client.get(f"{API}/tickets/{ticket_id}/messages", params={"limit": 100}, headers=headers)
        assert r.status_code == 200, (ticket, r.text)
        shown = {m["id"] for m in r.json()["items"]}
        missing = [s.text for s in chat.said if where[s.message_id] == ticket_id and s.message_id not in shown]
        assert not missing, f"ticket {ticket_id} ({ticket['status']}) does not show {missing}"


async def _check_sent_once(
    direct: Any, evolution: FakeEvolution, chat: Chat, expected: dict[str, list[str]], *, away: bool | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The automatic messages of each of the chat's tickets are the `expected` purposes, in order
    (`away`: whether an away message is expected, None when the hour decides), each stored once,
    taken by the provider once ("sent" only once it was), and the provider took nothing else for
    the chat. Returns them per ticket."""

    async def stored() -> dict[str, list[dict[str, Any]]]:
        return {t: await _automatic(direct, t) for t in expected}

    async def all_out() -> dict[str, list[dict[str, Any]]] | None:
        found = await stored()
        for ticket_id, purposes in expected.items():
            have = Counter(_without_away([m["automatic_purpose"] for m in found[ticket_id]]))
            if any(have[p] < n for p, n in Counter(purposes).items()):
                return None
        if any(m["status"] not in LEFT for ms in found.values() for m in ms):
            return None
        taken = Counter(await sent_to(evolution, chat.phone))
        bodies = Counter(m["body"] for ms in found.values() for m in ms)
        return found if all(taken[b] >= n for b, n in bodies.items()) else None

    found = await last_within(all_out, timeout=SETTLE)
    if not found:
        now = await stored()
        raise AssertionError(
            f"automatic messages not all stored and sent: expected {expected}, stored "
            f"{ {t: [(m['automatic_purpose'], m['status']) for m in ms] for t, ms in now.items()} }, "
            f"the provider took {await sent_to(evolution, chat.phone)}"
        )
    await asyncio.sleep(0.5)  # a second send of any of them would come right behind the first
    found = await stored()
    for ticket_id, messages in found.items():
        purposes = [m["automatic_purpose"] for m in messages]
        assert _without_away(purposes) == expected[ticket_id], f"ticket {ticket_id}: {purposes}, expected {expected}"
        texts_ = [m["body"] for m in messages]  # a menu's repeat says so: no two alike in one ticket
        assert len(set(texts_)) == len(texts_), f"ticket {ticket_id}: an automatic message twice: {texts_}"
        if away is not None:
            assert ("away" in purposes) is away, f"ticket {ticket_id}: {purposes}, away expected: {away}"
    taken = Counter(await sent_to(evolution, chat.phone))
    bodies = Counter(m["body"] for ms in found.values() for m in ms)
    assert taken == bodies, f"the provider took {dict(taken)}; the automatic messages stored are {dict(bodies)}"
    return found


async def _check_tickets(client: httpx.AsyncClient, direct: Any, chat: Chat) -> dict[str, dict[str, Any]]:
    """Each of the chat's tickets reads (GET /tickets/{id}) what its event log says, an open one
    is visible to an agent of its department; the tenant's lists and /tickets/counts agree with
    the logs of its tickets. Returns the chat's tickets as read, by id."""
    shop = chat.shop
    read: dict[str, dict[str, Any]] = {}
    for doc in await _tickets_of(direct, chat):
        events = await _events(direct, doc["_id"])
        last = events[-1]

        async def agrees(ticket_id: str = doc["_id"], last: dict[str, Any] = last) -> dict[str, Any] | None:
            r = await client.get(f"{API}/tickets/{ticket_id}", headers=shop.tenant.headers)
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            state = last["state"]
            said = (body["status"], body["department_id"], body["agent_id"], body.get("rating"))
            logged = (last["to_status"], state.get("department_id"), state.get("agent_id"), state.get("rating"))
            return body if said == logged else None

        ticket = await last_within(agrees, timeout=SETTLE)
        assert ticket, f"ticket {doc['_id']} does not read what its log says: {events[-1]}"
        if ticket["status"] == "espera":
            r = await client.get(f"{API}/tickets/{ticket['id']}", headers=shop.agent_of(ticket["department_id"]))
            assert r.status_code == 200, f"the agent of its department cannot open ticket {ticket['id']}: {r.text}"
        read[ticket["id"]] = ticket
    await _check_lists_and_counts(client, direct, shop.tenant)
    return read


async def _check_lists_and_counts(client: httpx.AsyncClient, direct: Any, tenant: Tenant) -> None:
    async def truth() -> dict[str, str]:
        events = await direct.ticket_events.find({"reseller_id": tenant.id}).to_list(None)
        newest: dict[str, tuple[int, str]] = {}
        for e in events:
            if e["version"] > newest.get(e["ticket_id"], (0, ""))[0]:
                newest[e["ticket_id"]] = (e["version"], e["to_status"])
        return {t: s for t, (_, s) in newest.items()}

    async def listed() -> dict[str, str]:
        where: dict[str, str] = {}
        for status in ("espera", "atendendo", "finalizado"):
            r = await client.get(f"{API}/tickets", params={"status": status, "limit": 200}, headers=tenant.headers)
            assert r.status_code == 200, r.text
            where.update({t["id"]: status for t in r.json()["items"]})
        return where

    async def counted() -> dict[str, int]:
        r = await client.get(f"{API}/tickets/counts", headers=tenant.headers)
        assert r.status_code == 200, r.text
        body: dict[str, int] = r.json()
        return body

    async def agree() -> bool:
        logs = await truth()
        expected = {s: 0 for s in ("espera", "atendendo", "finalizado")} | dict(Counter(logs.values()))
        return await listed() == logs and {k: v for k, v in (await counted()).items() if k in expected} == expected

    if not await last_within(agree, timeout=SETTLE):
        logs = await truth()
        lists = await listed()
        differ = {t: (lists.get(t), s) for t, s in logs.items() if lists.get(t) != s}
        raise AssertionError(
            f"lists/counts disagree with the tickets' logs: (listed, logged) {differ}; "
            f"counts {await counted()} vs {Counter(logs.values())}"
        )


async def _check_announced(direct: Any, chat: Chat) -> None:
    """Every message of the chat's tickets (the client's and the automatic ones) announced to the
    open screens, by a record naming the ticket it is stored in."""
    ids = [t["_id"] for t in await _tickets_of(direct, chat)]
    stored = await direct.messages.find({"ticket_id": {"$in": ids}}).to_list(None)

    async def missing() -> list[str]:
        records = await direct.tenant_events.find(
            {"type": "message.created", "message.id": {"$in": [m["_id"] for m in stored]}}
        ).to_list(None)
        named = {(r["message"]["id"], r["message"]["ticket_id"]) for r in records}
        return [
            f"{m.get('automatic_purpose') or 'client'} {m['body']!r}"
            for m in stored
            if (m["_id"], m["ticket_id"]) not in named
        ]

    async def none_missing() -> bool:
        return not await missing()

    # Announced by the step that stores the message (or by its retry), which all ended by now.
    if not await last_within(none_missing, timeout=SHOWN):
        raise AssertionError(f"stored but never announced to open screens: {await missing()}")


# --- scenes ----------------------------------------------------------------------------------


async def _opened(
    evolution: FakeEvolution, direct: Any, shop: Shop, text: str = "preciso de ajuda"
) -> tuple[Chat, str]:
    """A new client's first message, processed: its ticket waits in Suporte, the menu pending."""
    chat = Chat(shop)
    said = await _say(evolution, chat, f"{text} {unique('')}")
    await _processed(direct, [said])
    return chat, await _ticket_of(direct, said.message_id)


async def _finalized_and_asked(
    browser: httpx.AsyncClient, evolution: FakeEvolution, direct: Any, shop: Shop
) -> tuple[Chat, str]:
    """A client's ticket assumed by Suporte's agent and finalized: closing message and survey
    question sent (a digit answers only a question the client received)."""
    chat, ticket_id = await _opened(evolution, direct, shop)
    agent = shop.agent_of(shop.suporte)
    r = await browser.post(f"{API}/tickets/{ticket_id}/assume", headers=agent)
    assert r.status_code == 200, r.text
    r = await browser.post(f"{API}/tickets/{ticket_id}/finalize", headers=agent)
    assert r.status_code == 200, r.text
    await _left(direct, ticket_id, SURVEY)
    await _hooks_done(direct, ticket_id)
    return chat, ticket_id


def _dashed(write: str) -> str:
    return write.replace(" ", "-")


# --- a new ticket's greeting, away message and menu ---------------------------------------------

# The greeting's writes, told by what only it carries: the chat's first position, the first queue
# entry of the chat, the message (its body starts with `g`, naming this chat's client), its
# activity (the ticket's preview of it), its "message.created" record (the feed retries its own
# insert: a lost one is written again, a lost answer leaves the record twice, which screens take
# by message id).
GREETING_WRITES: dict[str, Callable[[Chat, str], tuple[bytes, ...]]] = {
    "chat position": lambda c, g: (
        command_marker("insert", "outbox_chats"),
        string_element("_id", f"c:{c.chat_key}:1"),
    ),
    "queue entry": lambda c, g: (command_marker("insert", "outbox"), string_element("chat", c.chat_key)),
    "message insert": lambda c, g: (command_marker("insert", "messages"), b"\x02body\x00", g.encode()),
    "ticket activity": lambda c, g: (
        command_marker("findAndModify", "tickets"),
        b"\x02last_message_preview\x00",
        g.encode(),
    ),
    "announcement": lambda c, g: (
        command_marker("insert", "tenant_events"),
        string_element("type", "message.created"),
        g.encode(),
    ),
}


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", list(GREETING_WRITES), ids=_dashed)
async def test_a_lost_write_of_the_greeting_and_the_clients_answer_right_after(
    client: httpx.AsyncClient,
    evolution: FakeEvolution,
    direct: Any,
    shop: Shop,
    store_proxy: StoreProxy,
    monkeypatch: pytest.MonkeyPatch,
    write: str,
    lose: Lose,
) -> None:
    """Out of hours (the away message is due), a new client writes; one write of its greeting is
    lost; the client answers the menu right after. The delivery's retry completes the greeting,
    the away message and the menu, each sent once and in order, and the answer routes the ticket."""
    at(monkeypatch, TUESDAY_NIGHT)
    chat = Chat(shop)
    sprung = store_proxy.stall_next(*GREETING_WRITES[write](chat, f"Olá {chat.name}!"), lose=lose)
    first = await _say(evolution, chat, f"oi, boa noite {unique('')}")
    answer = await _say(evolution, chat, "1")
    await _sprung(sprung, write)
    await _processed(direct, [first, answer])

    ticket_id = await _ticket_of(direct, first.message_id)
    await _check_filed(client, direct, chat, {first.message_id: ticket_id, answer.message_id: ticket_id})
    found = await _check_sent_once(direct, evolution, chat, {ticket_id: [GREETING, MENU]}, away=True)
    texts_ = [m["body"] for m in found[ticket_id]]
    taken = await sent_to(evolution, chat.phone)
    assert [taken.index(t) for t in texts_] == sorted(taken.index(t) for t in texts_), (
        f"sent out of order: {taken}, stored {texts_}"
    )
    assert texts_[0].startswith(f"Olá {chat.name}!") and texts_[-1] == MENU_BODY, texts_
    events = await _events(direct, ticket_id)
    assert [e["type"] for e in events] == ["created", "routed"], [e["type"] for e in events]
    assert events[-1]["data"]["to_department_id"] == shop.suporte and not events[-1]["data"]["fallback"]
    read = await _check_tickets(client, direct, chat)
    assert list(read) == [ticket_id], read
    ticket = read[ticket_id]
    assert (ticket["status"], ticket["department_id"], ticket["menu_pending"]) == ("espera", shop.suporte, False)
    await _check_announced(direct, chat)


# --- the client's answer to the menu -----------------------------------------------------------

MENU_WRITES: dict[str, Callable[[str], tuple[bytes, ...]]] = {
    # "9" is no department: the first invalid answer claims k = 1, then the menu is repeated.
    "invalid answer claim": lambda t: (
        command_marker("insert", "natural_keys"),
        string_element("_id", f"menu-answer:{t}:1"),
    ),
    "menu repeat insert": lambda t: (
        command_marker("insert", "messages"),
        string_element("_id", automatic_id(t, MENU, "1")),
    ),
    # "2" chooses Financeiro: the ticket's `routed` event, version 2.
    "routed event": lambda t: (command_marker("insert", "ticket_events"), string_element("_id", event_id(t, 2))),
}


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", list(MENU_WRITES), ids=_dashed)
async def test_a_lost_write_of_the_menu_answer_and_the_clients_next_message(
    client: httpx.AsyncClient,
    evolution: FakeEvolution,
    direct: Any,
    shop: Shop,
    store_proxy: StoreProxy,
    write: str,
    lose: Lose,
) -> None:
    """The client answers the menu with "9" (no such department: the menu is repeated) then "2",
    or with "2" then a thank-you; one write of the answer's step is lost. The ticket is routed to
    Financeiro once, where its agent sees it; the menu and its one repeat are each sent once."""
    chat, ticket_id = await _opened(evolution, direct, shop)
    invalid = write != "routed event"
    sprung = store_proxy.stall_next(*MENU_WRITES[write](ticket_id), lose=lose)
    faulted = await _say(evolution, chat, "9" if invalid else "2")
    after = await _say(evolution, chat, "2" if invalid else f"obrigada {unique('')}")
    await _sprung(sprung, write)
    await _processed(direct, chat.said)

    await _check_filed(client, direct, chat, {s.message_id: ticket_id for s in chat.said})
    expected = [GREETING, MENU, MENU] if invalid else [GREETING, MENU]
    found = await _check_sent_once(direct, evolution, chat, {ticket_id: expected})
    menus = [m for m in found[ticket_id] if m["automatic_purpose"] == MENU]
    assert [m["_id"] for m in menus] == [automatic_id(ticket_id, MENU, p) for p in ("0", "1")][: len(menus)], menus
    assert [m["body"] for m in menus] == [MENU_BODY, MENU_REPEAT][: len(menus)], menus
    if invalid:
        claim = await direct.natural_keys.find_one({"_id": f"menu-answer:{ticket_id}:1"})
        assert claim is not None and claim["target"] == faulted.message_id, claim
        assert await direct.natural_keys.find_one({"_id": f"menu-answer:{ticket_id}:2"}) is None
    events = await _events(direct, ticket_id)
    assert [e["type"] for e in events] == ["created", "routed"], [e["type"] for e in events]
    routed = events[-1]["data"]
    chose = after if invalid else faulted
    assert (routed["to_department_id"], routed["fallback"], routed["message_id"]) == (
        shop.financeiro,
        False,
        chose.message_id,
    ), routed
    read = await _check_tickets(client, direct, chat)
    ticket = read[ticket_id]
    assert (ticket["status"], ticket["department_id"], ticket["menu_pending"]) == ("espera", shop.financeiro, False)
    r = await client.get(
        f"{API}/tickets", params={"status": "espera", "limit": 200}, headers=shop.agent_of(shop.financeiro)
    )
    assert ticket_id in [t["id"] for t in r.json()["items"]], "Financeiro's queue does not list the routed ticket"
    await _check_announced(direct, chat)


# --- Finalizar: the closing message, the survey question, its record ----------------------------

FINALIZE_WRITES: dict[str, Callable[[str], tuple[bytes, ...]]] = {
    "closing insert": lambda t: (command_marker("insert", "messages"), string_element("_id", automatic_id(t, CLOSING))),
    "closing activity": lambda t: (
        command_marker("findAndModify", "tickets"),
        string_element("_id", t),
        b"foi encerrado",
    ),
    "survey insert": lambda t: (command_marker("insert", "messages"), string_element("_id", automatic_id(t, SURVEY))),
    "survey record": lambda t: (command_marker("insert", "automation_surveys"), string_element("ticket_id", t)),
}


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", list(FINALIZE_WRITES), ids=_dashed)
async def test_a_lost_write_of_the_closing_message_or_survey_then_the_client_rates(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    direct: Any,
    shop: Shop,
    store_proxy: StoreProxy,
    write: str,
    lose: Lose,
) -> None:
    """An agent finalizes a ticket it handled; one write of the finalize hook's automatic step is
    lost (the click may answer 503); the sweep re-runs the hooks. The closing message and the
    question each reach the client once, closing first, and the client's "4" rates the ticket."""
    chat, ticket_id = await _opened(evolution, direct, shop)
    agent = shop.agent_of(shop.suporte)
    r = await browser.post(f"{API}/tickets/{ticket_id}/assume", headers=agent)
    assert r.status_code == 200, r.text
    sprung = store_proxy.stall_next(*FINALIZE_WRITES[write](ticket_id), lose=lose)
    r = await browser.post(f"{API}/tickets/{ticket_id}/finalize", headers=agent)
    assert r.status_code in (200, 503), (r.status_code, r.text)
    await _sprung(sprung, write)
    await _hooks_done(direct, ticket_id)
    await _left(direct, ticket_id, SURVEY)
    found = await _check_sent_once(direct, evolution, chat, {ticket_id: [GREETING, MENU, CLOSING, SURVEY]})
    taken = await sent_to(evolution, chat.phone)
    closing, question = (
        next(m["body"] for m in found[ticket_id] if m["automatic_purpose"] == p) for p in (CLOSING, SURVEY)
    )
    assert taken.index(closing) < taken.index(question), taken

    rating = await _say(evolution, chat, "4")
    await _processed(direct, [rating])
    await _check_filed(client, direct, chat, {s.message_id: ticket_id for s in chat.said})
    assert len(await _tickets_of(direct, chat)) == 1  # a rating opens no ticket
    rated = [e for e in await _events(direct, ticket_id) if e["type"] == "rated"]
    assert [(e["data"]["rating"], e["data"]["message_id"]) for e in rated] == [(4, rating.message_id)], rated
    read = await _check_tickets(client, direct, chat)
    assert (read[ticket_id]["status"], read[ticket_id]["rating"]) == ("finalizado", 4), read[ticket_id]
    survey = await direct.automation_surveys.find_one({"_id": chat.chat_key})
    assert survey is not None and (survey["ticket_id"], survey["answered_by"]) == (ticket_id, rating.message_id)
    await _check_announced(direct, chat)


async def test_the_sweeps_rerun_meeting_the_finalizes_closing_message_at_its_insert_announces_it(
    app: Any,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    direct: Any,
    shop: Shop,
    store_proxy: StoreProxy,
    holds: Callable[..., Hold],
) -> None:
    """The ticket sweep re-runs a finalize's hooks (S) without waiting for the finalize's own run
    (F). Both look for the closing message before either stored it; F's insert lands first and its
    answer is lost (F fails). S meets the message at its own insert, goes on to the survey and
    claims the hooks done, so no run looks at the closing message again: S must announce it (the
    race CI met under load, made deterministic here)."""
    chat, ticket_id = await _opened(evolution, direct, shop)
    agent = shop.agent_of(shop.suporte)
    r = await browser.post(f"{API}/tickets/{ticket_id}/assume", headers=agent)
    assert r.status_code == 200, r.text
    paused = holds(tickets_sweep, "sweep_once", lambda *a, **k: True)
    await arrived(paused.entered, None, "the ticket sweep's next pass")  # S is ours to run
    closing_id = automatic_id(ticket_id, CLOSING)

    def queues_closing(*args: Any, **kwargs: Any) -> bool:
        return bool(kwargs.get("message_id") == closing_id)

    f_queues = holds(outbound, "enqueue", queues_closing)
    finalize = asyncio.ensure_future(browser.post(f"{API}/tickets/{ticket_id}/finalize", headers=agent))
    await arrived(f_queues.entered, finalize, "the finalize's queue entry for its closing message")
    closed = await tickets_service.load(app.state.db, ticket_id)
    assert closed is not None and closed.status == "finalizado", closed
    s_queues = holds(outbound, "enqueue", queues_closing)
    sweep = asyncio.ensure_future(tickets_service.after_finalize(app.state.db, closed))
    await arrived(s_queues.entered, sweep, "the sweep's queue entry for the closing message")
    sprung = store_proxy.stall_next(*FINALIZE_WRITES["closing insert"](ticket_id), lose="reply")
    f_queues.go.set()
    await arrived(sprung, finalize, "the trap on the finalize's closing insert")
    assert await wait_for(lambda: direct.messages.find_one({"_id": closing_id}), timeout=STALL)
    s_queues.go.set()
    await asyncio.wait_for(sweep, timeout=SETTLE)
    r = await finalize
    assert r.status_code in (200, 503), (r.status_code, r.text)
    paused.go.set()

    await _hooks_done(direct, ticket_id)
    await _left(direct, ticket_id, SURVEY)
    await _check_sent_once(direct, evolution, chat, {ticket_id: [GREETING, MENU, CLOSING, SURVEY]})
    await _check_announced(direct, chat)


# --- the client's rating -----------------------------------------------------------------------

RATING_WRITES: dict[str, Callable[[str, str], tuple[bytes, ...]]] = {
    "rating insert": lambda t, m: (command_marker("insert", "messages"), string_element("_id", m)),
    "rating activity": lambda t, m: (
        command_marker("findAndModify", "tickets"),
        string_element("_id", t),
        string_element("last_message_preview", "4"),
    ),
    "rated event": lambda t, m: (
        command_marker("insert", "ticket_events"),
        string_element("type", "rated"),
        t.encode(),
    ),
    "survey answered": lambda t, m: (command_marker("update", "automation_surveys"), b"answered_by", m.encode()),
}


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", list(RATING_WRITES), ids=_dashed)
async def test_a_lost_write_of_the_rating_and_another_digit_right_after(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    direct: Any,
    shop: Shop,
    store_proxy: StoreProxy,
    write: str,
    lose: Lose,
) -> None:
    """The client answers the survey with "4", one write of the rating is lost, and it sends "2"
    right after. The survey is answered once (4, one `rated` event, the survey marked by the "4"),
    the "4" is shown in the finalized ticket it rates, and the "2" is a new conversation: an open
    ticket its agents see, greeted and offered the menu."""
    chat, ticket_id = await _finalized_and_asked(browser, evolution, direct, shop)
    key = unique("KEY").replace("-", "").upper()
    rating_id = message_id_for(str(shop.conn["id"]), key)
    sprung = store_proxy.stall_next(*RATING_WRITES[write](ticket_id, rating_id), lose=lose)
    conn = shop.conn
    result = await evolution.inbound(conn["instance_name"], chat.phone, "4", push_name=chat.name, key_id=key)
    rating = Said("4", rating_id, raw_id_of(result))
    chat.said.append(rating)
    again = await _say(evolution, chat, "2")
    await _sprung(sprung, write)
    await _processed(direct, [rating, again])

    tickets = await _tickets_of(direct, chat)
    assert [t["_id"] for t in tickets][:1] == [ticket_id] and len(tickets) == 2, tickets
    newer = str(tickets[1]["_id"])
    where = {s.message_id: ticket_id for s in chat.said} | {again.message_id: newer}
    await _check_filed(client, direct, chat, where)
    rated = [e for e in await _events(direct, ticket_id) if e["type"] == "rated"]
    assert [(e["data"]["rating"], e["data"]["message_id"]) for e in rated] == [(4, rating_id)], rated
    stored = await direct.messages.find_one({"_id": rating_id})
    assert stored["rating"] == 4 and (await direct.messages.find_one({"_id": again.message_id})).get("rating") is None
    survey = await direct.automation_surveys.find_one({"_id": chat.chat_key})
    assert survey is not None and (survey["ticket_id"], survey["answered_by"]) == (ticket_id, rating_id), survey
    await _check_sent_once(
        direct, evolution, chat, {ticket_id: [GREETING, MENU, CLOSING, SURVEY], newer: [GREETING, MENU]}
    )
    read = await _check_tickets(client, direct, chat)
    assert (read[ticket_id]["status"], read[ticket_id]["rating"]) == ("finalizado", 4), read[ticket_id]
    assert (read[newer]["status"], read[newer]["rating"]) == ("espera", None), read[newer]
    await _check_announced(direct, chat)


# --- competitors between two writes --------------------------------------------------------------


async def test_a_finalize_between_the_menu_answers_decision_and_its_routing(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    direct: Any,
    shop: Shop,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client's "2" is filed and judged an answer to the pending menu; before the routing is
    written, an agent finalizes the ticket. Finalizar wins (no `routed` event after it), the "2"
    stays shown where it was filed while the ticket was open, the closing message goes out once
    after the menu, and the client's next message opens a new ticket the agents see."""
    chat, ticket_id = await _opened(evolution, direct, shop)
    agent = shop.agent_of(shop.suporte)
    original = tickets_service.choose_department
    finalized: list[int] = []

    async def finalize_first(db_: Any, ticket: Ticket, **kwargs: Any) -> Ticket:
        if ticket.id == ticket_id and not finalized:
            r = await browser.post(f"{API}/tickets/{ticket_id}/finalize", headers=agent)
            finalized.append(r.status_code)
        return await original(db_, ticket, **kwargs)

    monkeypatch.setattr(tickets_service, "choose_department", finalize_first)
    answer = await _say(evolution, chat, "2")
    await _processed(direct, [answer])
    monkeypatch.undo()
    assert finalized == [200], finalized
    later = await _say(evolution, chat, f"oi de novo {unique('')}")
    await _processed(direct, [later])

    tickets = await _tickets_of(direct, chat)
    assert len(tickets) == 2 and tickets[0]["_id"] == ticket_id, tickets
    newer = str(tickets[1]["_id"])
    where = {s.message_id: ticket_id for s in chat.said} | {later.message_id: newer}
    await _check_filed(client, direct, chat, where)
    events = await _events(direct, ticket_id)
    assert [e["type"] for e in events] == ["created", "finalized"], [e["type"] for e in events]
    found = await _check_sent_once(
        direct, evolution, chat, {ticket_id: [GREETING, MENU, CLOSING], newer: [GREETING, MENU]}
    )
    taken = await sent_to(evolution, chat.phone)
    closing = next(m["body"] for m in found[ticket_id] if m["automatic_purpose"] == CLOSING)
    assert taken.index(MENU_BODY) < taken.index(closing), taken  # the first ticket's menu, then its closing
    read = await _check_tickets(client, direct, chat)
    assert (read[ticket_id]["status"], read[ticket_id]["department_id"]) == ("finalizado", shop.suporte)
    assert read[newer]["status"] == "espera"
    await _check_announced(direct, chat)


async def test_a_client_message_between_the_survey_question_and_its_record(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    direct: Any,
    shop: Shop,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finalizar stores the survey question; before the chat's survey record is written, the
    client writes a new message (a new conversation: an open ticket). That conversation ends the
    survey, as any new conversation does: once it is finalized too, the client's "5" is a message
    of a new conversation, not a rating of the first ticket."""
    chat, first = await _opened(evolution, direct, shop)
    agent = shop.agent_of(shop.suporte)
    r = await browser.post(f"{API}/tickets/{first}/assume", headers=agent)
    assert r.status_code == 200, r.text
    original = survey_store.put_survey
    written = asyncio.Event()
    between: list[Said] = []

    async def client_writes_first(db_: Any, survey: Survey) -> None:
        if survey.ticket_id == first:
            if not between:
                between.append(await _say(evolution, chat, f"tenho outra dúvida {unique('')}"))
                await _processed(direct, between)
                written.set()
            await written.wait()  # a sweep's re-run of the hooks meanwhile waits for it too
        await original(db_, survey)

    monkeypatch.setattr(survey_store, "put_survey", client_writes_first)
    r = await browser.post(f"{API}/tickets/{first}/finalize", headers=agent)
    assert r.status_code == 200, r.text
    await _hooks_done(direct, first)
    monkeypatch.undo()
    assert len(between) == 1
    second = await _ticket_of(direct, between[0].message_id)
    assert second != first
    r = await browser.get(f"{API}/tickets/{second}", headers=agent)
    assert r.status_code == 200 and r.json()["status"] == "espera", r.text  # the agents see it
    await _left(direct, first, SURVEY)
    r = await browser.post(f"{API}/tickets/{second}/finalize", headers=agent)
    assert r.status_code == 200, r.text
    await _hooks_done(direct, second)

    digit = await _say(evolution, chat, "5")
    await _processed(direct, [digit])
    tickets = await _tickets_of(direct, chat)
    assert [t["_id"] for t in tickets][:2] == [first, second], tickets
    rated = [e for e in await _events(direct, first) if e["type"] == "rated"]
    assert rated == [], f"the first ticket was rated after the client had started a new conversation: {rated}"
    assert len(tickets) == 3
    third = str(tickets[2]["_id"])
    where = {s.message_id: first for s in chat.said[:1]} | {between[0].message_id: second, digit.message_id: third}
    await _check_filed(client, direct, chat, where)
    await _check_tickets(client, direct, chat)
    await _check_announced(direct, chat)


async def test_a_finalize_between_the_greetings_queue_entry_and_its_message(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    direct: Any,
    shop: Shop,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new client's greeting is queued; before it is stored, the company finalizes the ticket
    (spam, a duplicate). The greeting was queued first and goes out first, the closing message
    once after it; nothing asks the client anything after the ticket is closed (no menu, no away
    message), and the client's message stays shown in the ticket it was filed in while open."""
    at(monkeypatch, TUESDAY_NIGHT)
    chat = Chat(shop)
    original = outbound.enqueue
    finalized: list[int] = []

    async def finalize_after_queueing(db_: Any, *, message_id: str, ticket: Ticket) -> int:
        seq = await original(db_, message_id=message_id, ticket=ticket)
        if message_id == automatic_id(ticket.id, GREETING) and not finalized:
            r = await browser.post(f"{API}/tickets/{ticket.id}/finalize", headers=chat.shop.tenant.headers)
            finalized.append(r.status_code)
        return seq

    monkeypatch.setattr(outbound, "enqueue", finalize_after_queueing)
    first = await _say(evolution, chat, f"oi {unique('')}")
    await _processed(direct, [first])
    monkeypatch.setattr(outbound, "enqueue", original)
    assert finalized == [200], finalized
    ticket_id = await _ticket_of(direct, first.message_id)
    await _hooks_done(direct, ticket_id)

    await _check_filed(client, direct, chat, {first.message_id: ticket_id})
    read = await _check_tickets(client, direct, chat)
    assert read[ticket_id]["status"] == "finalizado"
    # Stored in that order (the greeting's insert came after the finalize), queued the other way.
    found = await _check_sent_once(direct, evolution, chat, {ticket_id: [CLOSING, GREETING]}, away=False)
    greeting, closing = (
        next(m["body"] for m in found[ticket_id] if m["automatic_purpose"] == p) for p in (GREETING, CLOSING)
    )
    assert await sent_to(evolution, chat.phone) == [greeting, closing]
    await _check_announced(direct, chat)
