"""The reports and the inbox's ticket counts while the store loses one of the writes that feed them.

The backend reaches the store through a relay (tests/tcp_relay.py) that stalls the one connection
carrying a chosen write: the command never runs (`lose="request"`) or it runs and its answer never
comes back (`lose="reply"`); with MONGO_SOCKET_TIMEOUT_MS the write fails after 1.5 s, as on any
store hiccup. Then the product's own retry path runs: the webhook processor redelivers a client's
message, the agent's Composer repeats an unanswered reply with the same `Idempotency-Key`, the
agent clicks Assumir / Finalizar again, the sweep settles a ticket left behind its log, and the
next compaction folds what a lost one did not.

The writes that feed a figure (reports/service.py, reports/repository.py, tickets/counters.py,
core/foldlog.py):
- a contribution entry (`insert report_entries`): an inbound message's and an agent reply's
  (`msg:<id>`), a ticket event's (`ev:<event id>`: opening, assume, finalize; the month and the
  live bucket's entries go out as one insert), and the first-response claims
  (`natural_keys` "report-first-in" / "report-first-reply");
- a counts delta (`insert ticket_count_deltas`, one per ticket event that moves a count);
- a fold: a compaction claims its stretch (`insert natural_keys` "report:<bucket>:…" /
  "count-delta:…") and writes the totals (`update report_totals` — a month's six views in one
  command, or the live bucket — and `update ticket_counts`).

After each fault the figures the API answers (`/reports/summary` unfiltered and through each of
the month views a filter reads, `/reports/agents` over part of a month and over a whole one,
`/tickets/counts` for the owner, per department and per agent) must equal the truth recomputed
here from the stored documents (`ticket_events`, `messages`, read past the relay): nothing
counted twice, nothing missing; and every stored totals document must be the fold of its own
entries. Competitors are injected between two writes deterministically: a compaction by another
process while an entry's insert is stalled, two processes folding the same stretch (one of them
writing an older pair back over the other's), and an agent's reply recorded while the client
message it answers waits for its redelivery (its record lost)."""

import asyncio
import calendar
import contextlib
import dataclasses
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from backend.audit.service import event_id
from backend.core.clock import as_utc
from backend.core.db import Database, durable_database
from backend.core.foldlog import FoldLog, Totals
from backend.core.tenancy import Actor
from backend.messages.service import keyed_reply_id
from backend.reports import aggregates, repository
from backend.reports.rebuild import comparable
from backend.resellers.service import timezone_of, zone
from backend.tickets import counters
from backend.webhooks.service import message_id_for
from tests.factories import API, Tenant, make_client, make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, app, backend_port, evolution, last_within, make_connection, settings
from tests.monitoring import recorded
from tests.tcp_relay import Lose, StoreProxy, command_marker, relayed, string_element, unanswered

__all__ = ["app", "backend_port", "evolution", "settings"]

STALL = 15.0  # how long a trap may take to spring once the write that springs it is under way
SETTLE = 20.0  # how long the figures may take to converge: a stall, a redelivery's backoff, a sweep
LOSSES: list[Lose] = ["request", "reply"]
STATUSES = ("espera", "atendendo", "finalizado")
KINDS = ("o", "a", "t", "f", "mi", "mo")
FIGURES = {
    "o": "opened",
    "a": "assumed",
    "t": "transferred",
    "f": "finalized",
    "mi": "messages_in",
    "mo": "messages_out",
}
Dims = tuple[str | None, str | None, str | None]  # department, agent, connection (aggregates.Dims)


@pytest.fixture(scope="module")
def settings_overrides(store_relay: StoreProxy) -> dict[str, Any]:
    return {
        **relayed(store_relay),
        "WEBHOOK_BACKOFF_BASE_SECONDS": 0.1,
        "TICKET_SWEEP_SECONDS": 0.5,
    }


@pytest.fixture
def direct(raw_mongo: Any, settings: Any) -> Database:
    """The store past the relay: what it really holds."""
    return durable_database(raw_mongo, settings.MONGO_DB)


@dataclass
class Shop:
    """A tenant of its own per test (so its buckets and logs are the test's alone): one
    department, two agents in it, optionally a WhatsApp connection."""

    tenant: Tenant
    conn: dict[str, Any] | None
    tz: ZoneInfo
    regular: str | None = None  # a client whose tickets `_round` opens, one after the other

    @property
    def id(self) -> str:
        return self.tenant.id

    @property
    def dept(self) -> str:
        return str(self.tenant.departments[0]["id"])

    @property
    def agent(self) -> dict[str, Any]:
        return self.tenant.agents[0]

    @property
    def month(self) -> str:
        return datetime.now(self.tz).strftime("%Y-%m")

    @property
    def bucket(self) -> str:
        return aggregates.month_bucket(self.id, self.month)

    @property
    def live(self) -> str:
        return aggregates.live_bucket(self.id)


async def _shop(
    client: httpx.AsyncClient, admin_headers: dict[str, str], direct: Database, evolution: FakeEvolution | None
) -> Shop:
    tenant = await make_tenant(client, admin_headers, departments=1, agents=2)
    conn = await make_connection(client, tenant, evolution) if evolution is not None else None
    tz = zone(await timezone_of(direct, tenant.id))
    return Shop(tenant, conn, tz)


def int_element(key: str, value: int) -> bytes:
    """A BSON int32 element on the wire, e.g. `a: 1` in a contribution's part."""
    return b"\x10" + key.encode() + b"\x00" + value.to_bytes(4, "little", signed=True)


