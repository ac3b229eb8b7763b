"""Every write of an inbound message's processing lost in turn: no message is lost, doubled or reordered.

The backend reaches the store through a relay (tests/tcp_relay.py) that stalls the one connection
carrying the write a test names: its command never runs (`request`) or runs with its answer lost
(`reply`). With MONGO_SOCKET_TIMEOUT_MS small the write fails with a NetworkTimeout like any store
error, and the processor retries the delivery (a sequenced-log append, the feed's and the reports',
retries its own insert: core/seqlog.py). Right behind it comes the chat's next message.

Two moments of a chat: (a) a new client's first message, which writes the client (its phone key
and document), the ticket (its number counter and key, its slot key, event v1 and document) and
then the message; (b) a message in the client's open conversation, which writes the message and
the ticket's activity. Both then number the message for the unread count (`inbound_seq`),
announce it (`tenant_events`), count it in the reports (`report_entries`) and record the
delivery's outcome (`webhook_events_raw`).

Once both deliveries are processed the chat must read as if nothing had failed: one client, one
open ticket, every message stored once under it in the order sent, each announced to the open
screens (in that order), the ticket's unread count and the reports' client messages counting
every one of them. And the ticket a new client's message opens is announced as opened
(`ticket.created`), whichever of its writes was lost; a client's reaction to its message is
recorded once, announced and counted unread, whichever of its writes was lost."""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from backend.clients.phones import key_form
from backend.messages.service import change_id_for
from backend.webhooks.service import message_id_for
from tests.factories import Tenant, make_tenant, unique, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.tcp_relay import Lose, StoreProxy, command_marker, string_element
from tests.webhooks.evolution_shapes import key_id, pn_key, token, upsert

HOOK = "/api/v1/webhooks/whatsapp"
API = "/api/v1"
WAIT = 30.0  # seconds: a lost write costs a socket timeout (1.5 s) and a backoff before its retry


@pytest.fixture(scope="module")
def settings_overrides(store_relay: StoreProxy) -> dict[str, Any]:
    return {"MONGO_URL": store_relay.url, "MONGO_SOCKET_TIMEOUT_MS": 1500, "WEBHOOK_BACKOFF_BASE_SECONDS": 0.1}


@dataclass
class Chat:
    """One client's WhatsApp chat with a tenant of its own (so its counts are the chat's alone)."""

    tenant: Tenant
    conn_id: str
    headers: dict[str, str]  # the connection's webhook token
    phone: str


@dataclass
class Sent:
    text: str
    key: str  # the provider's message id
    message_id: str  # ours, derived from it
    raw_id: str = ""  # the stored delivery, once acknowledged


# What identifies a write of the chat's first (a) or faulted (b) message on the wire. Each gets
# (chat, the faulted message, the chat's ticket id when known) and names the command and
# collection plus what only that write of this chat carries.
Markers = Callable[[Chat, Sent, str], tuple[bytes, ...]]


def _natural_key(key: str) -> tuple[bytes, ...]:
    return command_marker("insert", "natural_keys"), string_element("_id", key)


