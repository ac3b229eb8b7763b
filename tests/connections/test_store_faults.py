"""A WhatsApp connection's status, QR code and activation while the store loses one write, with
the agent replies and client messages that depend on the connection.

The backend reaches the store through a relay (tests/tcp_relay.py) that stalls the one connection
carrying a chosen write: the command never runs (`lose="request"`) or it runs and its answer never
comes back (`lose="reply"`); with MONGO_SOCKET_TIMEOUT_MS the caller fails after 1.5 s, as after
any store hiccup (a browser gets 503 "the database did not answer; retry"; the webhook processor
retries the delivery). While the trap holds a write, a competitor acts: the phone's next state, an
agent's reply, a client's message, the outbox worker's next attempt.

The writes that matter (backend/connections):
- the status the provider reports (`record_status`: `whatsapp_connections` update) and its
  announcement to the tenant's screens (`tenant_events` "connection.status"), from a
  connection.update or qrcode.updated webhook, a QR code request or the connection watch;
- the owner's change (`update`: PATCH `active`), and the binding of the provider's instance
  (`_bind_instance`: `provider_created`, the instance's token and webhook events).

Whatever is lost, the end state must hold against the truth (the store read past the relay, the
fake provider's own record of its instance and of what it took): the stored status is the
provider's latest, announced last; a reply queued while the connection could not send goes out
once the connection opens, once, in order, and never while it is closed (Evolution answers a send
on a closed session with an id and never delivers it: worker.py `_send`); the ticket's
`reply_blocked` says why nothing can be sent at each step; a client's message is filed and shown,
whatever the connection's state; a connection whose binding was interrupted gets a QR code and
connects.

The API's own outbox worker is off: a test that sends starts a real `OutboundWorker.run` loop
(the loop the backend runs in its lifespan) on the API's database handle, which goes through the
relay, when it wants the replies to move. The connection watch (CONNECTION_WATCH_SECONDS) is off
in tests; the tests that rely on it run its pass (`watch.check_connections`) themselves."""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.webhooks import watch
from tests.factories import Tenant, make_tenant, unique, unique_phone
from tests.fakes.harness import FakeEvolution, last_within, make_connection, wait_for
from tests.outbound.helpers import held_ticket, unsigned, worker_loop
from tests.tcp_relay import Lose, StoreProxy, command_marker, relayed, string_element, unanswered
from tests.webhooks.helpers import settled

__all__ = ["worker_loop"]  # the `start_worker` fixture (tests/outbound/helpers.py)

API = "/api/v1"
CONNS = f"{API}/whatsapp-connections"
SETTLE = 30.0  # a faulted write costs a stall (1.5 s), a backoff and a retry; a reply a few attempts
SPRING = 20.0  # how long a trap may wait for the write it names
LOSSES: list[Lose] = ["request", "reply"]


@pytest.fixture(scope="module")
def settings_overrides(store_relay: StoreProxy) -> dict[str, Any]:
    return {
        **relayed(store_relay),
        "OUTBOUND_WORKER_ENABLED": False,  # each test starts its own once the stage is set
        "OUTBOUND_LEASE_SECONDS": 5.0,
        # A reply waits for a connection that cannot send by retrying: patience for ~30 s here.
        "OUTBOUND_MAX_ATTEMPTS": 60,
        "OUTBOUND_BACKOFF_BASE_SECONDS": 0.2,
        "OUTBOUND_BACKOFF_MAX_SECONDS": 0.5,
        "WEBHOOK_BACKOFF_BASE_SECONDS": 0.2,
    }


@dataclass
class Chat:
    """A tenant of its own (its counts and feed are the chat's alone), its open connection, and a
    client's ticket held by its agent."""

    tenant: Tenant
    conn: dict[str, Any]
    ticket_id: str
    phone: str
    agent: dict[str, str]

    @property
    def conn_id(self) -> str:
        return str(self.conn["id"])

    @property
    def instance(self) -> str:
        return str(self.conn["instance_name"])


async def _chat(client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any) -> Chat:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    return Chat(tenant, conn, ticket_id, phone, agent)


# --- what identifies a write on the wire ------------------------------------------------------


def bool_element(key: str, value: bool) -> bytes:
    """A BSON boolean element on the wire, e.g. `active: false` in an update's `$set`."""
    return b"\x08" + key.encode() + b"\x00" + (b"\x01" if value else b"\x00")


def status_write(conn_id: str, status: str) -> tuple[bytes, ...]:
    """`repository.update` of the connection setting `status` (record_status, bind)."""
    return (
        command_marker("update", "whatsapp_connections"),
        string_element("_id", conn_id),
        string_element("status", status),
    )


def status_announcement(conn_id: str, status: str) -> tuple[bytes, ...]:
    """The feed record telling the tenant's screens the connection's new status (`announce`)."""
    return (
        command_marker("insert", "tenant_events"),
        string_element("type", "connection.status"),
        string_element("id", conn_id),
        string_element("status", status),
    )


