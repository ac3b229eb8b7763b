"""The realtime feed and the unread counts while the store loses one of their writes.

What an agent sees must hold whatever write was lost: every stored message reaches every open
screen (live, or through the catch-up of a socket that reconnects with since=<last seq>), each
feed record once, in the conversation's order, and the unread badge a screen keeps from its
frames (as the frontend keeps it: frontend/src/realtime/cache.ts) equals the count the API
answers, which equals the client messages after the agent's last read.

Topology: the backend under test ("app") reaches the store through a relay (tests/tcp_relay.py)
that can lose a chosen write (`lose="request"`: it never runs; `lose="reply"`: it runs and its
answer never comes back; MONGO_SOCKET_TIMEOUT_MS makes the caller give up after 1.5 s). It runs the
webhook processor, the outbound worker, and a websocket endpoint; the fake Evolution API posts
the client's WhatsApp messages to it. A second backend process ("peer": direct store, Redis
through a relay of its own) holds screens fed over the Redis bus, and makes the competing writes
of "another process behind the balancer".

Competitors are injected deterministically with a gate (`GateRelay.gate`): the first attempt of
the chosen write is lost, and every later attempt of it (the product's own retry) waits at the
relay until the test `release()`s the gate, so whatever the test does in between happens strictly
after the loss and strictly before the retry (a retry whose caller gave up waiting meanwhile is
dropped, never run late)."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import pytest

from backend.core.tenancy import Actor
from backend.core.tuning import APPEND_TRANSIENT_RETRIES
from backend.messages.service import keyed_reply_id, message_id_for
from backend.realtime.audience import may_receive
from backend.unread.repository import marker_prefix
from tests.factories import Tenant, make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, app, backend_port, evolution, make_connection, settings, wait_for
from tests.realtime.conftest import Server, Socket, bearer, open_socket, start_server
from tests.tcp_relay import Lose, StoreProxy, TcpRelay, command_marker, relayed, string_element, unanswered
from tests.webhooks.evolution_shapes import key_id
from tests.webhooks.helpers import raw_id_of, settled

__all__ = ["app", "backend_port", "evolution", "settings"]

API = "/api/v1"
WAIT = 45.0  # a bound only (a 2-core machine running other suites): every wait ends as soon as it can
LOSSES: list[Lose] = ["request", "reply"]

# The peer: fed by the Redis bus only (its tail poll an hour apart, so what reaches its sockets
# came through Redis, or through a new subscription after a silent one); it runs no background
# work, so every write it makes is one a test asked for.
PEER_OPTIONS = {
    "REALTIME_POLL_SECONDS": "360",
    "REALTIME_BUS_PING_SECONDS": "0.5",
    "REALTIME_RECHECK_SECONDS": "3600",
    "OUTBOUND_WORKER_ENABLED": "false",
    "WEBHOOK_PROCESSOR_ENABLED": "false",
    "CONNECTION_WATCH_ENABLED": "false",
    "TICKET_SWEEP_ENABLED": "false",
    "SCHEDULED_MESSAGES_ENABLED": "false",
    "MEDIA_FETCH_ENABLED": "false",
}


# -- the relay's gate ------------------------------------------------------------------------------

Retries = Literal["wait", "lose"]


@dataclass
class Gate:
    """One write held at the relay: its first attempt lost (`lose`), then every later attempt either
    waits for `release()` (`retries="wait"`) or is lost as well until then (`"lose"`: the store
    away for as long as the test keeps the gate shut)."""

    markers: tuple[bytes, ...]
    lose: Lose
    retries: Retries
    sprung: asyncio.Event = field(default_factory=asyncio.Event)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    attempts: int = 0

    def release(self) -> None:
        self.opened.set()

    async def caught(self) -> None:
        """Waits until the gate caught the write's first attempt."""
        try:
            await asyncio.wait_for(self.sprung.wait(), WAIT)
        except TimeoutError:
            raise AssertionError(f"the write {self.markers!r} never reached the store") from None


class GateRelay(StoreProxy):
    """The store's relay (StoreProxy's URL and links) whose requests pass the gates above; it
    honours gates only, not StoreProxy's `stall_next` traps."""

    def __init__(self, mongo_url: str) -> None:
        super().__init__(mongo_url)
        self.gates: list[Gate] = []

    def gate(self, *markers: bytes, lose: Lose, retries: Retries = "wait") -> Gate:
        gate = Gate(markers, lose, retries)
        self.gates.append(gate)
        return gate

    def open_all(self) -> None:
        for gate in self.gates:
            gate.release()
        self.gates.clear()

    async def _requests(self, reader: asyncio.StreamReader, out: asyncio.StreamWriter, link: Any) -> None:
        while chunk := await reader.read(65536):
            if link.stalled:
                continue  # a dead connection: nothing more reaches the store
            gate = next((g for g in self.gates if not g.opened.is_set() and all(m in chunk for m in g.markers)), None)
            if gate is not None:
                gate.attempts += 1
                first = not gate.sprung.is_set()
                gate.sprung.set()
                if first or gate.retries == "lose":
                    link.stalled = True
                    if gate.lose == "reply":
                        out.write(chunk)  # it runs; its answer goes nowhere
                        with contextlib.suppress(ConnectionError):
                            await out.drain()
                    continue
                if not await _opened_before_hangup(gate, reader):
                    return  # its caller gave up waiting: this attempt never reaches the store
            out.write(chunk)
            await out.drain()