WRITES: dict[str, Markers] = {
    "client phone key": lambda c, m, t: _natural_key(f"client-phone:{c.tenant.id}:{key_form(c.phone)}"),
    "client insert": lambda c, m, t: (command_marker("insert", "users"), c.phone.encode(), c.tenant.id.encode()),
    "ticket number counter": lambda c, m, t: (
        command_marker("findAndModify", "counters"),
        string_element("_id", f"ticket-number:{c.tenant.id}"),
    ),
    "ticket number key": lambda c, m, t: _natural_key(f"ticket-number:{c.tenant.id}:1"),  # the tenant's first
    "ticket slot key": lambda c, m, t: (
        command_marker("insert", "natural_keys"),
        f"open-ticket:{c.tenant.id}:".encode(),
        f":{c.conn_id}:0\x00".encode(),
    ),
    "ticket event": lambda c, m, t: (
        command_marker("insert", "ticket_events"),
        string_element("type", "created"),
        string_element("client_phone", c.phone),
    ),
    "ticket insert": lambda c, m, t: (command_marker("insert", "tickets"), string_element("client_phone", c.phone)),
    "message insert": lambda c, m, t: (command_marker("insert", "messages"), string_element("_id", m.message_id)),
    "ticket activity": lambda c, m, t: (
        command_marker("findAndModify", "tickets"),
        string_element("_id", t),
        m.text.encode(),
    ),
    "unread numbering": lambda c, m, t: (
        command_marker("insert", "inbound_seq"),
        string_element("message_id", m.message_id),
    ),
    "feed record": lambda c, m, t: (
        command_marker("insert", "tenant_events"),
        string_element("type", "message.created"),
        string_element("id", m.message_id),
    ),
    "reports entry": lambda c, m, t: (command_marker("insert", "report_entries"), f"msg:{m.message_id}".encode()),
    "delivery outcome": lambda c, m, t: (
        command_marker("update", "webhook_events_raw"),
        f"message {m.message_id} in ticket".encode(),
    ),
}
# (a) writes no activity: the ticket its message opens shows it from event v1 (messages.append `opened`).
FIRST_MESSAGE = [w for w in WRITES if w != "ticket activity"]
# (b): the client and its open ticket are found by reads; only the message's own writes remain.
LATER_MESSAGE = [
    "message insert",
    "ticket activity",
    "unread numbering",
    "feed record",
    "reports entry",
    "delivery outcome",
]
LOSSES: list[Lose] = ["request", "reply"]


def _dashed(write: str) -> str:
    return write.replace(" ", "-")


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", FIRST_MESSAGE, ids=_dashed)
async def test_a_new_clients_first_message_survives_a_lost_write(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    write: str,
    lose: Lose,
) -> None:
    chat = await _new_chat(client, admin_headers, evolution, db)
    first, second = _messages(chat, "primeira", "segunda")
    sprung = store_proxy.stall_next(*WRITES[write](chat, first, ""), lose=lose)
    await _post(client, chat, first)
    await _post(client, chat, second)
    await asyncio.wait_for(sprung.wait(), timeout=WAIT)
    await _one_conversation(client, direct, chat, [first, second])


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", LATER_MESSAGE, ids=_dashed)
async def test_a_message_in_an_open_conversation_survives_a_lost_write(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    write: str,
    lose: Lose,
) -> None:
    chat = await _new_chat(client, admin_headers, evolution, db)
    opening, faulted, after = _messages(chat, "bom dia", "o boleto venceu", "consegue mandar outro?")
    await _post(client, chat, opening)
    await wait_for(lambda: _processed(direct, [opening]), timeout=WAIT)
    stored = await direct.messages.find_one({"_id": opening.message_id})
    sprung = store_proxy.stall_next(*WRITES[write](chat, faulted, stored["ticket_id"]), lose=lose)
    await _post(client, chat, faulted)
    await _post(client, chat, after)
    await asyncio.wait_for(sprung.wait(), timeout=WAIT)
    ticket_id = await _one_conversation(client, direct, chat, [opening, faulted, after])
    assert ticket_id == stored["ticket_id"]  # filed into the conversation that was open


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", ["ticket slot key", "ticket event", "ticket insert"], ids=_dashed)
async def test_the_ticket_a_new_clients_first_message_opens_is_announced_despite_a_lost_write(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    write: str,
    lose: Lose,
) -> None:
    """The queue screens learn of a new ticket from its `ticket.created` record: it raises the new
    ticket's alert for the department's agents and refreshes the queue's counts (frontend
    features/alerts/alerts.ts, realtime/cache.ts `movesCounts`), which a message record does not.
    A retry that completes a ticket whose opening attempt failed after storing event v1 must
    announce it as the opening attempt would have."""
    chat = await _new_chat(client, admin_headers, evolution, db)
    first, second = _messages(chat, "primeira", "segunda")
    sprung = store_proxy.stall_next(*WRITES[write](chat, first, ""), lose=lose)
    await _post(client, chat, first)
    await _post(client, chat, second)
    await asyncio.wait_for(sprung.wait(), timeout=WAIT)
    ticket_id = await _one_conversation(client, direct, chat, [first, second])
    r = await client.get(f"{API}/tickets/counts", headers=chat.tenant.headers)
    assert r.status_code == 200, r.text
    assert r.json()["espera"] == 1, r.json()
    announced = await direct.tenant_events.count_documents({"type": "ticket.created", "ticket.id": ticket_id})
    assert announced >= 1, f"ticket {ticket_id} opened for the client's first message was never announced"