def activation_write(conn_id: str, active: bool) -> tuple[bytes, ...]:
    """The owner's PATCH {"active": ...} (`service.update`)."""
    return (
        command_marker("update", "whatsapp_connections"),
        string_element("_id", conn_id),
        bool_element("active", active),
    )


# --- the truth and what the API shows ----------------------------------------------------------


async def _phone(evolution: FakeEvolution, chat_or_conn: Chat | dict[str, Any], state: str, **extra: Any) -> Any:
    """The phone's session at the provider moves to `state`; the fake posts the CONNECTION_UPDATE
    (unless `post=False`). Returns the fake's record of its post (the webhook's answer)."""
    instance = chat_or_conn.instance if isinstance(chat_or_conn, Chat) else chat_or_conn["instance_name"]
    return await evolution.control("POST", "state", {"instance": instance, "state": state, **extra})


async def _provider(evolution: FakeEvolution, instance: str) -> dict[str, Any]:
    """The fake provider's own record of the instance (state, webhook, events)."""
    found: dict[str, Any] = await evolution.control("GET", f"instances/{instance}")
    return found


async def _stored(direct: Any, conn_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = await direct.whatsapp_connections.find_one({"_id": conn_id})
    return doc


async def _stored_status(direct: Any, conn_id: str, status: str, *, timeout: float = SETTLE) -> str:  # noqa: ASYNC109
    """The stored status once it reads `status` (or the last one read after `timeout`)."""

    async def probe() -> str | None:
        now = str((await _stored(direct, conn_id))["status"])
        return now if now == status else None

    found = await last_within(probe, timeout=timeout)
    return str(found or (await _stored(direct, conn_id))["status"])


async def _announced(direct: Any, tenant_id: str, conn_id: str) -> list[dict[str, Any]]:
    """The connection as each `connection.status` feed record showed it, in feed order."""
    records = (
        await direct.tenant_events.find(
            {"reseller_id": tenant_id, "type": "connection.status", "data.connection.id": conn_id}
        )
        .sort("_id", 1)
        .to_list(None)
    )
    return [r["data"]["connection"] for r in records]


async def _follows_the_provider(
    client: httpx.AsyncClient,
    direct: Any,
    evolution: FakeEvolution,
    tenant: Tenant,
    conn_id: str,
    status: str,
    *,
    within: float = SETTLE,
) -> None:
    """The provider's truth is `status`, and the store (within `within` seconds), the API and the
    last announcement to the tenant's screens all say so (an open connection shows no QR code)."""
    stored = await _stored(direct, conn_id)
    assert (await _provider(evolution, stored["instance_name"]))["state"] == status
    assert await _stored_status(direct, conn_id, status, timeout=within) == status, await _stored(direct, conn_id)
    stored = await _stored(direct, conn_id)
    if status == "open":
        assert stored["qr_code"] is None, stored
    r = await client.get(f"{CONNS}/{conn_id}", headers=tenant.headers)
    assert r.status_code == 200 and r.json()["status"] == status, r.text

    async def last_shown() -> bool:
        shown = await _announced(direct, tenant.id, conn_id)
        return bool(shown) and shown[-1]["status"] == status and shown[-1]["qr_code"] == stored["qr_code"]

    if not await last_within(last_shown, timeout=10):
        shown = [(s["status"], bool(s["qr_code"])) for s in await _announced(direct, tenant.id, conn_id)]
        raise AssertionError(f"the store says {status!r} but the screens were last told otherwise: {shown}")


async def _reply_blocked(client: httpx.AsyncClient, chat: Chat) -> str | None:
    """Why the ticket's composer is disabled, as the ticket reads."""
    r = await client.get(f"{API}/tickets/{chat.ticket_id}", headers=chat.agent)
    assert r.status_code == 200, r.text
    reason: str | None = r.json()["reply_blocked"]
    return reason


async def _reply(http: httpx.AsyncClient, chat: Chat, text: str) -> httpx.Response:
    return await http.post(f"{API}/tickets/{chat.ticket_id}/messages", json={"body": text}, headers=chat.agent)


async def _queued(client: httpx.AsyncClient, chat: Chat, text: str) -> tuple[str, str]:
    """An accepted reply: (message id, text)."""
    r = await _reply(client, chat, text)
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    return str(r.json()["id"]), text


def _refused(r: httpx.Response, reason: str) -> bool:
    return r.status_code == 409 and r.json()["detail"].get("reason") == reason


async def _received(evolution: FakeEvolution, phone: str) -> list[dict[str, Any]]:
    """What the provider took for the client, in the order it took it (signature removed)."""
    return [{**s, "text": unsigned(s["text"])} for s in await evolution.sent() if s["number"] == phone]


async def _settled(direct: Any, ids: list[str]) -> list[dict[str, Any]] | None:
    found = {m["_id"]: m for m in await direct.messages.find({"_id": {"$in": ids}}).to_list(None)}
    if len(found) < len(ids) or any(found[i]["status"] == "pending" for i in ids):
        return None
    return [found[i] for i in ids]


async def _sent_once(direct: Any, evolution: FakeEvolution, chat: Chat, sent: list[tuple[str, str]]) -> None:
    """Each reply of `sent` ((id, text), in the order written) settles "sent", taken once by the
    provider with the id it answered, the client reading them in order; each announced."""
    ids = [m for m, _ in sent]
    messages = await last_within(lambda: _settled(direct, ids), timeout=SETTLE)
    assert messages, f"a reply is still pending: {await direct.messages.find({'_id': {'$in': ids}}).to_list(None)}"
    received = await _received(evolution, chat.phone)
    texts = [r["text"] for r in received]
    for message, (_, text) in zip(messages, sent, strict=True):
        assert message["status"] == "sent", message
        assert texts.count(text) == 1, f"{text!r} taken {texts.count(text)} times by the provider: {texts}"
        (taken,) = [r for r in received if r["text"] == text]
        assert message["provider_message_id"] == taken["key_id"], (message, taken)
    mine = [t for t in texts if t in {text for _, text in sent}]
    assert mine == [t for _, t in sent], f"the client read the replies out of order: {mine}"
    for message_id, text in sent:
        query = {"type": "message.status", "data.message_id": message_id, "data.status": "sent"}

        async def shown(q: dict[str, Any] = query) -> int:
            return int(await direct.tenant_events.count_documents(q))

        assert await last_within(shown, timeout=10), f"{text!r} is sent but no open screen was told"


async def _tried_while_blocked(direct: Any, message_id: str) -> bool:
    """The worker met the reply's connection unable to send (worker `_send`), at least once."""
    query = {"message_id": message_id, "error": "connection not connected"}
    return bool(await direct.outbox_attempts.count_documents(query))


# --- 1. an "open" whose write is lost -----------------------------------------------------------


@pytest.mark.parametrize(
    ("write", "lose", "before"),
    [
        ("status", "request", "close"),
        ("status", "reply", "close"),
        ("status", "request", "connecting"),
        ("announcement", "request", "close"),
        ("announcement", "reply", "connecting"),
    ],
)
async def test_an_open_whose_write_is_lost_releases_the_replies_queued_behind_it(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    start_worker: Callable[[], None],
    write: str,
    lose: Lose,
    before: str,
) -> None:
    """Two replies are queued; the phone drops (`before`) before they go, so the worker holds them
    (retrying). The phone comes back: the connection.update "open" delivery loses its status write
    or its announcement. The delivery is retried, the connection ends "open" in the store and on
    the screens, and the held replies go out, once each, in order, none before the phone was back."""
    chat = await _chat(client, admin_headers, evolution, db)
    sent = [await _queued(client, chat, f"{n}: {unique('resposta ')}") for n in ("primeira", "segunda")]
    dropped = await _phone(evolution, chat, before)
    assert (await settled(direct, dropped))["status"] == "processed", dropped
    assert await _stored_status(direct, chat.conn_id, before) == before
    assert await _reply_blocked(client, chat) == "connection_disconnected"
    assert _refused(await _reply(client, chat, "agora não"), "connection_disconnected")
    start_worker()
    assert await wait_for(lambda: _tried_while_blocked(direct, sent[0][0]), timeout=SETTLE)

    markers = status_write if write == "status" else status_announcement
    sprung = store_proxy.stall_next(*markers(chat.conn_id, "open"), lose=lose)
    assert await _received(evolution, chat.phone) == []  # nothing went while the phone was away
    opened = await _phone(evolution, chat, "open")
    assert opened["status_code"] == 200, opened
    await asyncio.wait_for(sprung.wait(), timeout=SPRING)
    assert (await settled(direct, opened, within=SETTLE))["status"] == "processed"
    await _follows_the_provider(client, direct, evolution, chat.tenant, chat.conn_id, "open")
    await _sent_once(direct, evolution, chat, sent)
    assert await _reply_blocked(client, chat) is None


# --- 2. a "close" whose write is lost, and a reply typed meanwhile ------------------------------


@pytest.mark.parametrize("lose", ["request", "reply"])
async def test_a_reply_typed_while_the_close_is_being_recorded_is_never_shown_sent_while_the_phone_is_away(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    start_worker: Callable[[], None],
    lose: Lose,
) -> None:
    """The phone drops; the connection.update "close" loses its status write, and while the trap
    holds it the agent sends a reply. The reply is either refused (409, the composer disabled for
    the reason the ticket then reads) or accepted and held: the provider must not be handed it
    while the phone is away (Evolution would answer with an id and never deliver it: shown sent,
    never received), and it goes out once the phone is back, once."""
    chat = await _chat(client, admin_headers, evolution, db)
    start_worker()
    sprung = store_proxy.stall_next(*status_write(chat.conn_id, "close"), lose=lose)
    closed = await _phone(evolution, chat, "close")
    assert closed["status_code"] == 200, closed
    await asyncio.wait_for(sprung.wait(), timeout=SPRING)
    text = unique("enviada durante a queda ")
    r = await _reply(browser, chat, text)  # the competitor, while the close's write is held
    assert r.status_code == 201 or _refused(r, "connection_disconnected"), r.text
    assert (await settled(direct, closed, within=SETTLE))["status"] == "processed"
    await _follows_the_provider(client, direct, evolution, chat.tenant, chat.conn_id, "close")
    assert await _reply_blocked(client, chat) == "connection_disconnected"
    if r.status_code == 201:  # the worker has met it: held back (retried), or handed over

        async def met() -> bool:
            message_id = str(r.json()["id"])
            moved = await direct.messages.count_documents({"_id": message_id, "status": {"$ne": "pending"}})
            return bool(moved) or await _tried_while_blocked(direct, message_id)

        await wait_for(met, timeout=SETTLE)
    while_away = [s["text"] for s in await _received(evolution, chat.phone)]
    stored = await direct.messages.find_one({"_id": r.json()["id"]}) if r.status_code == 201 else None
    assert text not in while_away, (
        f"the reply was handed to the provider while the phone was away, and reads {stored and stored['status']!r}"
    )

    opened = await _phone(evolution, chat, "open")
    assert (await settled(direct, opened))["status"] == "processed"
    await _follows_the_provider(client, direct, evolution, chat.tenant, chat.conn_id, "open")
    after = await _queued(client, chat, unique("depois da volta "))
    await _sent_once(direct, evolution, chat, ([(str(r.json()["id"]), text)] if r.status_code == 201 else []) + [after])
    if r.status_code != 201:
        assert await direct.messages.count_documents({"ticket_id": chat.ticket_id, "body": {"$regex": text}}) == 0


# --- 3. statuses out of order -------------------------------------------------------------------


@pytest.mark.parametrize("lose", LOSSES)
async def test_a_close_whose_write_is_lost_and_the_open_right_behind_it_end_open(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    start_worker: Callable[[], None],
    lose: Lose,
) -> None:
    """The phone drops and comes right back: while the trap holds the close's status write, the
    open is posted. The close is retried first (one connection's news share a lane, in order), so
    the connection ends "open", as the provider is, and the screens were last told "open"; a reply
    then goes out once."""
    chat = await _chat(client, admin_headers, evolution, db)
    start_worker()
    sprung = store_proxy.stall_next(*status_write(chat.conn_id, "close"), lose=lose)
    closed = await _phone(evolution, chat, "close")
    await asyncio.wait_for(sprung.wait(), timeout=SPRING)
    opened = await _phone(evolution, chat, "open")  # the competitor, while the close's write is held
    for delivery in (closed, opened):
        assert (await settled(direct, delivery, within=SETTLE))["status"] == "processed", delivery
    await _follows_the_provider(client, direct, evolution, chat.tenant, chat.conn_id, "open")
    assert await _reply_blocked(client, chat) is None
    await _sent_once(direct, evolution, chat, [await _queued(client, chat, unique("tudo certo "))])


async def _stale_close_redelivered(
    evolution: FakeEvolution, direct: Any, store_proxy: StoreProxy, chat: Chat
) -> dict[str, Any]:
    """The phone drops: the close's delivery is stored but its acknowledgement is lost (the raw
    insert's answer), so the webhook answers 503 and Evolution will post it again. The stored copy
    is processed; the phone comes back ("open", processed); then Evolution's retry of the close,
    the same body, lands. Returns the retry's outcome once processed."""
    stored_raw = (
        command_marker("insert", "webhook_events_raw"),
        string_element("connection_id", chat.conn_id),
        string_element("event", "connection.update"),
    )
    sprung = store_proxy.stall_next(*stored_raw, lose="reply")
    closed = await _phone(evolution, chat, "close")
    assert sprung.is_set()
    assert closed["status_code"] == 503, closed  # not acknowledged: Evolution retries it later
    assert await _stored_status(direct, chat.conn_id, "close") == "close"  # the stored copy, processed
    (first,) = await direct.webhook_events_raw.find(
        {"connection_id": chat.conn_id, "event": "connection.update", "body": {"$regex": '"close"'}}
    ).to_list(None)
    opened = await _phone(evolution, chat, "open")
    assert (await settled(direct, opened))["status"] == "processed"
    assert await _stored_status(direct, chat.conn_id, "open") == "open"
    again = await evolution.control("POST", "post", {"instance": chat.instance, "raw": first["body"]})
    assert again["status_code"] == 200, again
    return await settled(direct, again)


async def test_a_stale_close_redelivered_after_the_open_does_not_disconnect_the_connection(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
) -> None:
    """Once every delivery is processed, the connection reads what the provider last said ("open"),
    and the agent can reply."""
    chat = await _chat(client, admin_headers, evolution, db)
    outcome = await _stale_close_redelivered(evolution, direct, store_proxy, chat)
    assert outcome["status"] in ("processed", "ignored"), outcome
    await _follows_the_provider(client, direct, evolution, chat.tenant, chat.conn_id, "open", within=3)
    assert await _reply_blocked(client, chat) is None


async def _watch_pass(db: Any, direct: Any, settings: Settings) -> dict[str, list[str]]:
    """One pass of the connection watch (backend/webhooks/watch.py) in a process that has been
    watching every bound connection (found right just now: no catch-up owed)."""
    bound = await direct.whatsapp_connections.find({"provider_created": True}, {"_id": 1}).to_list(None)
    now = utcnow()
    return await watch.check_connections(db, settings, right_at={c["_id"]: now for c in bound})


async def test_the_connection_watch_repairs_what_a_stale_close_left(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    settings: Settings,
    store_proxy: StoreProxy,
    start_worker: Callable[[], None],
) -> None:
    """Whatever the processing of a stale redelivery left, the watch's next pass (every
    CONNECTION_WATCH_SECONDS) records the provider's truth and announces it; replies go out again."""
    chat = await _chat(client, admin_headers, evolution, db)
    await _stale_close_redelivered(evolution, direct, store_proxy, chat)
    checked = await _watch_pass(db, direct, settings)
    assert checked.get(chat.conn_id) == [], checked.get(chat.conn_id)
    await _follows_the_provider(client, direct, evolution, chat.tenant, chat.conn_id, "open")
    assert await _reply_blocked(client, chat) is None
    start_worker()
    await _sent_once(direct, evolution, chat, [await _queued(client, chat, unique("de volta "))])


@pytest.mark.parametrize("lose", ["request", "reply"])
async def test_a_watch_pass_that_loses_its_status_write_is_completed_by_the_next(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    settings: Settings,
    store_proxy: StoreProxy,
    start_worker: Callable[[], None],
    lose: Lose,
) -> None:
    """The phone dropped (recorded) and came back, but its CONNECTION_UPDATE never arrived: a reply
    queued meanwhile is held. The watch asks the provider and records "open", and that write is
    lost. That pass or the next must complete it: the connection "open" in the store and on the screens,
    and the held reply sent once."""
    chat = await _chat(client, admin_headers, evolution, db)
    queued = await _queued(client, chat, unique("na fila "))
    dropped = await _phone(evolution, chat, "close")
    assert (await settled(direct, dropped))["status"] == "processed"
    assert (await _phone(evolution, chat, "open", post=False))["posted"] is False
    start_worker()
    assert await wait_for(lambda: _tried_while_blocked(direct, queued[0]), timeout=SETTLE)
    sprung = store_proxy.stall_next(*status_write(chat.conn_id, "open"), lose=lose)
    first = await _watch_pass(db, direct, settings)
    assert sprung.is_set()
    # request: its check failed (logged, counted, asked again next period); reply: the write landed,
    # and the check, reading the connection back, found it stored and announced it.
    assert (chat.conn_id in first) == (lose == "reply"), first
    second = await _watch_pass(db, direct, settings)
    assert second.get(chat.conn_id) == [], second.get(chat.conn_id)
    await _follows_the_provider(client, direct, evolution, chat.tenant, chat.conn_id, "open")
    await _sent_once(direct, evolution, chat, [queued])


# --- 4. deactivation and reactivation -----------------------------------------------------------


async def _patch(http: httpx.AsyncClient, tenant: Tenant, conn_id: str, body: dict[str, Any]) -> httpx.Response:
    return await http.patch(f"{CONNS}/{conn_id}", json=body, headers=tenant.headers)


async def _held_patch(
    browser: httpx.AsyncClient, store_proxy: StoreProxy, chat: Chat, lose: Lose
) -> tuple[asyncio.Task[httpx.Response], asyncio.Event]:
    """The owner clicks "deactivate" and its write is trapped; returns the request (in flight)
    once the trap holds the write."""
    sprung = store_proxy.stall_next(*activation_write(chat.conn_id, False), lose=lose)
    patch = asyncio.create_task(_patch(browser, chat.tenant, chat.conn_id, {"active": False}))
    await asyncio.wait_for(sprung.wait(), timeout=SPRING)
    return patch, sprung


@pytest.mark.parametrize("lose", LOSSES)
async def test_deactivation_whose_write_is_lost_neither_loses_nor_doubles_the_queued_replies(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    start_worker: Callable[[], None],
    lose: Lose,
) -> None:
    """Two replies are queued; the owner deactivates the connection and the write is lost while
    the worker takes the replies; the owner clicks again, then reactivates. At each step the
    ticket's `reply_blocked` says what the store holds; each queued reply ends settled — "sent",
    taken once by the provider while the connection was active, or "failed" with the reason,
    never taken — announced as such, never left pending; a reply after the reactivation goes once."""
    chat = await _chat(client, admin_headers, evolution, db)
    queued = [await _queued(client, chat, f"{n}: {unique('resposta ')}") for n in ("primeira", "segunda")]
    assert await _reply_blocked(client, chat) is None
    patch, _ = await _held_patch(browser, store_proxy, chat, lose)
    start_worker()  # the competitor: the worker takes the queue while the deactivation is held
    r = await patch
    assert unanswered(r), r.text  # the owner is told to retry
    active = (await _stored(direct, chat.conn_id))["active"]
    assert active is (lose == "request"), active  # what the lost write did
    assert await _reply_blocked(client, chat) == (None if active else "connection_inactive")

    r = await _patch(browser, chat.tenant, chat.conn_id, {"active": False})  # the owner clicks again
    assert r.status_code == 200 and r.json()["active"] is False, r.text
    assert (await _stored(direct, chat.conn_id))["active"] is False
    assert await _reply_blocked(client, chat) == "connection_inactive"
    assert _refused(await _reply(client, chat, "não pode ir"), "connection_inactive")
    outcomes = await last_within(lambda: _settled(direct, [m for m, _ in queued]), timeout=SETTLE)
    assert outcomes, "a reply queued before the deactivation is still pending"

    r = await _patch(browser, chat.tenant, chat.conn_id, {"active": True})
    assert r.status_code == 200 and r.json()["active"] is True, r.text
    assert await _reply_blocked(client, chat) is None
    after = await _queued(client, chat, unique("reativada "))
    await _sent_once(direct, evolution, chat, [after])

    received = await _received(evolution, chat.phone)
    texts = [s["text"] for s in received]
    for message, (message_id, text) in zip(outcomes, queued, strict=True):
        assert message["status"] in ("sent", "failed"), message
        if message["status"] == "sent":
            assert texts.count(text) == 1, (message, texts)
            (taken,) = [s for s in received if s["text"] == text]
            assert message["provider_message_id"] == taken["key_id"], (message, taken)
        else:
            assert text not in texts, f"{text!r} reads failed but the provider took it"
            assert "inactive" in str(message.get("failure_reason")), message
        query = {"type": "message.status", "data.message_id": message_id, "data.status": message["status"]}
        assert await direct.tenant_events.count_documents(query) >= 1, f"{message_id} never shown {message['status']}"
    if lose == "reply":  # the deactivation was stored before the worker looked: nothing went
        assert [m["status"] for m in outcomes] == ["failed", "failed"], outcomes


async def _client_writes(evolution: FakeEvolution, chat: Chat, phone: str, text: str) -> dict[str, Any]:
    result = await evolution.inbound(chat.instance, phone, text)
    assert result["status_code"] == 200, result
    return result


@pytest.mark.parametrize("lose", LOSSES)
async def test_client_messages_on_a_connection_being_deactivated_are_filed_and_shown(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    lose: Lose,
) -> None:
    """While the owner's deactivation write is held, the ticket's client and a new client write;
    once it is stored (clicked again), both write again. A deactivated connection may still be
    connected at the provider: every message is stored once, in its client's one open ticket, in
    order, and shown in the thread and the queue; the tickets read `reply_blocked`
    "connection_inactive"."""
    chat = await _chat(client, admin_headers, evolution, db)
    newcomer = unique_phone()
    patch, _ = await _held_patch(browser, store_proxy, chat, lose)
    during = [
        await _client_writes(evolution, chat, chat.phone, unique("durante ")),
        await _client_writes(evolution, chat, newcomer, unique("olá, durante ")),
    ]
    assert unanswered(await patch)
    r = await _patch(browser, chat.tenant, chat.conn_id, {"active": False})
    assert r.status_code == 200 and r.json()["active"] is False, r.text
    after = [
        await _client_writes(evolution, chat, chat.phone, unique("depois ")),
        await _client_writes(evolution, chat, newcomer, unique("alguém aí? ")),
    ]
    for delivery in during + after:
        assert (await settled(direct, delivery, within=SETTLE))["status"] == "processed", delivery

    by_phone = {chat.phone: [during[0], after[0]], newcomer: [during[1], after[1]]}
    for phone, deliveries in by_phone.items():
        customer = await direct.users.find_one({"reseller_id": chat.tenant.id, "phone": phone})
        assert customer is not None, phone
        tickets = await direct.tickets.find({"client_id": customer["_id"]}).to_list(None)
        assert len(tickets) == 1 and tickets[0]["status"] != "finalizado", tickets
        ticket_id = tickets[0]["_id"]
        if phone == chat.phone:
            assert ticket_id == chat.ticket_id
        r = await client.get(f"{API}/tickets/{ticket_id}/messages", headers=chat.tenant.headers)
        assert r.status_code == 200, r.text
        shown = [m["body"] for m in r.json()["items"] if m["direction"] == "in"]
        keys = [d["key_id"] for d in deliveries]
        stored = await direct.messages.find({"ticket_id": ticket_id, "provider_message_id": {"$in": keys}}).to_list(
            None
        )
        assert sorted(m["provider_message_id"] for m in stored) == sorted(keys), stored  # each once
        texts = [m["body"] for m in sorted(stored, key=lambda m: keys.index(m["provider_message_id"]))]
        assert shown[-2:] == texts, (shown, texts)  # in the thread, in the order written
        r = await client.get(f"{API}/tickets/{ticket_id}", headers=chat.tenant.headers)
        assert r.status_code == 200 and r.json()["reply_blocked"] == "connection_inactive", r.text
    r = await client.get(f"{API}/tickets", params={"status": "espera"}, headers=chat.tenant.headers)
    assert r.status_code == 200, r.text
    newcomer_user = await direct.users.find_one({"reseller_id": chat.tenant.id, "phone": newcomer})
    assert newcomer_user["_id"] in [t["client_id"] for t in r.json()["items"]], r.json()


# --- 5. QR codes and the instance's binding -----------------------------------------------------


def _new_connection(tenant: Tenant) -> dict[str, Any]:
    return {
        "name": unique("Loja "),
        "provider": "evolution",
        "instance_name": unique("inst-"),
        "default_department_id": tenant.departments[0]["id"],
    }


async def _qr_within_clicks(
    browser: httpx.AsyncClient, tenant: Tenant, conn_id: str, clicks: int = 3
) -> httpx.Response:
    """The owner asks for the QR code until one comes (a 503 says "retry"), `clicks` times at most."""
    r = await browser.get(f"{CONNS}/{conn_id}/qrcode", headers=tenant.headers)
    for _ in range(clicks - 1):
        if r.status_code == 200:
            break
        r = await browser.get(f"{CONNS}/{conn_id}/qrcode", headers=tenant.headers)
    return r


async def _pairs_and_connects(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    direct: Any,
    evolution: FakeEvolution,
    settings: Settings,
    tenant: Tenant,
    conn_id: str,
    *,
    announced: bool = False,
) -> None:
    """A repeated QR code request shows a QR code (`announced`: and the tenant's screens were told
    the status and code it recorded); the provider holds the instance with our webhook (URL and
    token), as the store says it is bound; the phone scans it and the connection reads "open"
    everywhere; a client's message then reaches the tenant."""
    r = await _qr_within_clicks(browser, tenant, conn_id)
    assert r.status_code == 200, (
        f"no QR code after 3 clicks: {r.status_code} {r.text}; stored {await _stored(direct, conn_id)}"
    )
    assert r.json()["status"] == "connecting" and str(r.json()["qr_code"]).startswith("data:image/png"), r.json()
    stored = await _stored(direct, conn_id)
    instance = await _provider(evolution, stored["instance_name"])
    # The instance's own token is kept when the create's answer was read; nothing uses it (every
    # call authenticates with the server's API key), and an instance taken over has none stored.
    token = stored.get("provider_token")
    assert stored["provider_created"] is True and token in (instance["token"], None), (stored, instance)
    assert instance["webhook_url"] == f"{settings.PUBLIC_BASE_URL}/api/v1/webhooks/whatsapp/{conn_id}", instance
    assert instance["webhook_headers"] == {"X-Webhook-Token": stored["webhook_token"]}, instance
    assert set(instance["events"]) >= {"MESSAGES_UPSERT", "CONNECTION_UPDATE", "QRCODE_UPDATED"}, instance
    if announced:
        shown = await _announced(direct, tenant.id, conn_id)
        last = (shown[-1]["status"], shown[-1]["qr_code"]) if shown else None
        assert last == (stored["status"], stored["qr_code"]), (
            f"the store says {stored['status']!r} with a QR code, the screens were last told {last and last[0]!r}"
        )
    opened = await _phone(evolution, stored, "open")
    assert (await settled(direct, opened))["status"] == "processed", opened
    await _follows_the_provider(client, direct, evolution, tenant, conn_id, "open")
    hello = await evolution.inbound(stored["instance_name"], unique_phone(), unique("oi "))
    assert (await settled(direct, hello))["status"] == "processed", hello


@pytest.mark.parametrize("lose", ["request", "reply"])
async def test_a_connection_whose_binding_write_is_lost_at_creation_still_gets_a_qr_code(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    direct: Any,
    settings: Settings,
    store_proxy: StoreProxy,
    lose: Lose,
) -> None:
    """The owner creates a connection: it is stored, the provider creates the instance with our
    webhook, and the write recording that is lost (the owner gets 503). The owner finds the
    connection in the list (one, not two: creating it again is refused) and asks for its QR code."""
    tenant = await make_tenant(client, admin_headers, agents=0)
    body = _new_connection(tenant)
    bind = (command_marker("update", "whatsapp_connections"), bool_element("provider_created", True))
    sprung = store_proxy.stall_next(*bind, lose=lose)
    r = await browser.post(CONNS, json=body, headers=tenant.headers)
    assert sprung.is_set()
    assert unanswered(r), r.text
    assert (await _provider(evolution, body["instance_name"]))["webhook_url"]  # the instance exists there
    again = await browser.post(CONNS, json=body, headers=tenant.headers)  # the owner clicks "create" again
    assert again.status_code in (201, 409), again.text
    listed = (await client.get(CONNS, headers=tenant.headers)).json()["items"]
    mine = [c for c in listed if c["instance_name"] == body["instance_name"]]
    assert len(mine) == 1, listed
    await _pairs_and_connects(client, browser, direct, evolution, settings, tenant, mine[0]["id"])


@pytest.mark.parametrize(
    ("write", "lose"),
    [
        ("status", "request"),
        ("status", "reply"),
        ("webhook events", "request"),
        ("webhook events", "reply"),
    ],
)
async def test_a_qr_code_request_whose_write_is_lost_gets_a_qr_code_when_repeated(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    direct: Any,
    settings: Settings,
    store_proxy: StoreProxy,
    write: str,
    lose: Lose,
) -> None:
    """A connection whose phone logged out ("close") is paired again: the QR code request records
    "connecting" with the code (`status`), or first sets the instance's webhook to today's events
    and records them (`webhook events`: an instance made by an older version), and that write is
    lost. A repeated request shows a QR code, nothing is left half-bound, the screens are told,
    and the phone connects."""
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    closed = await _phone(evolution, conn, "close")
    assert (await settled(direct, closed))["status"] == "processed"
    await _follows_the_provider(client, direct, evolution, tenant, conn["id"], "close")
    if write == "status":
        markers = status_write(conn["id"], "connecting")
    else:
        older = ["MESSAGES_UPSERT", "MESSAGES_UPDATE", "CONNECTION_UPDATE", "QRCODE_UPDATED"]
        await direct.whatsapp_connections.update_one({"_id": conn["id"]}, {"$set": {"webhook_events": older}})
        await evolution.control("POST", f"instances/{conn['instance_name']}/events", {"events": older})
        markers = (
            command_marker("update", "whatsapp_connections"),
            string_element("_id", conn["id"]),
            b"\x04webhook_events\x00",
        )
    sprung = store_proxy.stall_next(*markers, lose=lose)
    r = await browser.get(f"{CONNS}/{conn['id']}/qrcode", headers=tenant.headers)
    assert sprung.is_set()
    if (write, lose) == ("status", "reply"):  # the write landed: read back, announced, answered
        assert r.status_code == 200 and r.json()["status"] == "connecting", r.text
    else:
        assert unanswered(r), r.text
    await _pairs_and_connects(client, browser, direct, evolution, settings, tenant, conn["id"], announced=True)
    stored = await _stored(direct, conn["id"])
    instance = await _provider(evolution, conn["instance_name"])
    assert stored["webhook_events"] is None or set(stored["webhook_events"]) <= set(instance["events"]), (
        stored["webhook_events"],
        instance["events"],
    )


@pytest.mark.parametrize("lose", LOSSES)
async def test_a_new_qr_code_from_the_provider_whose_write_is_lost_is_recorded_and_shown(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    direct: Any,
    store_proxy: StoreProxy,
    lose: Lose,
) -> None:
    """A logged-out connection's instance posts a new QR code (qrcode.updated) and the write
    recording it is lost: the delivery is retried, the connection reads "connecting" with the code
    in the store, the API and on the tenant's screens; the phone then scans it and connects."""
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    closed = await _phone(evolution, conn, "close")
    assert (await settled(direct, closed))["status"] == "processed"
    sprung = store_proxy.stall_next(*status_write(conn["id"], "connecting"), lose=lose)
    posted = await evolution.control("POST", "qrcode", {"instance": conn["instance_name"]})
    assert posted["status_code"] == 200, posted
    await asyncio.wait_for(sprung.wait(), timeout=SPRING)
    assert (await settled(direct, posted, within=SETTLE))["status"] == "processed"
    assert await _stored_status(direct, conn["id"], "connecting") == "connecting"
    stored = await _stored(direct, conn["id"])
    assert str(stored["qr_code"]).startswith("data:image/png"), stored
    r = await client.get(f"{CONNS}/{conn['id']}", headers=tenant.headers)
    assert r.status_code == 200 and (r.json()["status"], r.json()["qr_code"]) == ("connecting", stored["qr_code"])
    shown = await _announced(direct, tenant.id, conn["id"])
    assert shown and (shown[-1]["status"], shown[-1]["qr_code"]) == ("connecting", stored["qr_code"]), shown
    opened = await _phone(evolution, conn, "open")
    assert (await settled(direct, opened))["status"] == "processed"
    await _follows_the_provider(client, direct, evolution, tenant, conn["id"], "open")