async def _sprung_during(sprung: asyncio.Event, action: Awaitable[Any], what: str) -> asyncio.Task[Any]:
    """Runs `action` until the trap springs (or the action ends); returns the action, still under
    way or done. Fails when the trap never sprang."""
    task = asyncio.ensure_future(action)
    waiter = asyncio.ensure_future(sprung.wait())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait({task, waiter}, timeout=STALL, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if not sprung.is_set():
        outcome = repr(task.result()) if task.done() and not task.exception() else "no answer yet"
        raise AssertionError(f"the trap on {what} never sprang ({outcome})")
    return task


# ---------------------------------------------------------------------------------------------
# The truth, from the stored documents


@dataclass(frozen=True)
class Part:
    """One contribution the log says there is (aggregates.py, Attribution): a count (`kind` in
    KINDS) or a value (`fr`/`rs`, in ms), with its dims and local day and hour."""

    kind: str
    dims: Dims
    day: str
    hour: int
    value: int = 1


@dataclass
class Truth:
    parts: list[Part]
    states: dict[str, dict[str, Any]]  # ticket -> its state after its newest event
    channels: dict[str, str | None]  # ticket -> its connection


def _ms(start: datetime, end: datetime) -> int:
    return aggregates.ms_between(as_utc(start), as_utc(end))


async def _truth(direct: Database, shop: Shop) -> Truth:
    """Every contribution counted from `ticket_events` and `messages` as stored."""
    tz, parts = shop.tz, []

    def add(kind: str, dims: Dims, at: datetime, value: int = 1) -> None:
        local = as_utc(at).astimezone(tz)
        parts.append(Part(kind, dims, local.date().isoformat(), local.hour, value))

    chains: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in await direct.ticket_events.find({"reseller_id": shop.id}).to_list(None):
        chains[e["ticket_id"]].append(e)
    states: dict[str, dict[str, Any]] = {}
    channels: dict[str, str | None] = {}
    for ticket_id, chain in chains.items():
        chain.sort(key=lambda e: int(e["version"]))
        assert [int(e["version"]) for e in chain] == list(range(1, len(chain) + 1)), (ticket_id, chain)
        conn = (chain[0]["data"].get("ticket") or {}).get("channel")
        opened_at = chain[0]["at"]
        previous: dict[str, Any] | None = None
        for e in chain:
            state, at = e["state"], e["at"]
            before = previous["status"] if previous is not None else None
            dims: Dims = (state["department_id"], state.get("agent_id"), conn)
            if int(e["version"]) == 1:
                add("o", dims, at)
            if before == "espera" and state["status"] == "atendendo":
                add("a", dims, at)
            if e["type"] == "transferred" and previous is not None:
                add("t", (previous["department_id"], previous.get("agent_id"), conn), at)
            if state["status"] == "finalizado" and before not in (None, "finalizado"):
                add("f", dims, at)
                add("rs", dims, at, _ms(opened_at, at))
            previous = state
        assert previous is not None
        states[ticket_id], channels[ticket_id] = previous, conn

    stored = await direct.messages.find({"reseller_id": shop.id}).to_list(None)
    counted = [m for m in stored if m["direction"] in ("in", "out") and m.get("annotates") is None]

    def dims_of(m: dict[str, Any]) -> Dims:
        state = states.get(m["ticket_id"], {})
        dept = m["department_id"] if "department_id" in m else state.get("department_id")
        reply = m["direction"] == "out" and m["sender_type"] == "agent"
        agent = m.get("sender_id") if reply else (m["agent_id"] if "agent_id" in m else state.get("agent_id"))
        return (dept, agent, m.get("channel") or channels.get(m["ticket_id"]))

    ordered = sorted(counted, key=lambda m: (as_utc(m["created_at"]), m["_id"]))
    first_in: dict[str, dict[str, Any]] = {}
    first_reply: dict[str, dict[str, Any]] = {}
    for m in ordered:
        add("mi" if m["direction"] == "in" else "mo", dims_of(m), m["created_at"])
        if m["direction"] == "in" and m["sender_type"] == "client":
            first_in.setdefault(m["ticket_id"], m)
    for m in ordered:
        asked = first_in.get(m["ticket_id"])
        reply = m["direction"] == "out" and m["sender_type"] == "agent"
        if reply and asked is not None and as_utc(m["created_at"]) >= as_utc(asked["created_at"]):
            first_reply.setdefault(m["ticket_id"], m)
    for ticket_id, m in first_reply.items():
        add("fr", dims_of(m), m["created_at"], _ms(first_in[ticket_id]["created_at"], m["created_at"]))
    return Truth(parts, states, channels)


def _quantiles(values: list[int]) -> dict[str, float | None]:
    """Median (mean of the two middle values) and p90 (nearest rank), in seconds."""
    if not values:
        return {"median": None, "p90": None}
    v, n = sorted(values), len(values)
    median = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    p90 = v[max(0, -(-9 * n // 10) - 1)]
    return {"median": median / 1000, "p90": p90 / 1000}


def _figures(parts: list[Part], waiting: int) -> dict[str, Any]:
    counts = Counter(p.kind for p in parts if p.kind in KINDS)
    return {
        **{name: counts[kind] for kind, name in FIGURES.items()},
        "waiting_now": waiting,
        "first_response_seconds": _quantiles([p.value for p in parts if p.kind == "fr"]),
        "resolution_seconds": _quantiles([p.value for p in parts if p.kind == "rs"]),
    }


def _answered(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **{name: body[name] for name in FIGURES.values()},
        "waiting_now": body["waiting_now"],
        "first_response_seconds": body["first_response_seconds"],
        "resolution_seconds": body["resolution_seconds"],
    }


Match = Callable[[Dims], bool]


@dataclass(frozen=True)
class Filter:
    params: dict[str, str]
    match: Match
    waits: Callable[[str | None, str | None], bool]  # a waiting ticket's (department, connection)


def _filters(shop: Shop) -> list[Filter]:
    """No filter ("all" view), the department ("dept"), the connection ("conn"), each agent
    ("agent") and the department with the connection ("cells")."""
    dept, conn = shop.dept, shop.conn["id"] if shop.conn else None
    out = [
        Filter({}, lambda d: True, lambda dd, c: True),
        Filter({"department_id": dept}, lambda d: d[0] == dept, lambda dd, c: dd == dept),
    ]
    if conn is not None:
        out.append(Filter({"connection_id": conn}, lambda d: d[2] == conn, lambda dd, c: c == conn))
        out.append(
            Filter(
                {"department_id": dept, "connection_id": conn},
                lambda d: d[0] == dept and d[2] == conn,
                lambda dd, c: dd == dept and c == conn,
            )
        )
    for agent in shop.tenant.agents:
        a = str(agent["id"])
        out.append(Filter({"agent_id": a}, _agent_is(a), lambda dd, c: dd == dept))
    return out


def _agent_is(agent: str) -> Match:
    return lambda dims: dims[1] == agent


def _waiting(truth: Truth, waits: Callable[[str | None, str | None], bool]) -> int:
    return sum(
        1
        for ticket_id, state in truth.states.items()
        if state["status"] == "espera" and waits(state["department_id"], truth.channels[ticket_id])
    )


def _period(shop: Shop) -> dict[str, str]:
    today = datetime.now(shop.tz).date()
    return {"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))}


def _whole_month(shop: Shop) -> dict[str, str]:
    today = datetime.now(shop.tz).date()
    last = calendar.monthrange(today.year, today.month)[1]
    return {"from": str(today.replace(day=1)), "to": str(date(today.year, today.month, last))}


async def _get(browser: httpx.AsyncClient, path: str, headers: dict[str, str], **params: str) -> Any:
    r = await browser.get(f"{API}{path}", params=params, headers=headers)
    assert r.status_code == 200, (path, params, r.status_code, r.text)
    return r.json()


async def _differences(browser: httpx.AsyncClient, shop: Shop, truth: Truth) -> list[str]:
    """Every figure the API answers that differs from `truth`, as readable lines (the reads go
    out together)."""
    owner, out = shop.tenant.headers, []
    period, filters = _period(shop), _filters(shop)
    tables = (period, _whole_month(shop))
    inbox: list[tuple[str, dict[str, str], dict[str, str]]] = [
        ("owner", owner, {}),
        ("owner", owner, {"department_id": shop.dept}),
        *((f"agent {a['id']}", a["headers"], {}) for a in shop.tenant.agents),
    ]
    answers = await asyncio.gather(
        *(_get(browser, "/reports/summary", owner, **period, **f.params) for f in filters),
        *(_get(browser, "/reports/agents", owner, **params) for params in tables),
        *(_get(browser, "/tickets/counts", headers, **params) for _, headers, params in inbox),
    )
    summaries, agent_tables, counts = (
        answers[: len(filters)],
        answers[len(filters) : len(filters) + len(tables)],
        answers[len(filters) + len(tables) :],
    )
    for f, body in zip(filters, summaries, strict=True):
        parts = [p for p in truth.parts if f.match(p.dims)]
        want = _figures(parts, _waiting(truth, f.waits))
        if _answered(body) != want:
            out.append(f"summary {f.params or 'unfiltered'}: answered {_answered(body)}, the log says {want}")
        if not f.params:
            days: dict[str, Counter[str]] = defaultdict(Counter)
            hours_o, hours_i = [0] * 24, [0] * 24
            for p in parts:
                days[p.day][p.kind] += 1 if p.kind in KINDS else 0
                hours_o[p.hour] += p.kind == "o"
                hours_i[p.hour] += p.kind == "mi"
            per_day = {
                d["date"]: (d["opened"], d["finalized"], d["messages_in"], d["messages_out"]) for d in body["per_day"]
            }
            want_days = {day: (days[day]["o"], days[day]["f"], days[day]["mi"], days[day]["mo"]) for day in per_day}
            if per_day != want_days:
                out.append(f"per_day: answered {per_day}, the log says {want_days}")
            if (body["per_hour"], body["per_hour_messages_in"]) != (hours_o, hours_i):
                out.append(
                    f"per hour: answered {body['per_hour']} / {body['per_hour_messages_in']}, "
                    f"the log says {hours_o} / {hours_i}"
                )
    # The agents table: part of a month reads the "agent" view, a whole month "agent-month".
    active = sorted({p.dims[1] for p in truth.parts if p.dims[1] is not None}, key=str)
    want_rows = {
        a: _figures([p for p in truth.parts if p.dims[1] == a], _waiting(truth, lambda d, c: d == shop.dept))
        for a in active
        if a is not None
    }
    for params, body in zip(tables, agent_tables, strict=True):
        rows = {row["agent_id"]: _answered(row) for row in body["items"]}
        if rows != want_rows:
            out.append(f"agents {params}: answered {rows}, the log says {want_rows}")
    # The inbox's counts: the owner's, a department's, each agent's (tickets/counters.py keys).
    statuses = Counter(state["status"] for state in truth.states.values())
    everyone = {s: statuses[s] for s in STATUSES}
    for (who, _, params), got in zip(inbox, counts, strict=True):
        want = everyone
        if who.startswith("agent"):
            a = who.split()[1]
            held = [s for s in truth.states.values() if s.get("agent_id") == a or s.get("finalized_by") == a]
            want = {
                "espera": statuses["espera"],
                "atendendo": sum(1 for s in held if s["status"] == "atendendo" and s.get("agent_id") == a),
                "finalizado": sum(1 for s in held if s["status"] == "finalizado"),
            }
        if got != want:
            out.append(f"/tickets/counts of the {who} {params or ''}: answered {got}, the tickets' logs say {want}")
    return out


async def _check_totals_are_their_entries_fold(direct: Database, shop: Shop) -> None:
    """Every stored totals document (the month's views, the live queue, the counts) is the fold
    of the canonical entries up to its watermark (foldlog `refold`), and the counts' totals keep
    the `complete` mark (else /tickets/counts would count the ticket documents instead)."""
    views = list(aggregates.PROJECTIONS)
    *months, live, counts = await asyncio.gather(
        *(repository.MONTHS.refold(direct, shop.bucket, view) for view in views),
        repository.LIVE.refold(direct, shop.live, ""),
        counters.COUNTS.refold(direct, shop.id),
    )
    for view, (stored, folded) in zip(views, months, strict=True):
        assert comparable(stored.state) == comparable(folded.state), f"{shop.bucket}|{view} at {stored.watermark}"
    stored, folded = live
    assert stored.state.get("waiting", {}) == folded.state.get("waiting", {}), f"{shop.live} at {stored.watermark}"
    stored, folded = counts
    assert stored.state == folded.state, f"ticket_counts/{shop.id} at {stored.watermark}"
    assert stored.marks.get("complete") is True, stored.marks


async def wrong_figures(
    browser: httpx.AsyncClient, direct: Database, shop: Shop, *, within: float = SETTLE
) -> tuple[list[str], Truth]:
    """The figures that differ from the truth once they stop moving (`within`: a redelivery or a
    sweep may still be on its way), and the truth."""
    seen: list[tuple[list[str], Truth]] = []

    async def converged() -> bool:
        truth = await _truth(direct, shop)
        seen.append((await _differences(browser, shop, truth), truth))
        return not seen[-1][0]

    await last_within(converged, timeout=within)
    return seen[-1]


async def check_figures(browser: httpx.AsyncClient, direct: Database, shop: Shop) -> Truth:
    """The figures equal the truth, and the stored totals are their entries' fold. Returns the truth."""
    wrong, truth = await wrong_figures(browser, direct, shop)
    assert not wrong, "wrong figures:\n" + "\n".join(wrong)
    await _check_totals_are_their_entries_fold(direct, shop)
    return truth


# ---------------------------------------------------------------------------------------------
# What the people do


def _provider_key() -> str:
    return "3EB0" + uuid.uuid4().hex[:16].upper()


async def _processed(direct: Database, ack: dict[str, Any]) -> dict[str, Any]:
    """The delivery once the processor recorded it processed (a failed attempt is retried)."""
    raw_id = str((ack.get("body") or ack)["raw_id"])

    async def done() -> dict[str, Any] | None:
        raw: dict[str, Any] | None = await direct.webhook_events_raw.find_one({"_id": raw_id})
        return raw if raw is not None and raw["status"] == "processed" else None

    raw: dict[str, Any] | None = await last_within(done, timeout=SETTLE)
    found = await direct.webhook_events_raw.find_one({"_id": raw_id})
    assert raw is not None, f"delivery {raw_id} not processed within {SETTLE}s: {found}"
    return raw


async def _writes(evolution: FakeEvolution, shop: Shop, phone: str, text: str, key: str) -> dict[str, Any]:
    """The client sends `text` on WhatsApp (the fake posts it to the webhook); returns its ack."""
    assert shop.conn is not None
    ack: dict[str, Any] = await evolution.inbound(
        shop.conn["instance_name"], phone, text, push_name="Maria", key_id=key
    )
    return ack


async def _ticket_of(direct: Database, shop: Shop, message_id: str) -> str:
    message = await direct.messages.find_one({"_id": message_id})
    assert message is not None, message_id
    return str(message["ticket_id"])


async def _click(browser: httpx.AsyncClient, who: dict[str, Any], ticket_id: str, action: str) -> httpx.Response:
    return await browser.post(f"{API}/tickets/{ticket_id}/{action}", headers=who["headers"])


async def _reply(browser: httpx.AsyncClient, shop: Shop, ticket_id: str, key: str, text: str) -> httpx.Response:
    headers = {**shop.agent["headers"], "Idempotency-Key": key}
    return await browser.post(f"{API}/tickets/{ticket_id}/messages", json={"body": text}, headers=headers)


def _reply_id(shop: Shop, ticket_id: str, key: str) -> str:
    actor = Actor(id=str(shop.agent["id"]), role="agent", name="", reseller_id=shop.id)
    found = keyed_reply_id(actor, ticket_id, key)
    assert found is not None
    return found


async def _api_ticket(browser: httpx.AsyncClient, shop: Shop, client_id: str | None = None) -> str:
    """A ticket the owner opens (for a new client unless given; no connection: it waits in
    espera, its first message kept as a note, which no report counts)."""
    client_id = client_id or str((await make_client(browser, shop.tenant))["id"])
    body = {"client_id": client_id, "department_id": shop.dept, "message": "aberto pelo balcão"}
    r = await browser.post(f"{API}/tickets", json=body, headers=shop.tenant.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _round(browser: httpx.AsyncClient, shop: Shop) -> str:
    """One ticket's life through the API: opened, assumed, finalized — three month entries (o, a,
    f), two live ones (into and out of the queue) and three counts deltas."""
    if shop.regular is None:
        shop.regular = str((await make_client(browser, shop.tenant))["id"])
    ticket_id = await _api_ticket(browser, shop, shop.regular)
    for action in ("assume", "finalize"):
        r = await _click(browser, shop.agent, ticket_id, action)
        assert r.status_code == 200, (action, r.status_code, r.text)
    return ticket_id


async def _watermark(direct: Database, collection: str, _id: str) -> int:
    doc = await direct[collection].find_one({"_id": _id}, {"watermark": 1})
    return int(doc["watermark"]) if doc else 0


async def _copies(direct: Database, bucket: str, key: str) -> int:
    return int(await direct[repository.ENTRIES].count_documents({"bucket": bucket, "key": key}))


# ---------------------------------------------------------------------------------------------
# A client's message: the opening's entries, the message's entry, the first-in claim


CLIENT_WRITES = ["opening event", "opening entry", "opening delta", "message entry", "first-in claim"]


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", CLIENT_WRITES)
async def test_a_client_message_whose_report_write_is_lost_is_counted_once(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    direct: Database,
    store_proxy: StoreProxy,
    write: str,
    lose: Lose,
) -> None:
    """A new client writes three messages; one write that records them is lost and the webhook
    processor redelivers (`complete_stored` records it again). The agent then assumes and replies:
    one ticket opened, three messages in, one out, the first response measured from the first."""
    shop = await _shop(client, admin_headers, direct, evolution)
    phone = unique_phone()
    keys = [_provider_key() for _ in range(3)]
    assert shop.conn is not None
    ids = [message_id_for(shop.conn["id"], k) for k in keys]
    markers = {
        # The ticket's event v1: lost, the intake fails after it or before it; the redelivery (or
        # the sweep) records what it contributes.
        "opening event": (
            command_marker("insert", "ticket_events"),
            string_element("type", "created"),
            string_element("client_phone", phone),
        ),
        "opening entry": (command_marker("insert", repository.ENTRIES), shop.id.encode(), int_element("o", 1)),
        "opening delta": (
            command_marker("insert", counters.DELTAS),
            string_element("bucket", shop.id),
            int_element("version", 1),
        ),
        "message entry": (command_marker("insert", repository.ENTRIES), string_element("key", f"msg:{ids[1]}")),
        "first-in claim": (command_marker("insert", "natural_keys"), f"{repository.FIRST_IN}:".encode()),
    }[write]
    sprung = store_proxy.stall_next(*markers, lose=lose)
    texts = ["oi", "bom dia", "?"]
    acks = [await _writes(evolution, shop, phone, text, key) for text, key in zip(texts, keys, strict=True)]
    assert sprung.is_set() or await last_within(lambda: _is_set(sprung), timeout=STALL), f"{write} never sprang"
    for ack in acks:
        await _processed(direct, ack)
    ticket_id = await _ticket_of(direct, shop, ids[0])
    assert {await _ticket_of(direct, shop, i) for i in ids} == {ticket_id}
    assert (await _click(browser, shop.agent, ticket_id, "assume")).status_code == 200
    reply_key = uuid.uuid4().hex
    r = await _reply(browser, shop, ticket_id, reply_key, "olá, como posso ajudar?")
    assert r.status_code == 201, r.text

    truth = await check_figures(browser, direct, shop)
    counts = Counter(p.kind for p in truth.parts)
    assert (counts["o"], counts["mi"], counts["mo"], counts["fr"]) == (1, 3, 1, 1), counts
    print(
        "DEBUG",
        [(e["seq"], e["key"]) for e in await direct[repository.ENTRIES].find({"bucket": shop.bucket}).to_list(None)],
        ids[1],
    )
    print(
        "DEBUG raw",
        [
            (r["status"], r.get("attempts"))
            for r in await direct.webhook_events_raw.find(
                {"_id": {"$in": [str((a.get("body") or a)["raw_id"]) for a in acks]}}
            ).to_list(None)
        ],
    )
    if write == "message entry":  # stored (once, or twice when a retry met its own lost copy): counted once
        assert await _copies(direct, shop.bucket, f"msg:{ids[1]}") >= 1


async def _is_set(event: asyncio.Event) -> bool:
    return event.is_set()


# ---------------------------------------------------------------------------------------------
# An agent's reply: its entry, its first-reply claim


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", ["reply message", "reply entry", "first-reply claim"])
async def test_an_agent_reply_whose_report_write_is_lost_is_counted_once(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    direct: Database,
    store_proxy: StoreProxy,
    write: str,
    lose: Lose,
) -> None:
    """The agent's first reply loses a write; before the Composer repeats it (same
    Idempotency-Key), the agent sends a second reply. Two messages out, and the first response is
    the first reply's — even when the second one was recorded first (repository.claim_first_reply
    displaces it)."""
    shop = await _shop(client, admin_headers, direct, evolution)
    phone = unique_phone()
    key = _provider_key()
    await _processed(direct, await _writes(evolution, shop, phone, "meu pedido não chegou", key))
    assert shop.conn is not None
    ticket_id = await _ticket_of(direct, shop, message_id_for(shop.conn["id"], key))
    assert (await _click(browser, shop.agent, ticket_id, "assume")).status_code == 200
    first_key, second_key = uuid.uuid4().hex, uuid.uuid4().hex
    first_id = _reply_id(shop, ticket_id, first_key)
    markers = {
        # The reply itself: lost, it is recorded by the Composer's repeat (`replayed`), after the
        # second reply was.
        "reply message": (command_marker("insert", "messages"), string_element("_id", first_id)),
        "reply entry": (command_marker("insert", repository.ENTRIES), string_element("key", f"msg:{first_id}")),
        "first-reply claim": (
            command_marker("insert", "natural_keys"),
            string_element("_id", f"{repository.FIRST_REPLY}:{ticket_id}"),
        ),
    }[write]
    sprung = store_proxy.stall_next(*markers, lose=lose)
    first = await _reply(browser, shop, ticket_id, first_key, "vou verificar")
    assert sprung.is_set(), f"the trap on the {write} never sprang: {first.status_code} {first.text}"
    assert first.status_code == 201 or unanswered(first), (first.status_code, first.text)
    second = await _reply(browser, shop, ticket_id, second_key, "um momento, por favor")
    assert second.status_code == 201, second.text
    again = await _reply(browser, shop, ticket_id, first_key, "vou verificar")  # the Composer's repeat
    assert again.status_code in (200, 201) and again.json()["id"] == first_id, again.text

    truth = await check_figures(browser, direct, shop)
    counts = Counter(p.kind for p in truth.parts)
    assert (counts["mo"], counts["fr"]) == (2, 1), counts
    stored = await direct.messages.find_one({"_id": first_id})
    asked = await direct.messages.find_one({"_id": message_id_for(shop.conn["id"], key)})
    # The first reply in the log: the first one sent, unless its insert never ran (the repeat
    # stored it after the second).
    earliest = second.json()["id"] if (write, lose) == ("reply message", "request") else first_id
    answered = await direct.messages.find_one({"_id": earliest})
    assert stored is not None and asked is not None and answered is not None
    [fr] = [p.value for p in truth.parts if p.kind == "fr"]
    assert fr == _ms(asked["created_at"], answered["created_at"])
    # What the fault did (so the figures above were checked against the case named).
    me = f"{round(as_utc(stored['created_at']).timestamp() * 1000)}:{first_id}"
    claimed = await direct.natural_keys.find_one({"_id": f"{repository.FIRST_REPLY}:{ticket_id}"})
    if write == "reply message":
        assert unanswered(first), first.text
    elif write == "reply entry":  # a lost entry insert is retried by the append itself
        assert first.status_code == 201, first.text
        assert claimed is not None and claimed["target"] == me, claimed
        assert await _copies(direct, shop.bucket, f"msg:{first_id}") >= 1
    elif lose == "reply":  # the claim was stored, its answer lost: the first reply kept its place
        assert unanswered(first) and claimed is not None and claimed["target"] == me, (first.text, claimed)
    else:  # the claim never ran: the second reply claimed first, the repeat displaced it
        second_id = second.json()["id"]
        before = await direct.natural_keys.find_one({"_id": f"{repository.FIRST_REPLY_BEFORE}:{ticket_id}:{second_id}"})
        assert unanswered(first) and claimed is not None and claimed["target"].endswith(second_id), claimed
        assert before is not None and before["target"] == me, before


# ---------------------------------------------------------------------------------------------
# Assumir and Finalizar: the event, its report entries, its counts delta


def _move_markers(write: str, ticket_id: str, version: int) -> tuple[bytes, ...]:
    eid = event_id(ticket_id, version)
    return {
        "event": (command_marker("insert", "ticket_events"), string_element("_id", eid)),
        "report entry": (command_marker("insert", repository.ENTRIES), string_element("key", f"ev:{eid}")),
        "counts delta": (command_marker("insert", counters.DELTAS), string_element("event_id", eid)),
    }[write]


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", ["event", "report entry", "counts delta"])
@pytest.mark.parametrize("action", ["assume", "finalize"])
async def test_a_move_whose_write_is_lost_is_counted_once_when_clicked_again(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    direct: Database,
    store_proxy: StoreProxy,
    action: str,
    write: str,
    lose: Lose,
) -> None:
    """The move loses a write; the agent clicks again (and the sweep settles a ticket left behind
    its log). One assume (or finalize) counted in the reports, the queue and the inbox counts."""
    shop = await _shop(client, admin_headers, direct, None)
    ticket_id = await _api_ticket(browser, shop)
    await _api_ticket(browser, shop)  # another ticket in the queue: the counts are not all 0/1
    if action == "finalize":
        assert (await _click(browser, shop.agent, ticket_id, "assume")).status_code == 200
    version = int(await direct.ticket_events.count_documents({"ticket_id": ticket_id})) + 1
    sprung = store_proxy.stall_next(*_move_markers(write, ticket_id, version), lose=lose)
    click = await _sprung_during(sprung, _click(browser, shop.agent, ticket_id, action), f"the {action}'s {write}")
    first = await click
    assert first.status_code == 200 or unanswered(first), (first.status_code, first.text)
    again = await _click(browser, shop.agent, ticket_id, action)
    status = "atendendo" if action == "assume" else "finalizado"
    assert again.status_code == 200 or (again.status_code == 409 and again.json()["detail"]["status"] == status), (
        again.status_code,
        again.text,
    )

    truth = await check_figures(browser, direct, shop)
    counts = Counter(p.kind for p in truth.parts)
    assert (counts["o"], counts["a"], counts["f"]) == (2, 1, int(action == "finalize")), counts
    assert truth.states[ticket_id]["status"] == status
    # What the fault did: a lost event fails the click; a lost entry or delta is retried by the
    # append itself (core/seqlog.py), which stores it (once, or twice: only its canonical copy counts).
    eid = event_id(ticket_id, version)
    if write == "event":
        assert unanswered(first), first.text
    else:
        assert first.status_code == 200, first.text
        copies = (
            await _copies(direct, shop.bucket, f"ev:{eid}")
            if write == "report entry"
            else await direct[counters.DELTAS].count_documents({"event_id": eid})
        )
        assert copies >= 1, copies


# ---------------------------------------------------------------------------------------------
# A fold lost: its claims or its totals, of the month, the queue or the counts


# The live queue's claims go the month's way (the same log configuration, reports/repository.py).
FOLDS = ["month claims", "month totals", "live totals", "counts claims", "counts totals"]


def _fold_markers(fold: str, shop: Shop, first_ticket: str) -> tuple[bytes, ...]:
    claims = command_marker("insert", "natural_keys")
    return {
        "month claims": (claims, f"report:{shop.bucket}:".encode()),
        "month totals": (command_marker("update", repository.TOTALS), string_element("_id", f"{shop.bucket}|all")),
        "live claims": (claims, f"report:{shop.live}:".encode()),
        "live totals": (command_marker("update", repository.TOTALS), string_element("_id", shop.live)),
        # Claims of the counts do not name the tenant: the stretch holds its first ticket's opening.
        "counts claims": (claims, f"count-delta:{event_id(first_ticket, 1)}".encode()),
        "counts totals": (command_marker("update", counters.TOTALS), string_element("_id", shop.id)),
    }[fold]


def _totals_of(fold: str, shop: Shop) -> tuple[str, str]:
    """Where the totals of the log a fold writes live: (collection, _id)."""
    if fold.startswith("month"):
        return repository.TOTALS, f"{shop.bucket}|all"
    if fold.startswith("live"):
        return repository.TOTALS, shop.live
    return counters.TOTALS, shop.id


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("fold", FOLDS)
async def test_a_lost_fold_is_made_good_by_the_next_one(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    direct: Database,
    store_proxy: StoreProxy,
    fold: str,
    lose: Lose,
) -> None:
    """Tickets opened, assumed and finalized; the compaction at a log's 8th entry loses its
    claims or its totals (what a process killed between the entries and their fold leaves). The
    figures read the tail meanwhile; the next compaction (at the 16th) folds on; nothing counts
    twice, nothing is missing."""
    shop = await _shop(client, admin_headers, direct, None)
    first = await _round(browser, shop)  # 3 month entries, 2 live, 3 deltas: no compaction yet
    collection, totals_id = _totals_of(fold, shop)
    assert await _watermark(direct, collection, totals_id) == 0
    sprung = store_proxy.stall_next(*_fold_markers(fold, shop, first), lose=lose)
    for _ in range(8):
        if sprung.is_set():
            break
        await _round(browser, shop)
    assert sprung.is_set(), f"no compaction sent the {fold}"
    stored = await _watermark(direct, collection, totals_id)
    # What the fault left: only a totals write whose answer was lost moved the watermark.
    assert stored == (8 if fold.endswith("totals") and lose == "reply" else 0), stored
    await check_figures(browser, direct, shop)

    for _ in range(10):  # the fold's next pass: the writer's compaction at the 16th entry
        if await _watermark(direct, collection, totals_id) >= 16:
            break
        await _round(browser, shop)
    assert await _watermark(direct, collection, totals_id) >= 16
    truth = await check_figures(browser, direct, shop)
    counts = Counter(p.kind for p in truth.parts)
    assert counts["o"] == counts["a"] == counts["f"] == len(truth.states), counts


# ---------------------------------------------------------------------------------------------
# Competitors


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("log", ["reports", "counts"])
async def test_a_fold_by_another_process_while_an_entry_insert_is_stalled_counts_it_once(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    direct: Database,
    mongo_url: str,
    store_proxy: StoreProxy,
    log: str,
    lose: Lose,
) -> None:
    """An assume's entries (the month's and the queue's, or its counts delta) stall on their way
    to the store; meanwhile another process compacts the log. With the request lost the fold
    cannot see the entry and the writer's retry appends it after the watermark; with the reply
    lost the fold claims and folds it and the retry appends a copy. Either way it counts once, then
    and after the next folds."""
    shop = await _shop(client, admin_headers, direct, None)
    await _round(browser, shop)
    ticket_id = await _api_ticket(browser, shop)
    eid = event_id(ticket_id, 2)
    if log == "reports":
        markers = (command_marker("insert", repository.ENTRIES), string_element("key", f"ev:{eid}"))
    else:
        markers = (command_marker("insert", counters.DELTAS), string_element("event_id", eid))
    sprung = store_proxy.stall_next(*markers, lose=lose)
    click = await _sprung_during(sprung, _click(browser, shop.agent, ticket_id, "assume"), f"the assume's {log}")
    if lose == "reply":  # the insert was sent on: the fold comes once the store has it

        async def stored() -> bool:
            if log == "reports":
                return await _copies(direct, shop.bucket, f"ev:{eid}") > 0
            return bool(await direct[counters.DELTAS].count_documents({"event_id": eid}))

        assert await last_within(stored, timeout=STALL), "the insert whose answer was lost never ran"
    async with recorded(direct, mongo_url) as (other, _):
        if log == "reports":
            folded = await repository.MONTHS.compact(other, shop.bucket)
            await repository.LIVE.compact(other, shop.live)
            canonical = await repository.MONTHS.canonical(other, shop.bucket, f"ev:{eid}")
        else:
            folded = await counters.COUNTS.compact(other, shop.id)
            canonical = await counters.COUNTS.canonical(other, shop.id, eid)
    assert not click.done(), "the other process's fold did not run while the entry's insert was stalled"
    # The fold saw the entry only when its insert ran (its answer lost).
    assert (canonical is not None and canonical <= folded) == (lose == "reply"), (canonical, folded)
    first = await click
    assert first.status_code == 200, first.text
    await check_figures(browser, direct, shop)
    if log == "reports":
        collection, totals_id, entries = repository.TOTALS, f"{shop.bucket}|all", repository.ENTRIES
        copies = {"bucket": shop.bucket, "key": f"ev:{eid}"}
    else:
        collection, totals_id, entries, copies = counters.TOTALS, shop.id, counters.DELTAS, {"event_id": eid}
    late = max(int(e["seq"]) for e in await direct[entries].find(copies).to_list(None))
    rounds = 0
    while await _watermark(direct, collection, totals_id) < late:  # the writer's next compaction
        assert rounds < 4, f"no compaction folded past entry {late}"
        await _round(browser, shop)
        rounds += 1
    truth = await check_figures(browser, direct, shop)
    counts = Counter(p.kind for p in truth.parts)
    assert (counts["o"], counts["a"], counts["f"]) == (2 + rounds, 2 + rounds, 1 + rounds), counts


async def test_two_processes_fold_the_same_stretch_and_one_writes_an_older_pair_back(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    direct: Database,
    mongo_url: str,
) -> None:
    """Two other processes fold the same stretch of the month and of the counts: one (P2) is held
    between its fold and its write; the other (P3) writes its pair; the backend's own writer then
    compacts further; P2 writes its older pair back over the newer one (what FerretDB's
    whole-document updates allow). The figures stay exact, and so do the next compactions — the
    month's from the pair the writer remembers (foldlog `keeps_totals`), the counts' from the
    stored one (with its `complete` mark)."""
    shop = await _shop(client, admin_headers, direct, None)
    for _ in range(4):  # 12 month entries and 12 deltas: folded to 8 by the writer
        await _round(browser, shop)
    month_id, counts_id = f"{shop.bucket}|all", shop.id
    assert await _watermark(direct, repository.TOTALS, month_id) == 8
    assert await _watermark(direct, counters.TOTALS, counts_id) == 8

    folded, release = asyncio.Event(), asyncio.Event()
    held: list[int] = []

    def holding(log_: FoldLog) -> FoldLog:
        copy = dataclasses.replace(log_)  # the same log, another process's handle on it
        real = copy.write_all

        async def write_all(db: Database, bucket: str, written: Mapping[str, Totals]) -> None:
            held.append(max(t.watermark for t in written.values()))
            folded.set()
            await release.wait()
            await real(db, bucket, written)

        copy.write_all = write_all  # type: ignore[method-assign]
        return copy

    async with recorded(direct, mongo_url) as (p2, _), recorded(direct, mongo_url) as (p3, _):
        p2_months, p2_counts = holding(repository.MONTHS), holding(counters.COUNTS)
        month_task = asyncio.create_task(p2_months.compact(p2, shop.bucket))
        await asyncio.wait_for(folded.wait(), STALL)
        folded.clear()
        counts_task = asyncio.create_task(p2_counts.compact(p2, shop.id))
        await asyncio.wait_for(folded.wait(), STALL)
        assert held == [12, 12], held
        assert await repository.MONTHS.compact(p3, shop.bucket) == 12  # P3: the same stretch, written
        assert await counters.COUNTS.compact(p3, shop.id) == 12
        for _ in range(2):  # the writer compacts at 16 (from its own pair at 8)
            await _round(browser, shop)
        assert await _watermark(direct, repository.TOTALS, month_id) == 16
        assert await _watermark(direct, counters.TOTALS, counts_id) == 16
        release.set()
        assert await month_task == 12 and await counts_task == 12
    assert await _watermark(direct, repository.TOTALS, month_id) == 12  # the older pair, written back
    assert await _watermark(direct, counters.TOTALS, counts_id) == 12
    await check_figures(browser, direct, shop)
    for _ in range(3):  # the writer's next compactions (at 24)
        await _round(browser, shop)
    assert await _watermark(direct, repository.TOTALS, month_id) == 24
    assert await _watermark(direct, counters.TOTALS, counts_id) == 24
    truth = await check_figures(browser, direct, shop)
    counts = Counter(p.kind for p in truth.parts)
    assert counts["o"] == counts["a"] == counts["f"] == 9, counts


@pytest.mark.parametrize("lose", ["request", "reply"])
async def test_a_reply_sent_while_the_first_client_message_is_redelivered_keeps_its_first_response(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    direct: Database,
    store_proxy: StoreProxy,
    lose: Lose,
) -> None:
    """The client's first message is stored and shown, but its record loses the first-in claim
    and the processor's redeliveries keep failing a little while; meanwhile the agent assumes and
    answers. Once the message is recorded, and after a second reply, the first response is the
    first reply's — neither missing nor the second reply's."""
    shop = await _shop(client, admin_headers, direct, evolution)
    assert shop.conn is not None
    phone, key = unique_phone(), _provider_key()
    asked_id = message_id_for(shop.conn["id"], key)
    marker = (command_marker("insert", "natural_keys"), f"{repository.FIRST_IN}:".encode())
    traps = [store_proxy.stall_next(*marker, lose=lose) for _ in range(3)]  # the first attempt and two retries
    ack = await _writes(evolution, shop, phone, "meu boleto venceu", key)
    assert await last_within(lambda: _is_set(traps[0]), timeout=STALL), "the first-in claim was never sent"
    ticket_id = await _ticket_of(direct, shop, asked_id)  # stored (and shown) before it is recorded
    assert (await _click(browser, shop.agent, ticket_id, "assume")).status_code == 200
    first_key = uuid.uuid4().hex
    first = await _reply(browser, shop, ticket_id, first_key, "vou gerar outro")
    # The reply's record claims the first client message's time itself when that message's record
    # has not (reports.service._first_in_of_opening): with the claims still lost (`request`) its
    # request fails too, and the Composer repeats it with the same key once the store answers.
    assert first.status_code == 201 or (lose == "request" and first.status_code == 503), first.text
    store_proxy.traps.clear()  # the store answers again: the next redelivery goes through
    if first.status_code == 503:
        first = await _reply(browser, shop, ticket_id, first_key, "vou gerar outro")
        assert first.status_code in (200, 201), first.text
    raw = await _processed(direct, ack)
    assert int(raw.get("attempts") or 0) >= 2, raw  # recorded by a redelivery (complete_stored)
    # Nothing is left on its way now (the delivery is processed, the reply answered): the figures
    # are what they will stay.
    with_one, _ = await wrong_figures(browser, direct, shop, within=3.0)
    second = await _reply(browser, shop, ticket_id, uuid.uuid4().hex, "pronto, enviado")
    assert second.status_code == 201, second.text
    with_two, truth = await wrong_figures(browser, direct, shop, within=3.0)
    assert not with_one and not with_two, "\n".join(
        ["after the first reply:", *with_one, "after the second reply:", *with_two]
    )
    await _check_totals_are_their_entries_fold(direct, shop)
    [fr] = [p.value for p in truth.parts if p.kind == "fr"]
    asked, replied = (
        await direct.messages.find_one({"_id": asked_id}),
        await direct.messages.find_one({"_id": first.json()["id"]}),
    )
    assert asked is not None and replied is not None
    assert fr == _ms(asked["created_at"], replied["created_at"])