async def _opened_before_hangup(gate: Gate, reader: asyncio.StreamReader) -> bool:
    """Holds a retry until the gate opens; False when its caller closed the connection first."""
    opened = asyncio.ensure_future(gate.opened.wait())
    hangup = asyncio.ensure_future(reader.read(1))
    try:
        done, _ = await asyncio.wait({opened, hangup}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in (opened, hangup):
            waiting.cancel()
    if hangup in done and not hangup.cancelled():
        assert hangup.result() == b"", "a store client sent a request before its previous one was answered"
        return False
    return True


@pytest.fixture(scope="module")
async def store_relay(mongo_url: str) -> AsyncIterator[GateRelay]:
    relay = GateRelay(mongo_url)
    await relay.start()
    try:
        yield relay
    finally:
        relay.open_all()
        await relay.close()


@pytest.fixture
async def gates(store_relay: GateRelay) -> AsyncIterator[GateRelay]:
    """The module's relay for one test: whatever it left shut is opened after it."""
    yield store_relay
    store_relay.open_all()


@pytest.fixture(scope="module")
def settings_overrides(store_relay: GateRelay, redis_url: str) -> dict[str, Any]:
    return {
        **relayed(store_relay),
        "WEBHOOK_BACKOFF_BASE_SECONDS": 0.1,
        "REDIS_URL": redis_url,
        "REALTIME_POLL_SECONDS": 0.5,
    }


@pytest.fixture(scope="module")
async def redis_relay(redis_url: str) -> AsyncIterator[TcpRelay]:
    target = urlsplit(redis_url)
    assert target.hostname is not None and target.port is not None
    relay = TcpRelay(target.hostname, target.port)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.close()


@pytest.fixture(scope="module")
async def peer(
    app: Any,
    mongo_url: str,
    db_name: str,
    redis_relay: TcpRelay,
    evolution: FakeEvolution,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Server]:
    """Another backend process on the same database; its Redis through `redis_relay`."""
    workdir = tmp_path_factory.mktemp("peer")
    options = {
        **PEER_OPTIONS,
        "REDIS_URL": f"redis://127.0.0.1:{redis_relay.port}/0",
        "EVOLUTION_BASE_URL": evolution.url,
        "EVOLUTION_API_KEY": evolution.api_key,
    }
    loop = asyncio.get_running_loop()
    # Started off the loop: the Redis relay serves the process's connections from this loop meanwhile.
    server = await loop.run_in_executor(None, lambda: start_server(mongo_url, db_name, workdir, **options))
    try:
        yield server
    finally:
        await loop.run_in_executor(None, server.stop)


@pytest.fixture(scope="module")
async def peer_http(peer: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=peer.http, timeout=60) as c:
        yield c


# -- a conversation -------------------------------------------------------------------------------


@dataclass
class Sent:
    """A client's WhatsApp message: its text, its id in IAZE (derived from the provider's), its
    webhook's acknowledgement once posted."""

    text: str
    key: str
    id: str
    ack: dict[str, Any] | None = None


@dataclass
class Desk:
    """A client's open conversation with a company of its own, held by the company's one agent,
    who has read it (unread 0). The company is fresh, so its feed is this test's alone."""

    tenant: Tenant
    conn: dict[str, Any]
    phone: str
    ticket_id: str
    opening: Sent
    agent: dict[str, Any]
    actor: Actor
    owner: Actor

    @property
    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = self.agent["headers"]
        return headers

    def message(self, text: str) -> Sent:
        key = key_id()
        return Sent(f"{text} {uuid.uuid4().hex[:6]}", key, message_id_for(self.conn["id"], key))


async def _say(evolution: FakeEvolution, desk_or_conn: Desk | dict[str, Any], phone: str, sent: Sent) -> Sent:
    conn = desk_or_conn.conn if isinstance(desk_or_conn, Desk) else desk_or_conn
    result = await evolution.inbound(conn["instance_name"], phone, sent.text, key_id=sent.key)
    assert result.get("status_code") == 200, result
    sent.ack = result
    return sent


async def say(evolution: FakeEvolution, desk: Desk, sent: Sent) -> Sent:
    """The client writes `sent` on WhatsApp; Evolution posts it to the app's webhook."""
    return await _say(evolution, desk, desk.phone, sent)


async def processed(direct: Any, *sent: Sent) -> None:
    """Every delivery processed (after any retry the processor made)."""
    for one in sent:
        assert one.ack is not None
        raw = await settled(direct, one.ack, within=WAIT)
        assert raw["status"] == "processed", raw


DeskMaker = Callable[[], Awaitable[Desk]]


@pytest.fixture
def desks(client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, direct: Any) -> DeskMaker:
    async def make() -> Desk:
        tenant = await make_tenant(client, admin_headers, agents=1)
        conn = await make_connection(client, tenant, evolution)
        phone = unique_phone()
        key = key_id()
        opening = await _say(
            evolution, conn, phone, Sent("olá, preciso de ajuda", key, message_id_for(conn["id"], key))
        )
        await processed(direct, opening)
        ticket_id = str((await direct.messages.find_one({"_id": opening.id}))["ticket_id"])
        agent = tenant.agents[0]
        r = await client.post(f"{API}/tickets/{ticket_id}/assume", headers=agent["headers"])
        assert r.status_code == 200, r.text
        r = await client.post(f"{API}/tickets/{ticket_id}/read", headers=agent["headers"])
        assert r.status_code == 200 and r.json()["unread_count"] == 0, r.text
        departments = tuple(str(d["id"]) for d in tenant.departments)
        actor = Actor(id=str(agent["id"]), role="agent", name="", reseller_id=tenant.id, department_ids=departments)
        owner = Actor(id=tenant.owner_id, role="reseller", name="", reseller_id=tenant.id)
        return Desk(tenant, conn, phone, ticket_id, opening, agent, actor, owner)

    return make


# -- what the store holds ---------------------------------------------------------------------------


def feed_record(message_id: str) -> tuple[bytes, ...]:
    """The wire bytes of the insert of a `message.created` record naming the message."""
    return (
        command_marker("insert", "tenant_events"),
        string_element("type", "message.created"),
        string_element("id", message_id),
    )


async def announcements(direct: Any, message_id: str) -> int:
    return int(await direct.tenant_events.count_documents({"type": "message.created", "message.id": message_id}))


async def receivable(direct: Any, actor: Actor, after: int) -> list[int]:
    """The seqs of the tenant's stored records past `after` that `actor` may receive (the audience rule)."""
    docs = await direct.tenant_events.find({"reseller_id": actor.reseller_id}).to_list(None)
    return sorted(int(d["seq"]) for d in docs if int(d["seq"]) > after and may_receive(actor, d))


async def thread_ids(direct: Any, ticket_id: str) -> set[str]:
    return {str(m["_id"]) for m in await direct.messages.find({"ticket_id": ticket_id}).to_list(None)}


async def unread_shown(http: httpx.AsyncClient, headers: dict[str, str], ticket_id: str) -> tuple[int, int]:
    """The unread count the API shows the user: on the ticket, and on its row in the ticket list."""
    r = await http.get(f"{API}/tickets/{ticket_id}", headers=headers)
    assert r.status_code == 200, r.text
    one = int(r.json()["unread_count"])
    r = await http.get(f"{API}/tickets", params={"limit": 100}, headers=headers)
    assert r.status_code == 200, r.text
    rows = [t for t in r.json()["items"] if t["id"] == ticket_id]
    assert len(rows) == 1, f"ticket {ticket_id} listed {len(rows)} times: {r.json()['items']}"
    return one, int(rows[0]["unread_count"])


# -- an open screen ------------------------------------------------------------------------------


@dataclass
class Screen:
    """One open screen of a user: a websocket to one backend process, kept as the frontend keeps it.
    socket.ts: a frame at or below the last seq seen is dropped (noted in `repeated`: the hub must
    never send a seq twice); a reconnect asks since=<last seq>. cache.ts: a client message counts
    once per ticket and message id (+1 on the ticket's badge), unless the reader's own `ticket.read`
    counted through its inbound number already; that `ticket.read` sets the badge."""

    label: str
    url: str
    actor: Actor
    socket: Socket | None = None
    first_seq: int = 0
    last_seq: int = 0
    connections: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    repeated: list[int] = field(default_factory=list)
    resyncs: list[dict[str, Any]] = field(default_factory=list)
    badges: dict[str, int] = field(default_factory=dict)
    counted: set[tuple[str, str]] = field(default_factory=set)
    through: dict[str, int] = field(default_factory=dict)  # inbound number a ticket.read counted through
    before: set[str] = field(default_factory=set)  # the thread's messages when the screen opened

    async def open(self, since: int | None = None) -> dict[str, Any]:
        self.socket = await open_socket(self.url if since is None else f"{self.url}&since={since}")
        hello = await self.socket.next(WAIT)
        assert hello["type"] == "hello", (self.label, hello)
        if self.connections == 0:  # socket.ts: a first connection goes on from its hello's seq, or `since`
            self.first_seq = self.last_seq = int(hello["seq"]) if since is None else since
        self.connections += 1
        return hello

    async def reconnect(self) -> dict[str, Any]:
        """The socket drops; the screen comes back asking for what it missed."""
        assert self.socket is not None
        await self.drain(0.2)  # what came in before the drop, the browser had
        await self.socket.close()
        return await self.open(since=self.last_seq)

    def apply(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "resync":
            self.resyncs.append(frame)
            return
        if frame["type"] != "event":
            return
        seq = int(frame["seq"])
        if seq <= self.last_seq:
            self.repeated.append(seq)
            return
        self.last_seq = seq
        self.events.append(frame)
        ticket, message = frame.get("ticket") or {}, frame.get("message")
        client_message = message is not None and (message["direction"], message["sender_type"]) == ("in", "client")
        if frame["event"] == "message.created" and message is not None and client_message:
            key = (str(message["ticket_id"]), str(message["id"]))
            number = (frame.get("data") or {}).get("inbound_n")
            covered = number is not None and number <= self.through.get(key[0], 0)
            if key not in self.counted and not covered:
                self.counted.add(key)
                self.badges[key[0]] = self.badges.get(key[0], 0) + 1
        if frame["event"] == "ticket.read" and ticket.get("unread_count") is not None:
            self.badges[str(ticket["id"])] = int(ticket["unread_count"])
            through = (frame.get("data") or {}).get("inbound_through")
            if through is not None:
                self.through[str(ticket["id"])] = max(through, self.through.get(str(ticket["id"]), 0))

    async def read_until(self, done: Callable[["Screen"], bool], *, within: float = WAIT) -> None:
        assert self.socket is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not done(self):
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"{self.label}: still waiting after {within}s; got seqs {self.seqs}")
            try:
                self.apply(await self.socket.next(left))
            except TimeoutError:
                continue

    async def drain(self, quiet: float = 0.3) -> None:
        assert self.socket is not None
        with contextlib.suppress(TimeoutError):
            while True:
                self.apply(await self.socket.next(quiet))

    @property
    def seqs(self) -> list[int]:
        return [int(e["seq"]) for e in self.events]

    def created(self) -> list[str]:
        """Message ids of every `message.created` frame, in arrival order (repeats included)."""
        return [str(e["message"]["id"]) for e in self.events if e["event"] == "message.created" and e["message"]]

    def first_seen(self) -> list[str]:
        return list(dict.fromkeys(self.created()))

    async def caught_up(self, direct: Any) -> None:
        """Reads until the screen got every record stored so far that its user may receive, and
        checks it got exactly those: none skipped, none twice, in seq order."""
        wanted = await receivable(direct, self.actor, self.first_seq)
        if wanted:
            await self.read_until(lambda s: s.last_seq >= wanted[-1])
        await self.drain()
        top = wanted[-1] if wanted else self.first_seq
        got = [s for s in self.seqs if s <= top]
        missing = sorted(set(wanted) - set(got))
        assert got == wanted, f"{self.label}: got seqs {got}, stored for it {wanted} (missing {missing})"
        assert not self.repeated, f"{self.label}: the server sent seqs {self.repeated} again"
        assert not self.resyncs, f"{self.label}: told to resync: {self.resyncs}"


@pytest.fixture
async def screens() -> AsyncIterator[list[Screen]]:
    opened: list[Screen] = []
    yield opened
    for screen in opened:
        if screen.socket is not None:
            with contextlib.suppress(Exception):
                await screen.socket.close()


async def watch(
    screens: list[Screen],
    direct: Any,
    desk: Desk,
    http: httpx.AsyncClient,
    server: str,
    *,
    owner: bool = False,
) -> Screen:
    """A screen of the desk's agent (or the company's owner) on the backend at `server`
    (host:port), with the ticket's badge as the API shows it when the screen opens."""
    actor = desk.owner if owner else desk.actor
    headers = desk.tenant.headers if owner else desk.headers
    label = f"{'owner' if owner else 'agent'}@{server}"
    screen = Screen(label, f"ws://{server}{API}/ws?token={bearer(headers)}", actor)
    screens.append(screen)
    await screen.open()
    screen.badges[desk.ticket_id] = (await unread_shown(http, headers, desk.ticket_id))[0]
    screen.before = await thread_ids(direct, desk.ticket_id)
    return screen


Views = Callable[[Desk], Awaitable[list[Screen]]]


@pytest.fixture
def views(screens: list[Screen], direct: Any, browser: httpx.AsyncClient, backend_port: int, peer: Server) -> Views:
    """Opens the agent's screens on a desk: one on the app (its own fan-out), one on the peer (over Redis)."""

    async def open_views(desk: Desk) -> list[Screen]:
        here = await watch(screens, direct, desk, browser, f"127.0.0.1:{backend_port}")
        there = await watch(screens, direct, desk, browser, f"127.0.0.1:{peer.port}")
        return [here, there]

    return open_views


async def check_screens(
    direct: Any,
    browser: httpx.AsyncClient,
    desk: Desk,
    shown: Iterable[Screen],
    *,
    unread: int,
    order: list[tuple[str, str]],
    headers: dict[str, str] | None = None,
) -> None:
    """Every open screen got every record meant for it exactly once, every message stored in the
    ticket since it opened (each as often as the feed announced it), the messages in `order`
    (pairs: the first acknowledged before the second began) first seen in that order; and the API
    and each screen's badge show `unread`."""
    headers = headers if headers is not None else desk.headers
    assert await unread_shown(browser, headers, desk.ticket_id) == (unread, unread)
    thread = await thread_ids(direct, desk.ticket_id)
    for screen in shown:
        await screen.caught_up(direct)
        seen = screen.first_seen()
        for message_id in sorted(thread - screen.before):
            assert message_id in seen, f"{screen.label}: message {message_id} stored, never shown (got {seen})"
            times = screen.created().count(message_id)
            assert times == await announcements(direct, message_id), (screen.label, message_id, times)
        for first, second in order:
            assert seen.index(first) < seen.index(second), f"{screen.label}: {second} shown before {first}: {seen}"
        badge = screen.badges.get(desk.ticket_id)
        assert badge == unread, f"{screen.label}: the badge shows {badge} unread, the API {unread}"


async def reply(http: httpx.AsyncClient, desk: Desk, text: str, key: str | None = None) -> str:
    key = key or uuid.uuid4().hex
    r = await http.post(
        f"{API}/tickets/{desk.ticket_id}/messages",
        json={"body": text},
        headers={**desk.headers, "Idempotency-Key": key},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


# -- the tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("lose", LOSSES)
async def test_a_client_message_whose_feed_record_is_lost_reaches_every_open_screen(
    desks: DeskMaker,
    views: Views,
    gates: GateRelay,
    evolution: FakeEvolution,
    direct: Any,
    browser: httpx.AsyncClient,
    peer_http: httpx.AsyncClient,
    lose: Lose,
) -> None:
    """B's `message.created` is lost; before its retry, another process announces the agent's
    reply (taking the seq B's record was trying for) and the client's next message C arrives."""
    desk = await desks()
    shown = await views(desk)
    b, c = desk.message("o boleto venceu"), desk.message("consegue mandar outro?")
    gate = gates.gate(*feed_record(b.id), lose=lose)
    await say(evolution, desk, b)
    await gate.caught()
    answer = await reply(peer_http, desk, "vou verificar")
    await say(evolution, desk, c)
    gate.release()
    await processed(direct, b, c)
    assert await announcements(direct, b.id) >= 1, "B stored and processed, never announced"
    await check_screens(direct, browser, desk, shown, unread=2, order=[(b.id, c.id), (answer, c.id)])


@pytest.mark.parametrize("lose", LOSSES)
async def test_an_agent_reply_whose_feed_record_is_lost_reaches_every_open_screen(
    desks: DeskMaker,
    views: Views,
    gates: GateRelay,
    evolution: FakeEvolution,
    direct: Any,
    browser: httpx.AsyncClient,
    peer_http: httpx.AsyncClient,
    lose: Lose,
) -> None:
    """The reply R's `message.created` is lost; before its retry the client writes C (its record
    queues behind R's in the app) and the owner's note N is announced by another process."""
    desk = await desks()
    shown = await views(desk)
    key = uuid.uuid4().hex
    answer = keyed_reply_id(desk.actor, desk.ticket_id, key)
    assert answer is not None
    c = desk.message("e o segundo boleto?")
    gate = gates.gate(*feed_record(answer), lose=lose)
    posting = asyncio.ensure_future(reply(browser, desk, "segue o boleto", key))
    await gate.caught()
    await say(evolution, desk, c)
    r = await peer_http.post(
        f"{API}/tickets/{desk.ticket_id}/notes", json={"body": "nota"}, headers=desk.tenant.headers
    )
    assert r.status_code == 201, r.text
    note = str(r.json()["id"])
    gate.release()
    assert await posting == answer
    await processed(direct, c)
    await check_screens(direct, browser, desk, shown, unread=1, order=[(answer, c.id), (note, c.id)])


@pytest.mark.parametrize("lose", ["request", "reply"])
async def test_a_client_message_whose_unread_number_is_lost_is_counted_once_retried(
    desks: DeskMaker,
    views: Views,
    gates: GateRelay,
    evolution: FakeEvolution,
    direct: Any,
    browser: httpx.AsyncClient,
    lose: Lose,
) -> None:
    """B's `inbound_seq` insert is lost (its delivery fails and the processor retries it); before
    the retry the agent marks the ticket read (as the open thread does) and the client writes C.
    `request`: B had no number when the agent read, so B and C are unread (2). `reply`: B's number
    was stored, so the read counted it and C alone is unread (1) — on every screen too."""
    desk = await desks()
    shown = await views(desk)
    b, c = desk.message("o boleto venceu"), desk.message("consegue mandar outro?")
    gate = gates.gate(command_marker("insert", "inbound_seq"), string_element("message_id", b.id), lose=lose)
    await say(evolution, desk, b)
    await gate.caught()
    r = await browser.post(f"{API}/tickets/{desk.ticket_id}/read", headers=desk.headers)
    assert r.status_code == 200 and r.json()["unread_count"] == 0, r.text
    await say(evolution, desk, c)
    gate.release()
    await processed(direct, b, c)
    numbers = await direct.inbound_seq.find({"ticket_id": desk.ticket_id}).to_list(None)
    assert sorted(n["n"] for n in numbers) == [1, 2, 3], numbers  # A, B, C: each once, no hole
    assert [n["message_id"] for n in sorted(numbers, key=lambda n: n["n"])] == [desk.opening.id, b.id, c.id]
    unread = 2 if lose == "request" else 1
    await check_screens(direct, browser, desk, shown, unread=unread, order=[(b.id, c.id)])


@pytest.mark.parametrize("lose", ["request", "reply"])
async def test_a_read_on_another_process_while_a_client_messages_feed_record_is_lost_leaves_every_badge_right(
    desks: DeskMaker,
    views: Views,
    gates: GateRelay,
    evolution: FakeEvolution,
    direct: Any,
    browser: httpx.AsyncClient,
    peer_http: httpx.AsyncClient,
    lose: Lose,
) -> None:
    """C is numbered, then its `message.created` is lost; before the retry the agent's thread,
    served by the other process, marks the ticket read. `request`: C's record is not stored yet,
    so the peer's `ticket.read` takes the seq before it. `reply`: C's record is stored already and
    the `ticket.read` follows it. Either way the read covered C: the API and every badge show 0."""
    desk = await desks()
    shown = await views(desk)
    c = desk.message("consegue mandar outro?")
    gate = gates.gate(*feed_record(c.id), lose=lose)
    await say(evolution, desk, c)
    await gate.caught()
    r = await peer_http.post(f"{API}/tickets/{desk.ticket_id}/read", headers=desk.headers)
    assert r.status_code == 200 and r.json()["unread_count"] == 0, r.text
    gate.release()
    await processed(direct, c)
    await check_screens(direct, browser, desk, shown, unread=0, order=[])


def _read_write(desk: Desk, write: str) -> tuple[bytes, ...]:
    if write == "marker":
        return (
            command_marker("insert", "read_markers"),
            string_element("user_id", desk.actor.id),
            string_element("ticket_id", desk.ticket_id),
        )
    prefix = marker_prefix(desk.actor.id, desk.ticket_id)
    return command_marker("update", "unread_hints"), string_element("_id", f"rd:{prefix}")


@pytest.mark.parametrize(
    ("write", "lose"),
    [
        ("marker", "request"),
        ("marker", "reply"),
        ("hint", "request"),
        ("hint", "reply"),
    ],
)
async def test_a_read_that_loses_a_write_clears_the_badge_on_every_open_screen(
    desks: DeskMaker,
    views: Views,
    gates: GateRelay,
    evolution: FakeEvolution,
    direct: Any,
    browser: httpx.AsyncClient,
    write: str,
    lose: Lose,
) -> None:
    """Two unread client messages; the agent opens the thread on one device and its read loses a
    write (503); between that and the screen's repeat, the ticket list is read; the repeat clears
    the count, and the agent's other screens (app and peer) show 0 as well."""
    desk = await desks()
    b, c = desk.message("bom dia"), desk.message("alguém aí?")
    await say(evolution, desk, b)
    await say(evolution, desk, c)
    await processed(direct, b, c)
    shown = await views(desk)
    assert [s.badges[desk.ticket_id] for s in shown] == [2, 2]
    gate = gates.gate(*_read_write(desk, write), lose=lose)
    path = f"{API}/tickets/{desk.ticket_id}/read"
    first = await browser.post(path, headers=desk.headers)
    assert gate.sprung.is_set(), f"the read's {write} write never reached the store: {first.text}"
    assert unanswered(first), first.text
    stored = write == "hint" or lose == "reply"  # the marker entry went in before the failure
    assert await unread_shown(browser, desk.headers, desk.ticket_id) == ((0, 0) if stored else (2, 2))
    repeat = asyncio.ensure_future(browser.post(path, headers=desk.headers))
    gate.release()
    again = await repeat
    assert again.status_code == 200 and again.json()["unread_count"] == 0, again.text
    await check_screens(direct, browser, desk, shown, unread=0, order=[])


@pytest.mark.parametrize("lose", LOSSES)
async def test_a_socket_reconnecting_while_a_feed_write_is_lost_misses_nothing(
    desks: DeskMaker,
    views: Views,
    screens: list[Screen],
    gates: GateRelay,
    evolution: FakeEvolution,
    direct: Any,
    browser: httpx.AsyncClient,
    peer: Server,
    lose: Lose,
) -> None:
    """B's `message.created` is lost (`request`: its seq not stored yet; `reply`: stored, its writer
    not told, so no process has announced it): every screen drops and reconnects with since=<last
    seq> right then, and a screen that never saw the ticket's feed opens on the peer with since=0.
    The late record must reach them all, then C."""
    desk = await desks()
    shown = await views(desk)
    b, c = desk.message("o boleto venceu"), desk.message("consegue mandar outro?")
    gate = gates.gate(*feed_record(b.id), lose=lose)
    await say(evolution, desk, b)
    await gate.caught()
    if lose == "reply":  # the record is stored (the relay passed it on), and no process was told

        async def stored() -> bool:
            return await announcements(direct, b.id) == 1

        await wait_for(stored, timeout=WAIT)
    for screen in shown:
        await screen.reconnect()
    # The owner's screen opens on the peer asking for the tenant's whole feed: its badge is
    # counted from the frames alone (every client message of the ticket), its thread from none.
    token = bearer(desk.tenant.headers)
    late = Screen("owner@peer since=0", f"ws://127.0.0.1:{peer.port}{API}/ws?token={token}", desk.owner)
    screens.append(late)
    await late.open(since=0)
    late.badges[desk.ticket_id] = 0
    await say(evolution, desk, c)
    gate.release()
    await processed(direct, b, c)
    await check_screens(direct, browser, desk, shown, unread=2, order=[(b.id, c.id)])
    # The owner never read the ticket: the opening, B and C.
    await check_screens(
        direct,
        browser,
        desk,
        [late],
        unread=3,
        order=[(desk.opening.id, b.id), (b.id, c.id)],
        headers=desk.tenant.headers,
    )


async def test_a_client_message_whose_feed_write_fails_on_every_attempt_is_still_announced(
    desks: DeskMaker,
    views: Views,
    gates: GateRelay,
    evolution: FakeEvolution,
    direct: Any,
    browser: httpx.AsyncClient,
) -> None:
    """Every attempt of B's `message.created` is lost until the append gives up (core/seqlog.py
    retries a few times): the delivery must not end as if B had been announced."""
    desk = await desks()
    shown = await views(desk)
    b, c = desk.message("o boleto venceu"), desk.message("consegue mandar outro?")
    gate = gates.gate(*feed_record(b.id), lose="request", retries="lose")
    await say(evolution, desk, b)
    await gate.caught()

    async def given_up() -> dict[str, Any] | None:
        """The append gave up (every try lost) and its delivery's failure is recorded, unprocessed."""
        assert b.ack is not None
        raw: dict[str, Any] | None = await direct.webhook_events_raw.find_one({"_id": raw_id_of(b.ack)})
        return raw if gate.attempts > APPEND_TRANSIENT_RETRIES and raw and raw.get("attempts", 0) >= 1 else None

    raw = await wait_for(given_up, timeout=WAIT)
    assert raw["status"] == "received", f"the delivery ended {raw['status']!r} with its message unannounced"
    gate.release()
    lost = gate.attempts
    await say(evolution, desk, c)
    await processed(direct, c)
    assert await direct.messages.count_documents({"_id": b.id}) == 1  # B is stored
    assert await unread_shown(browser, desk.headers, desk.ticket_id) == (2, 2)  # and counted unread
    announced = await wait_for_count(lambda: announcements(direct, b.id), timeout=10.0)
    assert announced >= 1, (
        f"message {b.id} stored and counted unread, its delivery ended {raw['status']!r} after "
        f"{lost} lost feed writes, and it was never announced: no open screen will ever show it"
    )
    await check_screens(direct, browser, desk, shown, unread=2, order=[(b.id, c.id)])


async def test_a_note_whose_feed_write_fails_on_every_attempt_is_refused_and_its_repeat_announces_it(
    desks: DeskMaker,
    views: Views,
    gates: GateRelay,
    direct: Any,
    browser: httpx.AsyncClient,
) -> None:
    """Every attempt of note N's `message.created` is lost until the append gives up: N is stored,
    so an answer of 201 would leave every open thread without it until a reload. The note is
    refused with the store's error instead, and the Composer's repeat (same key) announces it."""
    desk = await desks()
    shown = await views(desk)
    text = f"nota {uuid.uuid4().hex[:8]}"
    gate = gates.gate(
        command_marker("insert", "tenant_events"), string_element("body", text), lose="request", retries="lose"
    )
    keyed = {**desk.headers, "Idempotency-Key": uuid.uuid4().hex}
    path = f"{API}/tickets/{desk.ticket_id}/notes"
    first = await browser.post(path, json={"body": text}, headers=keyed)
    assert gate.attempts == APPEND_TRANSIENT_RETRIES, gate.attempts  # every try of the append lost
    assert unanswered(first), f"a note no screen was told of was answered {first.status_code}: {first.text}"
    stored = await direct.messages.find({"ticket_id": desk.ticket_id, "body": text}).to_list(None)
    assert len(stored) == 1 and await announcements(direct, stored[0]["_id"]) == 0
    gate.release()
    again = await browser.post(path, json={"body": text}, headers=keyed)
    assert again.status_code == 201 and again.json()["id"] == stored[0]["_id"], again.text
    assert await announcements(direct, stored[0]["_id"]) == 1
    await check_screens(direct, browser, desk, shown, unread=0, order=[])


async def test_a_reply_whose_failed_status_announcement_fails_on_every_attempt_is_still_announced(
    desks: DeskMaker,
    gates: GateRelay,
    evolution: FakeEvolution,
    direct: Any,
    browser: httpx.AsyncClient,
) -> None:
    """WhatsApp refuses the agent's reply for good (the number has no account): the outbound
    worker moves it to "failed", and every attempt of that `message.status` record is lost until
    the append gives up. Were that loss passed over, the worker would count the reply done and no
    open thread would ever turn it red: the agent's screen keeps the clock on a reply the client
    never gets, and nobody writes it again. The worker keeps the entry instead, and its next pass
    announces the status as stored (outbound/worker.py, a message no longer pending)."""
    desk = await desks()
    await evolution.control("POST", "not-on-whatsapp", {"numbers": [desk.phone]})
    gate = gates.gate(
        command_marker("insert", "tenant_events"),
        string_element("type", "message.status"),
        string_element("status", "failed"),
        lose="request",
        retries="lose",
    )
    r = await browser.post(
        f"{API}/tickets/{desk.ticket_id}/messages", json={"body": "segue a segunda via"}, headers=desk.headers
    )
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    reply = str(r.json()["id"])

    async def refused_and_unannounced() -> bool:
        stored = await direct.messages.find_one({"_id": reply})
        return stored["status"] == "failed" and gate.attempts >= APPEND_TRANSIENT_RETRIES

    assert await wait_for(refused_and_unannounced, timeout=WAIT)
    gate.release()

    async def told() -> int:
        query = {"type": "message.status", "data.message_id": reply, "data.status": "failed"}
        return int(await direct.tenant_events.count_documents(query))

    announced = await wait_for_count(told, timeout=20.0)
    assert announced >= 1, (
        f"reply {reply} failed ({gate.attempts} feed writes lost) and no open screen was ever told: "
        "it shows pending to its agent for good"
    )


async def test_a_transition_whose_feed_write_fails_on_every_attempt_has_every_screen_refetch(
    desks: DeskMaker,
    views: Views,
    gates: GateRelay,
    browser: httpx.AsyncClient,
) -> None:
    """The agent finalizes the ticket; every attempt of its `ticket.finalized` record is lost
    until the append gives up. The finalize is stored (200), and unlike a message no retry will
    announce it: a transition is not repeated (409), so a transfer or a hand-back announced
    nowhere would leave the ticket unseen in its new queue until some reload. Every open screen
    of the tenant, on either process (the peer's over Redis), is told to refetch instead."""
    desk = await desks()
    shown = await views(desk)
    gate = gates.gate(
        command_marker("insert", "tenant_events"),
        string_element("type", "ticket.finalized"),
        lose="request",
        retries="lose",
    )
    r = await browser.post(f"{API}/tickets/{desk.ticket_id}/finalize", headers=desk.headers)
    assert r.status_code == 200, r.text
    assert gate.attempts >= APPEND_TRANSIENT_RETRIES, gate.attempts  # announced nowhere
    gate.release()

    async def all_told() -> bool:
        for screen in shown:
            await screen.drain(0.3)
        return all(screen.resyncs for screen in shown)

    assert await wait_for(all_told, timeout=WAIT), [(s.label, s.resyncs) for s in shown]


async def wait_for_count(probe: Callable[[], Awaitable[int]], *, timeout: float) -> int:  # noqa: ASYNC109
    """The probe's value once positive, or its last value after `timeout`."""
    with contextlib.suppress(AssertionError):
        return int(await wait_for(probe, timeout=timeout))
    return await probe()


@pytest.mark.parametrize("author", ["client", "agent"])
async def test_a_feed_record_whose_answer_is_lost_reaches_each_screen_exactly_once(
    desks: DeskMaker,
    views: Views,
    gates: GateRelay,
    evolution: FakeEvolution,
    direct: Any,
    browser: httpx.AsyncClient,
    author: str,
) -> None:
    desk = await desks()
    shown = await views(desk)
    if author == "client":
        b = desk.message("o boleto venceu")
        gate = gates.gate(*feed_record(b.id), lose="reply")
        await say(evolution, desk, b)
        await gate.caught()
        gate.release()
        await processed(direct, b)
        message_id = b.id
    else:
        key = uuid.uuid4().hex
        message_id = str(keyed_reply_id(desk.actor, desk.ticket_id, key))
        gate = gates.gate(*feed_record(message_id), lose="reply")
        posting = asyncio.ensure_future(reply(browser, desk, "segue o boleto", key))
        await gate.caught()
        gate.release()
        assert await posting == message_id
    await check_screens(direct, browser, desk, shown, unread=1 if author == "client" else 0, order=[])
    for screen in shown:
        assert screen.created().count(message_id) == 1, f"{screen.label} got it {screen.created().count(message_id)}x"
    records = await direct.tenant_events.find({"type": "message.created", "message.id": message_id}).to_list(None)
    assert len(records) == 1, f"announced {len(records)} times: seqs {[r['seq'] for r in records]}"


async def test_redis_going_silent_while_messages_arrive_loses_nothing_on_any_screen(
    desks: DeskMaker,
    views: Views,
    screens: list[Screen],
    redis_relay: TcpRelay,
    evolution: FakeEvolution,
    direct: Any,
    browser: httpx.AsyncClient,
    peer: Server,
    peer_http: httpx.AsyncClient,
) -> None:
    """The peer's Redis connections stop answering without closing. Meanwhile the client writes B
    and C (announced by the app), the owner's screen on the peer reconnects with since=, the agent
    reads the ticket through the peer (whose notice of it goes nowhere) and the client writes D.
    The peer notices the silence and subscribes again; every screen ends with every message once,
    and the badges the API shows: the agent 1 (D), the owner 4 (never read)."""
    desk = await desks()
    shown = await views(desk)
    owner = await watch(screens, direct, desk, browser, f"127.0.0.1:{peer.port}", owner=True)
    made = redis_relay.stall_open()
    b, c, d = desk.message("bom dia"), desk.message("alguém aí?"), desk.message("preciso do boleto")
    await say(evolution, desk, b)
    await say(evolution, desk, c)
    await processed(direct, b, c)
    await owner.reconnect()
    r = await peer_http.post(f"{API}/tickets/{desk.ticket_id}/read", headers=desk.headers)
    assert r.status_code == 200 and r.json()["unread_count"] == 0, r.text
    await say(evolution, desk, d)
    await processed(direct, d)

    async def subscribed_again() -> bool:
        return len(redis_relay.links) > made

    await wait_for(subscribed_again, timeout=WAIT)
    order = [(b.id, c.id), (c.id, d.id)]
    await check_screens(direct, browser, desk, shown, unread=1, order=order)
    await check_screens(direct, browser, desk, [owner], unread=4, order=order, headers=desk.tenant.headers)
