"""A reply whose stored documents do not read (damaged, or written by a newer version during a
rolling deploy) must not hold its chat for good: the worker tries it again for
UNREADABLE_GIVE_UP_SECONDS, sends it if it is mended meanwhile, and otherwise shows it
failed so the replies after it in the chat go on. The API's own worker is off: the tests step
in-process workers' passes."""

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from backend.connections.providers import registry
from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.core.runtime import runtime_of
from backend.messages.models import Message
from backend.outbound import backlog
from backend.outbound import service as outbound
from backend.outbound.models import PassedEntry
from backend.outbound.worker import OutboundWorker
from tests.factories import make_tenant
from tests.fakes.harness import FakeEvolution, make_connection
from tests.outbound.helpers import held_ticket, passes_until_sent, unsigned

UNREADABLE = {"created_at": "not a time"}  # what no `Message` reads


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"OUTBOUND_WORKER_ENABLED": False}


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with registry.http_client(settings) as c:
        yield c


async def _chat_with_replies(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any, texts: list[str]
) -> tuple[str, list[str]]:
    """A client's chat with an agent's replies queued (none sent: the worker is off). Returns
    (client phone, reply ids)."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    ids = []
    for text in texts:
        r = await client.post(f"/api/v1/tickets/{ticket_id}/messages", json={"body": text}, headers=agent)
        assert r.status_code == 201 and r.json()["status"] == "pending", r.text
        ids.append(str(r.json()["id"]))
    return phone, ids


async def _received(evolution: FakeEvolution, phone: str) -> list[str]:
    return [unsigned(s["text"]) for s in await evolution.sent() if s["number"] == phone]


async def _stored(db: Any, message_id: str) -> dict[str, Any]:
    doc = await db.messages.find_one({"_id": message_id})
    assert doc is not None
    return dict(doc)


async def test_a_reply_that_does_not_read_is_given_up_and_the_replies_after_it_go_on(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
) -> None:
    phone, (bad, after) = await _chat_with_replies(client, admin_headers, evolution, db, ["estragada", "depois"])
    await db.messages.update_one({"_id": bad}, {"$set": UNREADABLE})
    give_up = 2.0
    worker = OutboundWorker(db, settings.model_copy(update={"UNREADABLE_GIVE_UP_SECONDS": give_up}), http)
    first_pass = time.monotonic()
    await worker.run_once()
    # Within the give-up time it is tried again, as a newer process may read it: the chat waits.
    assert (await _stored(db, bad))["status"] == "pending"
    assert (await _stored(db, after))["status"] == "pending"
    # Meanwhile the metrics still answer: the reply waiting behind it is what they report.
    assert (await backlog.measure(db, look=10_000)).oldest_pending_seconds > 0

    await passes_until_sent(db, worker, [after])
    assert time.monotonic() - first_pass >= give_up  # not before the give-up time
    given_up = await _stored(db, bad)
    assert given_up["status"] == "failed" and "does not read" in given_up["failure_reason"]
    assert given_up["created_at"] == "not a time"  # left as it was for an operator, only failed
    assert await _received(evolution, phone) == ["depois"]  # never handed to the provider
    # Its queue entry needs nothing more: the cursor moves past both.
    entries = [e async for e in db.outbox.find({"message_id": {"$in": [bad, after]}})]
    cursor = await db.outbox_state.find_one({"_id": "cursor"})
    assert cursor is not None and cursor["seq"] >= max(e["seq"] for e in entries)


async def test_a_reply_mended_within_the_give_up_time_is_sent_in_its_place(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
) -> None:
    """What a rolling deploy looks like from an older worker: it cannot read the reply for a
    while, then can (here: mended). Nothing is failed, and the order holds."""
    phone, (bad, after) = await _chat_with_replies(client, admin_headers, evolution, db, ["primeira", "segunda"])
    await db.messages.update_one({"_id": bad}, {"$set": UNREADABLE})
    worker = OutboundWorker(db, settings, http)  # the default give-up time: far longer than this test
    for _ in range(3):
        await worker.run_once()
        await asyncio.sleep(0.1)
    assert [(await _stored(db, m))["status"] for m in (bad, after)] == ["pending", "pending"]
    assert await _received(evolution, phone) == []

    await db.messages.update_one({"_id": bad}, {"$set": {"created_at": utcnow()}})
    await passes_until_sent(db, worker, [bad, after])
    assert await _received(evolution, phone) == ["primeira", "segunda"]


async def test_a_held_echo_that_does_not_read_does_not_keep_its_reply_from_being_sent(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
) -> None:
    """A hold of the reply's first attempt (outbound/repository.py, `outbox_echoes`) that does not
    read cannot be settled; the reply is still settled as sent, and the one after it goes on."""
    phone, (reply, after) = await _chat_with_replies(client, admin_headers, evolution, db, ["com eco", "seguinte"])
    await db.outbox_echoes.insert_one({"_id": f"{reply}:1#1", "attempt_id": f"{reply}:1", "held_at": "not a time"})
    worker = OutboundWorker(db, settings, http)  # the default give-up time: it is never given up here
    await passes_until_sent(db, worker, [reply, after], timeout=30)
    assert await _received(evolution, phone) == ["com eco", "seguinte"]


async def test_a_passed_reply_that_does_not_read_is_looked_for_until_the_give_up_time(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
) -> None:
    """The passed log's look for a late reply (`_recheck_passed`) cannot queue one that does not
    read again: it stops looking once the give-up time is over, as its own queue entry gives it up."""
    _, (reply,) = await _chat_with_replies(client, admin_headers, evolution, db, ["passada"])
    await db.messages.update_one({"_id": reply}, {"$set": UNREADABLE})
    entry = PassedEntry(id="p:test", seq=1, message_id=reply, ticket_id="t", passed_at=utcnow())
    patient = OutboundWorker(db, settings, http)
    assert await patient.passed_walk.guarded(patient._recheck_one, entry) is False
    impatient = OutboundWorker(db, settings.model_copy(update={"UNREADABLE_GIVE_UP_SECONDS": 0.0}), http)
    assert await impatient.passed_walk.guarded(impatient._recheck_one, entry) is True
    # A passed reply's own queue entry is finished: the passed log's give-up is its last.
    assert (await _stored(db, reply))["status"] == "failed"


async def test_a_queue_entry_that_does_not_read_fails_its_reply_after_the_give_up_time(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
) -> None:
    """The reply it names would otherwise stay pending, and hold every later reply of its chat."""
    phone, (bad, after) = await _chat_with_replies(client, admin_headers, evolution, db, ["sem fila", "depois"])
    await db.outbox.update_one({"message_id": bad}, {"$set": {"chat_seq": "not a number"}})
    # This process appended the entries and reads its own copies (core/seqlog.py, `keeps_appends`):
    # forgotten, it reads the store, as a worker of another process does.
    runtime_of(db).seqlog_kept.clear()
    worker = OutboundWorker(db, settings.model_copy(update={"UNREADABLE_GIVE_UP_SECONDS": 1.0}), http)
    await worker.run_once()
    assert [(await _stored(db, m))["status"] for m in (bad, after)] == ["pending", "pending"]

    await passes_until_sent(db, worker, [after])
    given_up = await _stored(db, bad)
    assert given_up["status"] == "failed" and "does not read" in given_up["failure_reason"]
    assert await _received(evolution, phone) == ["depois"]
    entries = [e async for e in db.outbox.find({"message_id": {"$in": [bad, after]}})]
    cursor = await db.outbox_state.find_one({"_id": "cursor"})
    assert cursor is not None and cursor["seq"] >= max(e["seq"] for e in entries)


async def test_a_reply_the_provider_took_is_given_up_as_sent_not_failed(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its attempt's document stops reading between the provider's answer and the settling
    (injected there): the give-up finds the attempt answered sent in the stored documents. Shown
    failed, it would be written again, and reach the client twice."""
    phone, (reply,) = await _chat_with_replies(client, admin_headers, evolution, db, ["entregue"])
    real_bind = outbound.bind_provider_id

    async def attempt_spoiled_first(db: Any, **kwargs: Any) -> None:
        await db.outbox_attempts.update_one({"_id": f"{reply}:1"}, {"$set": {"claimed_at": "not a time"}})
        await real_bind(db, **kwargs)

    monkeypatch.setattr(outbound, "bind_provider_id", attempt_spoiled_first)
    worker = OutboundWorker(db, settings.model_copy(update={"UNREADABLE_GIVE_UP_SECONDS": 1.0}), http)
    await worker.run_once()
    assert (await _stored(db, reply))["status"] == "pending"  # its settling met the document

    await passes_until_sent(db, worker, [reply])
    attempt = await db.outbox_attempts.find_one({"_id": f"{reply}:1"})
    stored = await _stored(db, reply)
    assert attempt["result"] == "sent" and stored["provider_message_id"] == attempt["provider_message_id"]
    assert await _received(evolution, phone) == ["entregue"]  # once


