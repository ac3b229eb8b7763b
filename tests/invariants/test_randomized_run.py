"""The general proof of the conversation invariants (issue 13): a randomized run on the real
store with real processes, SIGKILLed at random moments, then every invariant checked from the
database, the API and the fake provider's own log.

Load: clients writing over two WhatsApp numbers (each chat delivers in order, redelivering until
acknowledged and sometimes again after), API-channel tickets, agents assuming, transferring,
finalizing and replying. Faults: SIGKILL of the backend (API + outbound worker) or of the
standalone webhook processor, restarted after a random pause. Seed and rounds: PROOF_SEED,
PROOF_ROUNDS (the seed is printed, so a failing run can be replayed).
"""

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from backend.core.clock import as_utc
from backend.webhooks.service import message_id_for
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.factories import API, Tenant, collect_pages, login, make_client, make_tenant, unique_phone
from tests.fakes.harness import ROOT, FakeEvolution, evolution, make_connection, wait_for
from tests.outbound.helpers import unsigned
from tests.persistence.procs import Backend
from tests.webhooks.helpers import text_upsert

pytestmark = pytest.mark.slow
__all__ = ["evolution"]  # the fake provider as its own process (tests/fakes/harness.py)

HOOK = f"{API}/webhooks/whatsapp"
ROUNDS = int(os.environ.get("PROOF_ROUNDS", "5"))
ROUND_SECONDS = float(os.environ.get("PROOF_ROUND_SECONDS", "5"))
SEED = int(os.environ.get("PROOF_SEED", str(random.randrange(2**31))))
OPEN = ("espera", "atendendo")
STATE_FIELDS = ("status", "agent_id", "department_id", "finalized_at", "finalized_by")


