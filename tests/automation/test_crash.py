"""Each automatic step sent exactly once across webhook redeliveries and crashes. No processor and
no outbox worker run in the API process here (both disabled: "the process died right after
storing"): this module runs the webhook processor's passes itself, killing one mid-step (a
BaseException nothing catches, as SIGKILL leaves a claimed attempt behind), and real `python -m
backend.outbound` processes send, one of them SIGKILLed."""

import asyncio
import signal
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.automation import service as automation
from backend.connections.providers import registry
from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.core.tenancy import Actor
from backend.messages import repository as messages_repo
from backend.messages import service as messages
from backend.messages.models import Message
from backend.outbound import service as outbound
from backend.outbound.worker import OutboundWorker
from backend.tickets import service as tickets
from backend.tickets.sweep import sweep_once
from backend.webhooks.processor import WebhookProcessor
from backend.webhooks.service import message_id_for
from tests.automation.helpers import TOKYO_HOURS, TUESDAY_NIGHT, at, automatic, company, open_ticket, tickets_of
from tests.factories import API, Tenant, unique_phone
from tests.fakes.harness import FakeEvolution, wait_for
from tests.outbound.helpers import start_worker
from tests.webhooks.helpers import raw_id_of, text_upsert

HOOK = "/api/v1/webhooks/whatsapp"
CONFIG = {
    "welcome_message": "Olá {{cliente}}!",
    "away_message": "Fechados agora; protocolo {{protocolo}}.",
    "closing_message": "Encerrado: {{protocolo}}.",
    "csat_enabled": True,
    "timezone": "Asia/Tokyo",
    "business_hours": TOKYO_HOURS,
}


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    # No background sweep: the tests run it themselves (`sweep_once`) where a process would, and
    # one running on its own could finish a finalize's hooks before the test's kill point.
    return {
        "WEBHOOK_PROCESSOR_ENABLED": False,
        "OUTBOUND_WORKER_ENABLED": False,
        "TICKET_SWEEP_ENABLED": False,
        "WEBHOOK_LANES": 4,
    }


class _Killed(BaseException):
    """The process dying mid-step: nothing after the raise runs, no handler catches it."""


def _upsert(phone: str, key_id: str, text: str) -> dict[str, Any]:
    return text_upsert(phone, key_id, text, name="Maria")


async def _deliver(client: httpx.AsyncClient, db: Any, conn: dict[str, Any], phone: str, key_id: str, text: str) -> str:
    """The provider posts the message (again, when called again with the same key id)."""
    token = (await db.whatsapp_connections.find_one({"_id": conn["id"]}))["webhook_token"]
    r = await client.post(f"{HOOK}/{conn['id']}", json=_upsert(phone, key_id, text), headers={"X-Webhook-Token": token})
    assert r.status_code == 200, r.text
    return raw_id_of(r)


async def _process(db: Any, settings: Settings, raw_id: str) -> dict[str, Any]:
    await WebhookProcessor(db, settings).run_once({int(raw_id.split(":")[1])})
    raw: dict[str, Any] = await db.webhook_events_raw.find_one({"_id": raw_id})
    assert raw["status"] == "processed", raw
    return raw


async def _process_again(db: Any, settings: Settings, raw_id: str) -> dict[str, Any]:
    """Attempt 1 died; its lease runs out; attempt 2 runs."""
    past = utcnow() - timedelta(seconds=1)
    await db.webhook_attempts.update_one({"_id": f"{raw_id}:1"}, {"$set": {"lease_until": past}})
    raw = await _process(db, settings, raw_id)
    assert raw["attempts"] == 2, raw
    return raw


async def _stored_open(db: Any, settings: Settings, conn: dict[str, Any]) -> None:
    """The phone's "open" state delivery processed (no processor runs here): the connection can
    send, or the worker retries every send and the finalize queues no closing message or survey."""
    pending = await db.webhook_events_raw.find({"connection_id": conn["id"], "status": "received"}).to_list(None)
    await WebhookProcessor(db, settings).run_once({int(r["_id"].split(":")[1]) for r in pending})
    assert (await db.whatsapp_connections.find_one({"_id": conn["id"]}))["status"] == "open"


async def _sent_in_process(db: Any, settings: Settings, ticket_id: str) -> None:
    """An in-process worker's passes until the ticket's automatic messages all left."""
    async with registry.http_client(settings) as http:
        worker = OutboundWorker(db, settings, http)

        async def all_left() -> bool:
            await worker.run_once()
            return all(m["status"] == "sent" for m in await automatic(db, ticket_id))

        assert await wait_for(all_left, timeout=60)


