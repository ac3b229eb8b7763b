"""Crash between storing a reply and sending it: the API process stores replies with no worker
running (OUTBOUND_WORKER_ENABLED=false stands for "the process died right after storing"), then
real `python -m backend.outbound` processes are started, killed and restarted."""

import asyncio
import signal
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.core.clock import utcnow
from backend.core.config import Settings
from tests.factories import make_tenant
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.outbound.helpers import held_ticket, start_worker, unsigned


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"OUTBOUND_WORKER_ENABLED": False}


async def test_replies_stored_before_a_crash_are_sent_exactly_once_after_restart(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    tmp_path: Path,
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    texts = [f"resposta {i}" for i in range(20)]
    ids = []
    for text in texts:
        r = await client.post(f"/api/v1/tickets/{ticket_id}/messages", json={"body": text}, headers=agent)
        assert r.status_code == 201 and r.json()["status"] == "pending"
        ids.append(r.json()["id"])
    # One more reply whose worker claimed attempt 1 and died before calling the provider.
    r = await client.post(f"/api/v1/tickets/{ticket_id}/messages", json={"body": "órfã"}, headers=agent)
    orphan = r.json()["id"]
    past = utcnow() - timedelta(seconds=60)
    await db.outbox_attempts.insert_one(
        {
            "_id": f"{orphan}:1",
            "message_id": orphan,
            "attempt": 1,
            "worker": "dead",
            "claimed_at": past,
            "lease_until": past,
            "result": None,
        }
    )
    assert [s for s in await evolution.sent() if s["number"] == phone] == []

    # Two worker processes at once, as several backend replicas would run.
    workers = [start_worker(settings, tmp_path / f"worker{i}.log") for i in range(2)]
    try:

        async def all_sent() -> bool:
            n = await db.messages.count_documents({"_id": {"$in": [*ids, orphan]}, "status": "sent"})
            return n == len(ids) + 1

        await wait_for(all_sent, timeout=60)
        workers[0].send_signal(signal.SIGKILL)  # a crash
        workers[1].send_signal(signal.SIGTERM)  # a deploy
        assert workers[1].wait(10) == 0
        workers[0].wait(10)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()

    counts = Counter(unsigned(s["text"]) for s in await evolution.sent() if s["number"] == phone)
    assert counts == Counter({**{t: 1 for t in texts}, "órfã": 1}), counts
    attempt2 = await db.outbox_attempts.find_one({"_id": f"{orphan}:2"})
    assert attempt2["result"] == "sent"

    # Stored while every worker is down; a fresh worker sends it, and nothing before it again.
    r = await client.post(f"/api/v1/tickets/{ticket_id}/messages", json={"body": "depois do deploy"}, headers=agent)
    late = r.json()["id"]
    worker = start_worker(settings, tmp_path / "worker-late.log")
    try:
        await wait_for(lambda: db.messages.find_one({"_id": late, "status": "sent"}), timeout=60)
        await asyncio.sleep(0.5)  # several more polls over the whole queue: still nothing resent
    finally:
        worker.terminate()
        worker.wait(10)
    counts = Counter(unsigned(s["text"]) for s in await evolution.sent() if s["number"] == phone)
    assert counts == Counter({**{t: 1 for t in texts}, "órfã": 1, "depois do deploy": 1}), counts
    assert await db.outbox_state.find_one({"_id": "cursor"}) is not None