# A client's reaction: the record beside the message it reacts to, its unread number, its
# announcement, the delivery's outcome (webhooks `_apply_change`, messages.record_change).
REACTION_WRITES: dict[str, Callable[[str, str], tuple[bytes, ...]]] = {
    "reaction insert": lambda r, t: (command_marker("insert", "messages"), string_element("_id", r)),
    "unread numbering": lambda r, t: (command_marker("insert", "inbound_seq"), string_element("message_id", r)),
    "feed record": lambda r, t: (
        command_marker("insert", "tenant_events"),
        string_element("type", "message.created"),
        string_element("id", r),
    ),
    "delivery outcome": lambda r, t: (
        command_marker("update", "webhook_events_raw"),
        f"reaction of message {t}".encode(),
    ),
}


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", list(REACTION_WRITES), ids=_dashed)
async def test_a_clients_reaction_survives_a_lost_write(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    write: str,
    lose: Lose,
) -> None:
    """The client reacts to its own message; one write of the reaction's processing is lost and
    the processor retries the delivery, which meets the record stored by the failed attempt when
    its insert ran and only its answer was lost. The reaction must still reach the open screens
    and the unread count: the retry is the delivery's last word."""
    chat = await _new_chat(client, admin_headers, evolution, db)
    (opening,) = _messages(chat, "quero 2 pizzas")
    await _post(client, chat, opening)
    await wait_for(lambda: _processed(direct, [opening]), timeout=WAIT)
    reaction_key = key_id()
    reaction_id = change_id_for(chat.conn_id, "reaction", opening.key, reaction_key)
    sprung = store_proxy.stall_next(*REACTION_WRITES[write](reaction_id, opening.message_id), lose=lose)
    body = {"reactionMessage": {"key": {"remoteJid": f"{chat.phone}@s.whatsapp.net", "id": opening.key}, "text": "👍"}}
    reacted = Sent("👍", reaction_key, reaction_id)
    await _post(client, chat, reacted, body=(body, "reactionMessage"))
    await asyncio.wait_for(sprung.wait(), timeout=WAIT)
    await wait_for(lambda: _processed(direct, [reacted]), timeout=WAIT)

    stored = await direct.messages.find({"reseller_id": chat.tenant.id}).to_list(None)
    assert sorted(m["_id"] for m in stored) == sorted([opening.message_id, reaction_id]), stored
    reaction = next(m for m in stored if m["_id"] == reaction_id)
    assert (reaction["type"], reaction["annotates"], reaction["body"]) == ("reaction", opening.message_id, "👍")
    announced = await direct.tenant_events.count_documents({"type": "message.created", "message.id": reaction_id})
    assert announced >= 1, f"the client's reaction {reaction_id} is stored and processed, never announced"
    r = await client.get(f"{API}/tickets/{reaction['ticket_id']}", headers=chat.tenant.headers)
    assert r.status_code == 200, r.text
    assert r.json()["unread_count"] == 2, r.json()  # its message and its reaction