@dataclass
class Stack:
    """The backend (API + outbound worker) and a standalone webhook processor, both killable."""

    backend: Backend
    log_dir: Path
    processor: subprocess.Popen[bytes] | None = None
    kills: Counter[str] = field(default_factory=Counter)

    def start_processor(self) -> None:
        out = (self.log_dir / "processor.log").open("ab")
        self.processor = subprocess.Popen(
            [sys.executable, "-m", "backend.webhooks"],
            cwd=ROOT,
            env={**self.backend.env(), "WEBHOOK_PROCESSOR_ENABLED": "true"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()

    def kill_processor(self) -> None:
        if self.processor is not None:
            self.processor.send_signal(signal.SIGKILL)
            self.processor.wait()
            self.processor = None

    def stop(self) -> None:
        self.backend.stop()
        if self.processor is not None and self.processor.poll() is None:
            self.processor.terminate()
            try:
                self.processor.wait(15)
            except subprocess.TimeoutExpired:
                self.processor.kill()
                self.processor.wait()


@pytest.fixture(scope="module")
async def stack(mongo_url: str, db_name: str, evolution: FakeEvolution, tmp_path_factory: Any) -> AsyncIterator[Stack]:
    logs = tmp_path_factory.mktemp("proof")
    backend = Backend(mongo_url, db_name, logs / "backend.log")
    backend.extra_env.update(
        {
            "LOG_LEVEL": "WARNING",
            "EVOLUTION_BASE_URL": evolution.url,
            "EVOLUTION_API_KEY": evolution.api_key,
            "EVOLUTION_TIMEOUT_SECONDS": "5",
            "PUBLIC_BASE_URL": backend.base_url,
            "WEBHOOK_PROCESSOR_ENABLED": "false",
            "WEBHOOK_POLL_SECONDS": "0.2",
            "WEBHOOK_LEASE_SECONDS": "3",
            "WEBHOOK_HOLE_GRACE_SECONDS": "1",
            "OUTBOUND_POLL_SECONDS": "0.1",
            "OUTBOUND_LEASE_SECONDS": "3",
            "OUTBOUND_BACKOFF_BASE_SECONDS": "0.1",
            "OUTBOUND_BACKOFF_MAX_SECONDS": "1",
        }
    )
    s = Stack(backend, logs)
    await asyncio.to_thread(backend.start)
    s.start_processor()
    try:
        yield s
    finally:
        await asyncio.to_thread(s.stop)


def _upsert(phone: str, key_id: str, text: str) -> dict[str, Any]:
    return text_upsert(phone, key_id, text)


@dataclass
class Chat:
    phone: str
    conn: dict[str, Any]
    token: str
    acked: list[str] = field(default_factory=list)  # provider key ids in delivery order


@dataclass
class Run:
    rng: random.Random
    http: httpx.AsyncClient
    tenant: Tenant
    chats: list[Chat]
    client_ids: dict[str, str]  # phone -> client id
    replies: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # chat -> texts, ack order
    reply_ids: dict[str, str] = field(default_factory=dict)  # text -> message id
    counts: Counter[str] = field(default_factory=Counter)
    reply_seq: int = 0

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        """None when the backend was not there to answer (killed, restarting)."""
        try:
            return await self.http.request(method, path, **kwargs)
        except httpx.HTTPError:
            self.counts["unanswered"] += 1
            return None


async def _deliver(run: Run, chat: Chat, key_id: str, text: str) -> bool:
    r = await run.call(
        "POST",
        f"{HOOK}/{chat.conn['id']}",
        json=_upsert(chat.phone, key_id, text),
        headers={"X-Webhook-Token": chat.token},
    )
    return r is not None and r.status_code == 200


async def _client_writes(run: Run, chat: Chat, index: int, until: float) -> None:
    """One chat: each message delivered after the previous one was acknowledged (as Evolution
    does), redelivered until acknowledged, and sometimes delivered again after that."""
    while time.monotonic() < until:
        n = len(chat.acked)
        key_id, text = f"K{index}x{n}", f"chat {index} msg {n}"
        while not await _deliver(run, chat, key_id, text):
            run.counts["redelivered_unacked"] += 1
            await asyncio.sleep(0.2)
        chat.acked.append(key_id)
        run.counts["inbound_acked"] += 1
        if run.rng.random() < 0.15:
            await _deliver(run, chat, key_id, text)
            run.counts["redelivered_acked"] += 1
        await asyncio.sleep(run.rng.uniform(0.02, 0.4))


def _chat_key(conn_id: str, phone: str) -> str:
    return f"{conn_id}:{phone}"


async def _agent_works(run: Run, agent: dict[str, Any], until: float) -> None:
    headers = agent["headers"]
    while time.monotonic() < until:
        await asyncio.sleep(run.rng.uniform(0.02, 0.3))
        r = await run.call("GET", f"{API}/tickets", params={"status": "espera", "limit": 50}, headers=headers)
        if r is not None and r.status_code == 200 and r.json()["items"] and run.rng.random() < 0.6:
            ticket = run.rng.choice(r.json()["items"])
            a = await run.call("POST", f"{API}/tickets/{ticket['id']}/assume", headers=headers)
            run.counts[f"assume_{a.status_code if a is not None else 'lost'}"] += 1
        r = await run.call("GET", f"{API}/tickets", params={"status": "atendendo", "limit": 50}, headers=headers)
        if r is None or r.status_code != 200:
            continue
        mine = [t for t in r.json()["items"] if t["agent_id"] == agent["id"]]
        if not mine:
            continue
        ticket = run.rng.choice(mine)
        roll = run.rng.random()
        if roll < 0.6:
            run.reply_seq += 1
            text = f"reply {run.reply_seq} by {agent['id'][-4:]}"
            m = await run.call("POST", f"{API}/tickets/{ticket['id']}/messages", json={"body": text}, headers=headers)
            if m is not None and m.status_code == 201:
                run.counts["replies_acked"] += 1
                if ticket["channel"] != "api":
                    run.replies[_chat_key(ticket["channel"], ticket["client_phone"])].append(text)
                    run.reply_ids[text] = m.json()["id"]
        elif roll < 0.7:
            depts = [d["id"] for d in run.tenant.departments]
            t = await run.call(
                "POST",
                f"{API}/tickets/{ticket['id']}/transfer",
                json={"department_id": run.rng.choice(depts)},
                headers=headers,
            )
            run.counts[f"transfer_{t.status_code if t is not None else 'lost'}"] += 1
        else:
            f = await run.call("POST", f"{API}/tickets/{ticket['id']}/finalize", headers=headers)
            run.counts[f"finalize_{f.status_code if f is not None else 'lost'}"] += 1


async def _api_channel(run: Run, until: float) -> None:
    """Staff open API-channel tickets for the same clients (409 while one is open)."""
    phones = list(run.client_ids)
    while time.monotonic() < until:
        await asyncio.sleep(run.rng.uniform(0.1, 0.6))
        body = {
            "client_id": run.client_ids[run.rng.choice(phones)],
            "department_id": run.rng.choice(run.tenant.departments)["id"],
            "message": "aberto pela equipe",
        }
        r = await run.call("POST", f"{API}/tickets", json=body, headers=run.tenant.headers)
        run.counts[f"api_ticket_{r.status_code if r is not None else 'lost'}"] += 1


async def _fault(run: Run, stack: Stack, until: float) -> None:
    """One SIGKILL at a random moment of the round, then a restart after a random pause."""
    await asyncio.sleep(run.rng.uniform(0.3, max(0.4, until - time.monotonic() - 0.5)))
    if run.rng.random() < 0.5:
        stack.backend.kill()
        stack.kills["backend"] += 1
        await asyncio.sleep(run.rng.uniform(0.0, 1.0))
        await asyncio.to_thread(stack.backend.start)
    else:
        stack.kill_processor()
        stack.kills["processor"] += 1
        await asyncio.sleep(run.rng.uniform(0.0, 1.0))
        stack.start_processor()


async def _open_slots_ok(db: Any, reseller_id: str) -> None:
    """Judged on the event log (the truth), not on projections that may be converging."""
    events = await db.ticket_events.find({"reseller_id": reseller_id}).to_list(None)
    slot: dict[str, tuple[str, str]] = {}
    last: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["version"] == 1:
            slot[e["ticket_id"]] = (e["data"]["ticket"]["client_id"], e["data"]["ticket"]["channel"])
        if e["ticket_id"] not in last or e["version"] > last[e["ticket_id"]]["version"]:
            last[e["ticket_id"]] = e
    per_slot = Counter(slot[t] for t, e in last.items() if e["state"]["status"] in OPEN)
    doubled = {k: n for k, n in per_slot.items() if n > 1}
    assert not doubled, f"more than one open ticket per (client, channel): {doubled}"


async def _fold_matches(db: Any, reseller_id: str) -> list[str]:
    """Tickets whose projection differs from the fold of their events."""
    events = await db.ticket_events.find({"reseller_id": reseller_id}).to_list(None)
    last: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["ticket_id"] not in last or e["version"] > last[e["ticket_id"]]["version"]:
            last[e["ticket_id"]] = e
    tickets = {t["_id"]: t for t in await db.tickets.find({"reseller_id": reseller_id}).to_list(None)}
    wrong = []
    for ticket_id, e in last.items():
        t = tickets.get(ticket_id)
        if t is None or t["version"] != e["version"] or any(t.get(k) != e["state"].get(k) for k in STATE_FIELDS):
            wrong.append(ticket_id)
    return wrong


async def test_randomized_run_keeps_every_conversation_invariant(
    stack: Stack, evolution: FakeEvolution, db_name: str, mongo_url: str
) -> None:
    rng = random.Random(SEED)
    print(f"\n[proof] seed={SEED} rounds={ROUNDS}")
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    db = mongo[db_name]
    try:
        async with httpx.AsyncClient(base_url=stack.backend.base_url, timeout=30) as http:
            admin = await login(http, ADMIN_EMAIL, ADMIN_PASSWORD)
            tenant = await make_tenant(http, admin, departments=2, agents=3)
            conns = [await make_connection(http, tenant, evolution) for _ in range(2)]
            phones = [unique_phone() for _ in range(5)]
            client_ids = {p: (await make_client(http, tenant, phone=p))["id"] for p in phones}
            chats: list[Chat] = []
            for conn in conns:
                stored = await db.whatsapp_connections.find_one({"_id": conn["id"]})
                assert stored is not None
                token = str(stored["webhook_token"])
                chats.extend(Chat(p, conn, token) for p in phones)
            run = Run(rng, http, tenant, chats, client_ids)

            for _ in range(ROUNDS):
                until = time.monotonic() + ROUND_SECONDS
                await asyncio.gather(
                    *(_client_writes(run, chat, i, until) for i, chat in enumerate(chats)),
                    *(_agent_works(run, agent, until) for agent in tenant.agents),
                    _api_channel(run, until),
                    _fault(run, stack, until),
                )
                await _open_slots_ok(db, tenant.id)  # "always", sampled between rounds

            if stack.backend.proc is None:
                await asyncio.to_thread(stack.backend.start)
            if stack.processor is None or stack.processor.poll() is not None:
                stack.start_processor()
            conn_ids = [c["id"] for c in conns]
            await _check(run, db, evolution, tenant, conn_ids, stack)
    finally:
        await mongo.close()


async def _check(
    run: Run, db: Any, evolution: FakeEvolution, tenant: Tenant, conn_ids: list[str], stack: Stack
) -> None:
    # Drain: every acknowledged delivery processed (none failed: a failed one is a lost message),
    # every reply out of the outbox.
    async def drained() -> bool:
        pending = await db.webhook_events_raw.count_documents(
            {"connection_id": {"$in": conn_ids}, "status": "received"}
        )
        unsent = await db.messages.count_documents({"reseller_id": tenant.id, "status": "pending"})
        return bool(pending == 0 and unsent == 0)

    await wait_for(drained, timeout=180, interval=0.5)
    failed = await db.webhook_events_raw.find({"connection_id": {"$in": conn_ids}, "status": "failed"}).to_list(None)
    assert not failed, [(f["_id"], f.get("error")) for f in failed]

    # 1. every acknowledged inbound message is stored once, in its chat's ticket, never in a
    #    finalizado ticket it postdates; 3. per chat, stored order equals delivery order.
    tickets = {t["_id"]: t for t in await db.tickets.find({"reseller_id": tenant.id}).to_list(None)}
    inbound = 0
    for chat in run.chats:
        ids = [message_id_for(chat.conn["id"], k) for k in chat.acked]
        docs = {d["_id"]: d for d in await db.messages.find({"_id": {"$in": ids}}).to_list(None)}
        missing = [k for k, i in zip(chat.acked, ids, strict=True) if i not in docs]
        assert not missing, f"acknowledged but not stored: {missing}"
        for i in ids:
            m = docs[i]
            t = tickets[m["ticket_id"]]
            assert t["channel"] == chat.conn["id"] and t["client_phone"] == chat.phone, (i, t["_id"])
            if t["status"] == "finalizado":
                assert as_utc(m["created_at"]) <= as_utc(t["finalized_at"]), (
                    f"{i} filed into a closed ticket {t['_id']}"
                )
        stamps = [docs[i]["created_at"] for i in ids]
        assert stamps == sorted(stamps), f"chat {chat.phone} on {chat.conn['id']} stored out of order"
        inbound += len(ids)
    stored_in = await db.messages.count_documents(
        {
            "reseller_id": tenant.id,
            "direction": "in",
            "ticket_id": {"$in": [t for t in tickets if tickets[t]["channel"] != "api"]},
        }
    )
    assert stored_in == inbound, (stored_in, inbound)  # nothing stored twice, nothing unacknowledged lost

    # 2. at most one open ticket per (client, channel).
    await _open_slots_ok(db, tenant.id)

    # 4. every projection equals the fold of its events (converging without readers).
    async def converged() -> bool:
        return not await _fold_matches(db, tenant.id)

    try:
        await wait_for(converged, timeout=60, interval=0.5)
    except AssertionError:
        raise AssertionError(f"projection differs from the log: {await _fold_matches(db, tenant.id)}") from None

    # 5. lists and counts agree with the tickets.
    tickets = {t["_id"]: t for t in await db.tickets.find({"reseller_id": tenant.id}).to_list(None)}
    counts = (await run.http.get(f"{API}/tickets/counts", headers=tenant.headers)).json()
    for status in ("espera", "atendendo", "finalizado"):
        listed = await collect_pages(run.http, tenant.headers, f"{API}/tickets", status=status)
        expected = {i for i, t in tickets.items() if t["status"] == status}
        assert {t["id"] for t in listed} == expected, status
        assert counts[status] == len(expected), (status, counts)

    # 6. every reply sent exactly once, in order per chat. A send whose process was killed during
    #    the provider call may be repeated (Evolution has no idempotency key); such a repeat must
    #    show as a second claimed attempt of that reply.
    sent = await evolution.sent()
    instance_of = {c["id"]: c["instance_name"] for c in (chat.conn for chat in run.chats)}
    by_text = Counter(unsigned(s["text"]) for s in sent)
    repeats = 0
    for chat_key, texts in run.replies.items():
        conn_id, phone = chat_key.split(":", 1)
        order = [unsigned(s["text"]) for s in sent if s["instance"] == instance_of[conn_id] and s["number"] == phone]
        firsts = list(dict.fromkeys(t for t in order if t in set(texts)))
        assert firsts == texts, f"replies of {chat_key} reached the client out of order"
        for text in texts:
            assert by_text[text] >= 1, f"reply {text!r} never sent"
            if by_text[text] > 1:
                repeats += 1
                second = await db.outbox_attempts.find_one({"_id": f"{run.reply_ids[text]}:2"})
                assert second is not None, f"reply {text!r} sent {by_text[text]} times from one attempt"
        stored = await db.messages.find({"_id": {"$in": [run.reply_ids[t] for t in texts]}}).to_list(None)
        assert all(m["status"] not in ("pending", "failed") for m in stored), chat_key

    open_now = sum(1 for t in tickets.values() if t["status"] in OPEN)
    print(
        f"[proof] seed={SEED} rounds={ROUNDS} kills={dict(stack.kills)} inbound_acked={inbound} "
        f"tickets={len(tickets)} open={open_now} replies={sum(len(v) for v in run.replies.values())} "
        f"repeated_sends={repeats} counts={dict(run.counts)}"
    )