async def _menu_company(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, config: dict[str, Any] = CONFIG
) -> tuple[Tenant, dict[str, Any]]:
    tenant, conn = await company(client, admin_headers, evolution, config=config, processed=False)
    menu = {"menu_enabled": True, "menu_department_ids": [d["id"] for d in tenant.departments], "menu_text": "Menu:"}
    r = await client.patch(f"{API}/whatsapp-connections/{conn['id']}", json=menu, headers=tenant.headers)
    assert r.status_code == 200, r.text
    return tenant, r.json()


async def _sent_exactly_once(
    evolution: FakeEvolution, settings: Settings, tmp_path: Path, phone: str, texts: list[str]
) -> None:
    """Two worker processes send what is queued; one is SIGKILLed, the other stopped; a third
    started afterwards finds nothing left to send. Every text went out once (a text listed twice,
    twice: two tickets' identical menus)."""
    expected = Counter(texts)
    workers = [start_worker(settings, tmp_path / f"worker{i}.log") for i in range(2)]
    try:

        async def all_out() -> bool:
            sent = Counter(s["text"] for s in await evolution.sent() if s["number"] == phone)
            return all(sent[t] >= n for t, n in expected.items())

        await wait_for(all_out, timeout=90)
        workers[0].send_signal(signal.SIGKILL)
        workers[1].send_signal(signal.SIGTERM)
        # A clean stop; or, on a loaded machine where the first worker sent everything before the
        # second finished starting, the default SIGTERM death of one that had no handler yet.
        assert workers[1].wait(10) in (0, -signal.SIGTERM)
        workers[0].wait(10)
        late = start_worker(settings, tmp_path / "worker-late.log")
        workers.append(late)
        await asyncio.sleep(1.0)  # several polls over the whole queue: nothing is sent again
        late.terminate()
        late.wait(10)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    sent = Counter(s["text"] for s in await evolution.sent() if s["number"] == phone)
    assert {t: sent[t] for t in expected} == dict(expected), sent
    assert sum(sent.values()) == len(texts), sent