async def _new_chat(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> Chat:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    return Chat(tenant, conn["id"], {"X-Webhook-Token": await token(db, conn["id"])}, unique_phone())


def _messages(chat: Chat, *texts: str) -> list[Sent]:
    """Distinct texts (a trap may name a message by its text) and their deterministic ids."""
    out = []
    for text in texts:
        kid = key_id()
        out.append(Sent(f"{text} {unique('')}", kid, message_id_for(chat.conn_id, kid)))
    return out


async def _post(
    client: httpx.AsyncClient, chat: Chat, sent: Sent, *, body: tuple[dict[str, Any], str] | None = None
) -> None:
    """Delivers the message as Evolution does (its text, or `body` and its message type) and notes
    its stored delivery."""
    content, kind = body or ({"conversation": sent.text}, "conversation")
    payload = upsert(pn_key(chat.phone, sent.key), content, kind)
    r = await client.post(f"{HOOK}/{chat.conn_id}", json=payload, headers=chat.headers)
    assert r.status_code == 200, r.text
    sent.raw_id = r.json()["raw_id"]


async def _one_conversation(client: httpx.AsyncClient, direct: Any, chat: Chat, sent: list[Sent]) -> str:
    """Once every delivery is processed: one client, one open ticket, every message stored once under
    it in order, announced in order, counted unread and in the reports. Returns the ticket's id."""
    await wait_for(lambda: _processed(direct, sent), timeout=WAIT)
    tenant, ids = chat.tenant, [m.message_id for m in sent]

    clients = await direct.users.find({"reseller_id": tenant.id, "role": "client"}).to_list(None)
    assert [c.get("phone") for c in clients] == [chat.phone], clients  # exactly one client
    tickets = await direct.tickets.find({"reseller_id": tenant.id}).to_list(None)
    assert len(tickets) == 1, tickets  # exactly one ticket, open, the client's
    (ticket,) = tickets
    assert ticket["status"] == "espera" and ticket["client_id"] == clients[0]["_id"], ticket

    stored = await direct.messages.find({"reseller_id": tenant.id}).to_list(None)
    assert sorted(m["_id"] for m in stored) == sorted(ids), stored  # each once, nothing else
    assert {m["ticket_id"] for m in stored} == {ticket["_id"]}, stored  # all in that ticket
    by_id = {m["_id"]: m for m in stored}
    assert [by_id[i]["body"] for i in ids] == [m.text for m in sent]
    stamps = [by_id[i]["created_at"] for i in ids]
    assert stamps == sorted(stamps), stamps  # the chat's order kept
    r = await client.get(f"{API}/tickets/{ticket['_id']}/messages", headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert [m["id"] for m in r.json()["items"]] == ids  # the thread an agent opens

    for message_id in ids:  # announced to the open screens, in the chat's order
        n = await direct.tenant_events.count_documents({"type": "message.created", "message.id": message_id})
        assert n >= 1, f"message {message_id} ({ids.index(message_id) + 1} of {len(ids)}) never announced"
    records = await direct.tenant_events.find({"type": "message.created", "message.id": {"$in": ids}}).to_list(None)
    firsts: dict[str, str] = {}
    for record in sorted(records, key=lambda d: d["_id"]):
        firsts.setdefault(record["message"]["id"], record["_id"])
    assert sorted(firsts, key=firsts.__getitem__) == ids, firsts

    r = await client.get(f"{API}/tickets/{ticket['_id']}", headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert r.json()["unread_count"] == len(ids), r.json()
    r = await client.get(f"{API}/reports/summary", headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert r.json()["messages_in"] == len(ids), r.json()
    return str(ticket["_id"])


async def _processed(direct: Any, sent: list[Sent]) -> bool:
    raw_ids = [m.raw_id for m in sent]
    n = await direct.webhook_events_raw.count_documents({"_id": {"$in": raw_ids}, "status": "processed"})
    return bool(n == len(raw_ids))