async def test_a_reply_quoting_a_message_that_does_not_read_goes_out_unquoted(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
) -> None:
    """Another message's slip (the client's, quoted) must not hold this reply: it goes out as it
    would with a quote WhatsApp does not know yet, unquoted rather than not at all."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    quoted = await db.messages.find_one({"ticket_id": ticket_id, "sender_type": "client"})
    body = {"body": "respondendo", "quoted_message_id": str(quoted["_id"])}
    r = await client.post(f"/api/v1/tickets/{ticket_id}/messages", json=body, headers=agent)
    assert r.status_code == 201, r.text
    await db.messages.update_one({"_id": quoted["_id"]}, {"$set": UNREADABLE})
    await passes_until_sent(db, OutboundWorker(db, settings, http), [r.json()["id"]], timeout=30)
    sent = [s for s in await evolution.sent() if s["number"] == phone]
    assert [unsigned(s["text"]) for s in sent] == ["respondendo"] and "quoted" not in sent[0]


def _given_up(worker: str) -> float:
    return REGISTRY.get_sample_value("iaze_given_up_total", {"worker": worker}) or 0.0


async def test_a_give_up_whose_announcement_failed_is_announced_by_the_next_pass(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store fails between the give-up's status write and its announcement (injected there):
    the next pass finds the reply failed already and announces it then. Told nothing, the open
    screens would show it on its way until reloaded, and nothing else ever announces it."""
    _, (bad, after) = await _chat_with_replies(client, admin_headers, evolution, db, ["sem fila", "depois"])
    await db.outbox.update_one({"message_id": bad}, {"$set": {"chat_seq": "not a number"}})
    runtime_of(db).seqlog_kept.clear()  # read the entries from the store (see the test above)
    real_announce, failures = outbound.announce_status, []

    async def fails_once_after_the_give_up(db: Any, message: Message) -> None:
        if message.id == bad and not failures:
            failures.append(message.status)
            raise ConnectionError("store away between the status write and its announcement")
        await real_announce(db, message)

    monkeypatch.setattr(outbound, "announce_status", fails_once_after_the_give_up)
    counted = _given_up("outbound")
    worker = OutboundWorker(db, settings.model_copy(update={"UNREADABLE_GIVE_UP_SECONDS": 1.0}), http)
    await passes_until_sent(db, worker, [after])

    assert failures == ["failed"] and (await _stored(db, bad))["status"] == "failed"
    told = await db.tenant_events.find({"type": "message.status", "data.message_id": bad}).to_list(None)
    assert [t["data"]["status"] for t in told] == ["failed"]
    assert _given_up("outbound") == counted + 1  # counted once: the repeat moved nothing