async def test_every_automatic_step_survives_webhook_redeliveries_and_is_sent_once(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant, conn = await _menu_company(client, admin_headers, evolution)
    await _stored_open(db, settings, conn)
    phone = unique_phone()
    at(monkeypatch, TUESDAY_NIGHT)
    first = f"A{phone}"
    for _ in range(2):  # the provider posts the opening message twice
        await _process(db, settings, await _deliver(client, db, conn, phone, first, "oi"))
    ticket = await open_ticket(db, tenant, phone)
    assert [m["automatic_purpose"] for m in await automatic(db, ticket["_id"])] == ["greeting", "away", "menu"]
    for _ in range(2):  # and the answer twice
        await _process(db, settings, await _deliver(client, db, conn, phone, f"B{phone}", "2"))
    events = await db.ticket_events.find({"ticket_id": ticket["_id"]}).to_list(None)
    assert sorted(e["type"] for e in events) == ["created", "routed"]
    agent = tenant.agents[1]["headers"]  # Financeiro's
    assert (await client.post(f"{API}/tickets/{ticket['_id']}/assume", headers=agent)).status_code == 200
    assert (await client.post(f"{API}/tickets/{ticket['_id']}/finalize", headers=agent)).status_code == 200
    finalized = await tickets.load(db, ticket["_id"])
    assert finalized is not None
    scans: list[str] = []
    scan = messages_repo.client_messages_after_internal

    async def counted_scan(db_: Any, ticket_id: str, at_: Any) -> Any:
        scans.append(ticket_id)
        return await scan(db_, ticket_id, at_)

    monkeypatch.setattr(messages_repo, "client_messages_after_internal", counted_scan)
    await tickets.after_finalize(db, finalized)  # the sweep re-running a finalize's hooks
    assert scans == []  # the finalize's scan ran to its end once: a re-run skips it (a full read on FerretDB)
    await _sent_in_process(db, settings, ticket["_id"])  # a digit rates a question the client received
    for _ in range(2):  # the rating twice
        await _process(db, settings, await _deliver(client, db, conn, phone, f"C{phone}", "4"))
    await tickets.after_finalize(db, finalized)  # and again: the rating stays where it is
    rating = await db.messages.find_one({"_id": message_id_for(conn["id"], f"C{phone}")})
    assert rating["ticket_id"] == ticket["_id"] and rating["rating"] == 4
    events = await db.ticket_events.find({"ticket_id": ticket["_id"]}).to_list(None)
    assert sorted(e["type"] for e in events) == ["assumed", "created", "finalized", "rated", "routed"]
    stored = await automatic(db, ticket["_id"])
    assert [m["automatic_purpose"] for m in stored] == ["greeting", "away", "menu", "closing", "survey"]
    assert len(await tickets_of(db, tenant, phone)) == 1
    await _sent_exactly_once(evolution, settings, tmp_path, phone, [m["body"] for m in stored])


def _kill_after(target: Any, name: str, *, when: Any) -> Any:
    """`target.name` runs, then the process dies when `when(*args)` says so."""
    original = getattr(target, name)

    async def run_then_die(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        if when(*args):
            raise _Killed
        return result

    return run_then_die


async def _killed(*args: Any, **kwargs: Any) -> None:
    raise _Killed


@pytest.mark.parametrize("where", ["before any automatic message", "queued, not stored", "stored, not announced"])
async def test_a_crash_between_storing_and_sending_sends_each_automatic_message_once(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """The client's message is stored, then the process dies: before the automatic messages; or
    after the away message (the second) was queued in the outbox but before it was stored; or
    after the greeting was stored but before the ticket's activity and its announcement."""
    tenant, conn = await _menu_company(client, admin_headers, evolution)
    await _stored_open(db, settings, conn)
    phone = unique_phone()
    raw_id = await _deliver(client, db, conn, phone, f"K{phone}", "oi")
    at(monkeypatch, TUESDAY_NIGHT)
    if where == "before any automatic message":
        monkeypatch.setattr(automation, "after_client_message", _killed)
    elif where == "queued, not stored":
        queued: list[str] = []

        def second(*args: Any) -> bool:
            queued.append("x")
            return len(queued) == 2

        monkeypatch.setattr(outbound, "enqueue", _kill_after(outbound, "enqueue", when=second))
    else:
        original = messages._after_stored

        async def dies_on_automatic(db_: Any, ticket: Any, message: Message) -> None:
            if message.automatic:
                raise _Killed
            await original(db_, ticket, message)

        monkeypatch.setattr(messages, "_after_stored", dies_on_automatic)
    with pytest.raises(_Killed):
        await WebhookProcessor(db, settings).run_once({int(raw_id.split(":")[1])})
    monkeypatch.undo()
    at(monkeypatch, TUESDAY_NIGHT)
    ticket = await open_ticket(db, tenant, phone)
    before = [m["automatic_purpose"] for m in await automatic(db, ticket["_id"])]
    assert before == {"before any automatic message": [], "queued, not stored": ["greeting"]}.get(where, ["greeting"])

    await _process_again(db, settings, raw_id)
    stored = await automatic(db, ticket["_id"])
    assert [m["automatic_purpose"] for m in stored] == ["greeting", "away", "menu"]
    records = await db.tenant_events.find({"reseller_id": tenant.id, "type": "message.created"}).to_list(None)
    announced = {r["message"]["id"] for r in records}
    assert {m["_id"] for m in stored} <= announced  # each shown on open screens, wherever the kill fell
    await _sent_exactly_once(evolution, settings, tmp_path, phone, [m["body"] for m in stored])


async def _held_ticket(
    client: httpx.AsyncClient, db: Any, settings: Settings, tenant: Tenant, conn: dict[str, Any], key: str
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A client's first message processed; its ticket assumed by the first agent. Returns (phone,
    ticket, agent)."""
    phone = unique_phone()
    await _process(db, settings, await _deliver(client, db, conn, phone, f"{key}{phone}", "oi"))
    ticket = await open_ticket(db, tenant, phone)
    agent = tenant.agents[0]
    assert (await client.post(f"{API}/tickets/{ticket['_id']}/assume", headers=agent["headers"])).status_code == 200
    return phone, ticket, agent


async def _finalize_killed(
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
    tenant: Tenant,
    conn: dict[str, Any],
    agent: dict[str, Any],
    ticket_id: str,
) -> None:
    """The agent's finalize dies where the test's patches raise; the patches are undone after."""
    actor = Actor(
        id=agent["id"],
        role="agent",
        name=agent["name"],
        reseller_id=tenant.id,
        department_ids=(conn["default_department_id"],),
    )
    with pytest.raises(_Killed):
        await tickets.finalize(db, actor, ticket_id=ticket_id)
    monkeypatch.undo()


async def test_a_finalize_killed_between_the_closing_message_and_the_survey_is_completed_by_the_sweep(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant, conn = await company(
        client, admin_headers, evolution, config={**CONFIG, "business_hours": []}, processed=False
    )
    await _stored_open(db, settings, conn)
    phone, ticket, agent = await _held_ticket(client, db, settings, tenant, conn, "F")
    since: datetime = utcnow() - timedelta(seconds=5)
    monkeypatch.setattr(
        messages,
        "_after_stored",
        _kill_after(messages, "_after_stored", when=lambda db_, t, m: m.automatic_purpose == "closing"),
    )
    await _finalize_killed(db, monkeypatch, tenant, conn, agent, ticket["_id"])
    assert [m["automatic_purpose"] for m in await automatic(db, ticket["_id"])] == ["greeting", "closing"]
    await sweep_once(db, since=since)
    stored = await automatic(db, ticket["_id"])
    assert [m["automatic_purpose"] for m in stored] == ["greeting", "closing", "survey"]
    await sweep_once(db, since=since)
    assert len(await automatic(db, ticket["_id"])) == 3
    await _sent_exactly_once(evolution, settings, tmp_path, phone, [m["body"] for m in stored])


async def test_a_finalize_killed_before_its_hooks_has_its_closing_message_and_survey_sent_by_the_sweep(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The finalize event is stored and projected, then the process dies before any finalize hook
    (nothing is stored after the finalize, so nothing but the finalize itself brings the ticket to
    the sweep)."""
    tenant, conn = await company(
        client, admin_headers, evolution, config={**CONFIG, "business_hours": []}, processed=False
    )
    await _stored_open(db, settings, conn)
    phone, ticket, agent = await _held_ticket(client, db, settings, tenant, conn, "H")
    since: datetime = utcnow() - timedelta(seconds=5)
    monkeypatch.setattr(tickets, "after_finalize", _killed)
    await _finalize_killed(db, monkeypatch, tenant, conn, agent, ticket["_id"])
    assert getattr(await tickets.load(db, ticket["_id"]), "status", None) == "finalizado"
    assert [m["automatic_purpose"] for m in await automatic(db, ticket["_id"])] == ["greeting"]
    await sweep_once(db, since=since)
    stored = await automatic(db, ticket["_id"])
    assert [m["automatic_purpose"] for m in stored] == ["greeting", "closing", "survey"]
    runs: list[str] = []
    monkeypatch.setattr(automation, "_send", _counting(runs, automation._send))
    await sweep_once(db, since=since)  # the hooks ran to their end: the next sweep leaves them
    assert runs == []
    assert len(await automatic(db, ticket["_id"])) == 3
    await _sent_exactly_once(evolution, settings, tmp_path, phone, [m["body"] for m in stored])


def _counting(runs: list[str], original: Any) -> Any:
    async def counted(*args: Any, **kwargs: Any) -> Any:
        runs.append(str(kwargs.get("purpose")))
        return await original(*args, **kwargs)

    return counted


async def test_a_finalize_killed_after_moving_a_raced_message_on_has_the_new_ticket_greeted_by_the_sweep(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client message stored while the ticket was open but stamped after its finalize (a clock
    ahead) is moved on by the finalize's refile to a new ticket; the process dies before the
    finalize hook greets that ticket. The sweep finishes: greeting and menu, each sent once."""
    config = {**CONFIG, "business_hours": [], "welcome_message": "Olá {{cliente}}, protocolo {{protocolo}}."}
    tenant, conn = await _menu_company(client, admin_headers, evolution, config)
    await _stored_open(db, settings, conn)
    phone, first, agent = await _held_ticket(client, db, settings, tenant, conn, "G")
    ahead = utcnow() + timedelta(seconds=30)
    monkeypatch.setattr(messages, "utcnow", lambda: ahead)
    await _process(db, settings, await _deliver(client, db, conn, phone, f"R{phone}", "mais uma coisa"))
    monkeypatch.setattr(messages, "utcnow", utcnow)
    since: datetime = utcnow() - timedelta(seconds=5)
    monkeypatch.setattr(automation, "_greet_raced", _killed)
    await _finalize_killed(db, monkeypatch, tenant, conn, agent, first["_id"])
    raced = await db.messages.find_one({"_id": message_id_for(conn["id"], f"R{phone}")})
    second = await open_ticket(db, tenant, phone)
    assert raced["ticket_id"] == second["_id"] and second["opening_message_id"] == raced["_id"]
    assert await automatic(db, second["_id"]) == []
    await sweep_once(db, since=since)
    await sweep_once(db, since=since)
    stored = await automatic(db, second["_id"])
    assert [m["automatic_purpose"] for m in stored] == ["greeting", "menu"]
    texts = [m["body"] for m in [*await automatic(db, first["_id"]), *stored]]
    await _sent_exactly_once(evolution, settings, tmp_path, phone, texts)
