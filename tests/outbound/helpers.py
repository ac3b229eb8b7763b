import asyncio
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.connections.providers import registry
from backend.core.config import Settings
from backend.messages.models import Message
from backend.outbound import service as outbound
from backend.outbound.worker import OutboundWorker
from tests.factories import Tenant, unique_phone
from tests.fakes.harness import ROOT, FakeEvolution, wait_for
from tests.webhooks.helpers import settled


async def held_ticket(
    client: httpx.AsyncClient,
    tenant: Tenant,
    evolution: FakeEvolution,
    conn: dict[str, Any],
    db: Any,
    *,
    agent_index: int = 0,
) -> tuple[str, str, dict[str, str]]:
    """A client writes in over WhatsApp and an agent (the first, by default) assumes the ticket.
    Returns (ticket id, client phone, agent headers)."""
    phone = unique_phone()
    result = await evolution.inbound(conn["instance_name"], phone, "Olá, preciso de ajuda")
    assert (await settled(db, result))["status"] == "processed", result
    customer = await db.users.find_one({"reseller_id": tenant.id, "phone": phone})
    ticket = await db.tickets.find_one({"client_id": customer["_id"], "status": "espera"})
    agent = tenant.agents[agent_index]["headers"]
    r = await client.post(f"/api/v1/tickets/{ticket['_id']}/assume", headers=agent)
    assert r.status_code == 200, r.text
    return str(ticket["_id"]), phone, agent


def start_worker(settings: Settings, log: Path, **extra_env: str) -> subprocess.Popen[bytes]:
    """A real `python -m backend.outbound` process on the test's database and fake provider."""
    env = {
        **os.environ,
        "ENV": "test",
        "MONGO_URL": settings.MONGO_URL,
        "MONGO_DB": settings.MONGO_DB,
        "JWT_SECRET": settings.JWT_SECRET,
        "EVOLUTION_BASE_URL": settings.EVOLUTION_BASE_URL,
        "EVOLUTION_API_KEY": settings.EVOLUTION_API_KEY,
        "OUTBOUND_POLL_SECONDS": "0.1",
        "OUTBOUND_LEASE_SECONDS": "10",
        "OUTBOUND_WORKER_ENABLED": "true",
        "LOG_LEVEL": "WARNING",
        **extra_env,
    }
    out = open(log, "ab")  # noqa: SIM115 - owned by the child
    return subprocess.Popen([sys.executable, "-m", "backend.outbound"], cwd=ROOT, env=env, stdout=out, stderr=out)


SIGNATURE = re.compile(r"^\*[^*\n]+:\*\n")


def unsigned(text: str) -> str:
    """A sent text without the agent's signature line (messages.service.signed), for tests about
    which replies were sent, and in what order, rather than how they are signed."""
    return SIGNATURE.sub("", text, count=1)


@pytest.fixture(name="start_worker")
async def worker_loop(db: Any, settings: Settings) -> AsyncIterator[Callable[[], None]]:
    """`start_worker()` starts the outbox worker's loop in the test's process (once); stopped at the
    end of the test. A module imports it (named in its `__all__`) to use it."""
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    async with registry.http_client(settings) as http:

        def start() -> None:
            assert not tasks, "the worker runs already"
            tasks.append(asyncio.create_task(OutboundWorker(db, settings, http).run(stop)))

        try:
            yield start
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, timeout=30)


def quick_lease_worker(db: Any, settings: Settings, http: httpx.AsyncClient, **more: Any) -> OutboundWorker:
    """A worker whose lease (after which an entry without its message is passed) is half a second,
    and whose retry after a failed send comes 2 s later: a later reply's pass sees it waiting."""
    quick = {"OUTBOUND_LEASE_SECONDS": 0.5, "OUTBOUND_BACKOFF_BASE_SECONDS": 2.0}
    return OutboundWorker(db, settings.model_copy(update={**quick, **more}), http)


def writer_dies_once(monkeypatch: pytest.MonkeyPatch, message_id: str) -> list[bool]:
    """The writer of `message_id` dies right after its insert, before its look for the worker's
    mark (outbound `queue_again_if_passed` raises, once, for that message). The list returned gets
    an item when it died."""
    real, died = outbound.queue_again_if_passed, list[bool]()

    async def dies_once(db: Any, message: Message, ticket: Any) -> bool:
        if message.id == message_id and not died:
            died.append(True)
            raise RuntimeError("process killed")
        return await real(db, message, ticket)

    monkeypatch.setattr(outbound, "queue_again_if_passed", dies_once)
    return died


async def passes_until_sent(db: Any, worker: OutboundWorker, message_ids: list[str], *, timeout: float = 60) -> None:  # noqa: ASYNC109
    """Steps `worker`'s passes until every message reads "sent", then one pass more: a message
    queued twice (its first entry passed, then queued again) must still be one send."""

    async def sent() -> bool:
        await worker.run_once()
        found = [await db.messages.find_one({"_id": m}) for m in message_ids]
        return all(doc is not None and doc["status"] == "sent" for doc in found)

    await wait_for(sent, timeout=timeout)
    await worker.run_once()
