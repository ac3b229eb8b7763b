"""The webhook processor on its own: the API process here runs none (WEBHOOK_PROCESSOR_ENABLED
false stands for "the process died right after acknowledging"), so deliveries pile up stored and
unprocessed; then processors — several in this process, or real `python -m
backend.webhooks` processes killed with SIGKILL — work them off."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo.errors import DuplicateKeyError

from backend.connections.models import Connection
from backend.core.clock import as_utc, utcnow
from backend.core.config import Settings
from backend.core.ids import new_id
from backend.core.runtime import runtime_of
from backend.core.seqlog import block_of
from backend.webhooks import repository, service, signals
from backend.webhooks.models import RawEvent
from backend.webhooks.processor import WebhookProcessor
from backend.webhooks.service import message_id_for
from tests.factories import make_tenant, unique_phone
from tests.fakes.harness import ROOT, FakeEvolution, make_connection, wait_for
from tests.persistence.procs import Backend
from tests.webhooks.helpers import raw_id_of
from tests.webhooks.helpers import text_upsert as _upsert

HOOK = "/api/v1/webhooks/whatsapp"


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"WEBHOOK_PROCESSOR_ENABLED": False, "WEBHOOK_LANES": 4, "WEBHOOK_HOLE_GRACE_SECONDS": 1.0}


async def _post_sequentially(
    client: httpx.AsyncClient, db: Any, conn_id: str, chats: list[str], per_chat: int
) -> dict[str, list[str]]:
    """Each chat's messages delivered in order (each after the previous one's 2xx), chats
    interleaved. Returns provider key ids per chat, in delivery order."""
    token = (await db.whatsapp_connections.find_one({"_id": conn_id}))["webhook_token"]
    sent: dict[str, list[str]] = {phone: [] for phone in chats}
    for i in range(per_chat):
        for phone in chats:
            key_id = f"3EB0{phone}-{i}"
            r = await client.post(
                f"{HOOK}/{conn_id}", json=_upsert(phone, key_id, f"{i}"), headers={"X-Webhook-Token": token}
            )
            assert r.status_code == 200, r.text
            raw_id_of(r)
            sent[phone].append(key_id)
    return sent


async def _all_processed(db: Any, conn_id: str, n: int) -> bool:
    return await db.webhook_events_raw.count_documents({"connection_id": conn_id, "status": "processed"}) == n


async def _run_processors(db: Any, settings: Settings, count: int, until: Any) -> None:
    processors = [WebhookProcessor(db, settings) for _ in range(count)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(p.run(stop)) for p in processors]
    try:
        await wait_for(until, timeout=120)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def _assert_in_order(db: Any, conn_id: str, sent: dict[str, list[str]]) -> None:
    for phone, key_ids in sent.items():
        ids = [message_id_for(conn_id, k) for k in key_ids]
        docs = {d["_id"]: d for d in await db.messages.find({"_id": {"$in": ids}}).to_list(None)}
        assert len(docs) == len(ids), phone  # each stored once (unique `_id`s)
        assert len({d["ticket_id"] for d in docs.values()}) == 1, phone  # one ticket per chat
        stamps = [docs[i]["created_at"] for i in ids]
        assert stamps == sorted(stamps), (phone, stamps)  # stored in delivery order


async def _assert_once_in_order_and_announced(
    db: Any, conn_id: str, tenant_id: str, sent: dict[str, list[str]]
) -> None:
    """After crashes: every chat in order, each message stored once, and every stored message
    announced to the realtime feed wherever a kill fell (a retry announces again what its dead
    attempt stored; at least once, clients apply by id)."""
    await _assert_in_order(db, conn_id, sent)
    assert await db.messages.count_documents({"reseller_id": tenant_id}) == sum(map(len, sent.values()))
    stored = {m["_id"] for m in await db.messages.find({"reseller_id": tenant_id}).to_list(None)}
    feed = await db.tenant_events.find({"reseller_id": tenant_id, "type": "message.created"}).to_list(None)
    assert stored <= {r["message"]["id"] for r in feed}


async def test_backlog_is_processed_in_order_per_chat_by_concurrent_processors_each_event_once(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any, settings: Settings
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution, processed=False)
    # make_connection's CONNECTION_UPDATE is pending too; processing it is part of the backlog
    chats = [unique_phone() for _ in range(6)]
    sent = await _post_sequentially(client, db, conn["id"], chats, per_chat=8)
    assert await db.messages.count_documents({"reseller_id": tenant.id}) == 0  # acknowledged, not processed

    await _run_processors(db, settings, 3, lambda: _all_processed(db, conn["id"], 6 * 8 + 1))

    await _assert_in_order(db, conn["id"], sent)
    assert await db.tickets.count_documents({"reseller_id": tenant.id}) == len(chats)
    raws = await db.webhook_events_raw.find({"connection_id": conn["id"]}).to_list(None)
    claims = await db.webhook_attempts.find({"raw_id": {"$in": [r["_id"] for r in raws]}}).to_list(None)
    # three processors raced for every event: each was claimed, and so processed, exactly once
    assert Counter(c["raw_id"] for c in claims) == Counter({r["_id"]: 1 for r in raws})
    assert all(r["attempts"] == 1 for r in raws)


async def test_a_hole_left_by_a_dead_writer_is_tombstoned_and_the_lane_goes_on(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any, settings: Settings
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution, processed=False)
    phone = unique_phone()
    sent = await _post_sequentially(client, db, conn["id"], [phone], per_chat=1)
    first = await db.webhook_events_raw.find_one({"connection_id": conn["id"], "chat": f"{phone}@s.whatsapp.net"})
    lane, seq = first["lane"], first["seq"]
    # A writer took seq+1 and died; seq+2 was stored a while ago by another writer.
    later = {**first, "_id": f"w:{lane}:{seq + 2}", "seq": seq + 2, "received_at": utcnow() - timedelta(seconds=5)}
    later["body"] = later["body"].replace(sent[phone][0], sent[phone][0] + "-after")
    seqlog = repository.lane(lane)
    with contextlib.suppress(DuplicateKeyError):  # as that writer did before storing it
        await db.webhook_events_raw.insert_one({"_id": seqlog.marker_id(block_of(seq + 2))})
    await db.webhook_events_raw.insert_one(later)
    # Only a block's owner stores entries in it: when seq+2 lies in the block this process owns,
    # the dead writer and the one that stored seq+2 took their numbers from its counter.
    own = runtime_of(db).seqlog_blocks.get((db.name, seqlog.collection, seqlog.prefix))
    if own is not None and own.block == block_of(seq + 2):
        own.next = max(own.next, seq + 3)

    async def both_done() -> bool:
        docs = await db.webhook_events_raw.find({"_id": {"$in": [first["_id"], later["_id"]]}}).to_list(None)
        return len(docs) == 2 and all(d["status"] == "processed" for d in docs)

    await _run_processors(db, settings, 1, both_done)
    hole = await db.webhook_events_raw.find_one({"_id": f"w:{lane}:{seq + 1}"})
    assert hole is not None and hole["hole"] is True
    assert await db.messages.find_one({"_id": message_id_for(conn["id"], sent[phone][0] + "-after")}) is not None
    # the dead writer's late insert cannot land in the tombstone: it takes the next number
    assert not await seqlog.fill(db, seq + 2)


def _start_processor(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ENV": "test",
        "MONGO_URL": settings.MONGO_URL,
        "MONGO_DB": settings.MONGO_DB,
        "JWT_SECRET": settings.JWT_SECRET,
        "WEBHOOK_LANES": str(settings.WEBHOOK_LANES),
        "WEBHOOK_POLL_SECONDS": "0.1",
        "WEBHOOK_LEASE_SECONDS": "3",
        "WEBHOOK_PROCESSOR_ENABLED": "true",
        "LOG_LEVEL": "WARNING",
    }
    out = open(log, "ab")  # noqa: SIM115 - owned by the child
    return subprocess.Popen([sys.executable, "-m", "backend.webhooks"], cwd=ROOT, env=env, stdout=out, stderr=out)


async def test_acknowledged_events_survive_processor_crashes_and_are_processed_exactly_once(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    tmp_path: Path,
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution, processed=False)
    chats = [unique_phone() for _ in range(5)]
    sent = await _post_sequentially(client, db, conn["id"], chats, per_chat=12)
    total = 5 * 12 + 1  # + make_connection's CONNECTION_UPDATE
    # One event whose processor claimed attempt 1 and died before doing anything.
    orphan = await db.webhook_events_raw.find_one({"connection_id": conn["id"], "chat": f"{chats[0]}@s.whatsapp.net"})
    past = utcnow() - timedelta(seconds=60)
    await db.webhook_attempts.insert_one(
        {
            "_id": f"{orphan['_id']}:1",
            "raw_id": orphan["_id"],
            "attempt": 1,
            "worker": "dead",
            "claimed_at": past,
            "lease_until": past,
        }
    )

    async def processed() -> int:
        n: int = await db.webhook_events_raw.count_documents({"connection_id": conn["id"], "status": "processed"})
        return n

    first = _start_processor(settings, tmp_path / "p1.log")
    try:
        await wait_for(lambda: _at_least(processed, 3), timeout=60)
        first.send_signal(signal.SIGKILL)  # a crash in the middle of the backlog
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert await processed() < total or pytest.fail("the backlog drained before the crash; nothing was tested")

    workers = [_start_processor(settings, tmp_path / f"p{i}.log") for i in (2, 3)]  # restart, two at once
    try:
        await wait_for(lambda: _all_processed(db, conn["id"], total), timeout=120)
        workers[0].send_signal(signal.SIGTERM)  # a deploy: clean stop
        assert workers[0].wait(20) == 0
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
                w.wait(20)

    await _assert_once_in_order_and_announced(db, conn["id"], tenant.id, sent)
    assert await db.tickets.count_documents({"reseller_id": tenant.id}) == 5
    orphan_now = await db.webhook_events_raw.find_one({"_id": orphan["_id"]})
    assert orphan_now["status"] == "processed" and orphan_now["attempts"] >= 2


async def test_deliveries_handed_to_a_backend_killed_before_starting_them_are_made_after_the_hold_in_order_once(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """Issue 20: a backend running its own processor acknowledges a burst (each delivery names
    that processor as the holder of its attempt 1) and is SIGKILLed with deliveries it has not
    started. A processor started after it holds back from them until 1.5 leases after their
    acknowledgement, then makes each one as a retry: every chat in order, every message once,
    every message announced."""
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution, processed=False)
    token = (await db.whatsapp_connections.find_one({"_id": conn["id"]}))["webhook_token"]
    lease = 3.0
    backend = Backend(settings.MONGO_URL, settings.MONGO_DB, tmp_path / "backend.log")
    backend.extra_env.update(
        {
            "WEBHOOK_PROCESSOR_ENABLED": "true",
            "WEBHOOK_PROCESSOR_CONCURRENCY": "1",  # a backlog builds behind the acknowledgements
            "WEBHOOK_LANES": str(settings.WEBHOOK_LANES),
            "WEBHOOK_LEASE_SECONDS": str(lease),
            "OUTBOUND_WORKER_ENABLED": "false",
            "LOG_LEVEL": "WARNING",
        }
    )
    await asyncio.to_thread(backend.start)
    chats = [unique_phone() for _ in range(6)]
    sent: dict[str, list[str]] = {phone: [] for phone in chats}
    try:
        async with httpx.AsyncClient(base_url=backend.base_url, timeout=10) as http:

            async def chat(phone: str) -> None:
                for i in range(25):
                    key_id = f"3EB0{phone}-{i}"
                    r = await http.post(
                        f"{HOOK}/{conn['id']}", json=_upsert(phone, key_id, f"{i}"), headers={"X-Webhook-Token": token}
                    )
                    assert r.status_code == 200, r.text
                    sent[phone].append(key_id)

            await asyncio.gather(*map(chat, chats))
        await asyncio.to_thread(backend.kill)
    finally:
        await asyncio.to_thread(backend.stop)
    unstarted = {"connection_id": conn["id"], "status": "received", "handed_to": {"$ne": None}}
    stranded = await db.webhook_events_raw.find(unstarted).to_list(None)
    if not stranded:
        pytest.fail("the backend processed the whole burst before the kill; nothing was tested")
    holder = {doc["handed_to"] for doc in stranded}
    assert len(holder) == 1, holder

    taker = _start_processor(settings, tmp_path / "taker.log")  # its own lease: 3 s, as the backend's
    try:
        await wait_for(lambda: _all_processed(db, conn["id"], 6 * 25 + 1), timeout=90)
    finally:
        taker.terminate()
        taker.wait(20)

    await _assert_once_in_order_and_announced(db, conn["id"], tenant.id, sent)
    held = 0
    for doc in stranded:  # taken by the new processor's claims, none made before the hold ended
        claims = await db.webhook_attempts.find({"raw_id": doc["_id"]}).to_list(None)
        taken = [c for c in claims if c["worker"] not in holder]
        assert taken, claims
        if len(taken) == len(claims):  # the dead holder never claimed it itself (a late start)
            held += 1
            hold_end = as_utc(doc["received_at"]) + timedelta(seconds=1.5 * lease)
            assert all(as_utc(c["claimed_at"]) >= hold_end for c in taken), (doc, claims)
    assert held, "every stranded delivery had been claimed by its holder: the hold was not tested"


async def _at_least(count: Any, n: int) -> bool:
    return bool(await count() >= n)


async def test_the_reprocess_script_runs_failed_deliveries_again(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """The operator's tool for deliveries that failed (a bug since fixed, a hiccup at the time):
    the failure is set on stored deliveries here, the reprocessing is the script's own."""
    from scripts.reprocess_webhooks import reprocess

    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution, processed=False)
    phone = unique_phone()
    sent = await _post_sequentially(client, db, conn["id"], [phone], per_chat=2)
    chat = {"connection_id": conn["id"], "chat": f"{phone}@s.whatsapp.net"}
    raws = await db.webhook_events_raw.find(chat).sort("seq", 1).to_list(None)
    assert [r["status"] for r in raws] == ["received", "received"]
    for raw in raws:
        failed = {"status": "failed", "error": "RuntimeError: a bug since fixed", "attempts": 1}
        await db.webhook_events_raw.update_one({"_id": raw["_id"]}, {"$set": failed})

    assert [o for _, o in await reprocess(db, connection_id=conn["id"], limit=10, dry_run=True)] == ["would retry"] * 2
    assert await db.messages.count_documents({"connection_id": conn["id"]}) == 0  # a dry run changes nothing

    results = await reprocess(db, connection_id=conn["id"], limit=10, dry_run=False)
    assert [(raw.id, outcome) for raw, outcome in results] == [(r["_id"], "processed") for r in raws]
    for key_id in sent[phone]:
        assert await db.messages.find_one({"_id": message_id_for(conn["id"], key_id)}) is not None
    after = await db.webhook_events_raw.find(chat).to_list(None)
    assert {(r["status"], r["attempts"]) for r in after} == {("processed", 2)}
    assert await reprocess(db, connection_id=conn["id"], limit=10, dry_run=False) == []


class _Killed(BaseException):
    """Stands for the process dying mid-event: nothing after the raise runs, no handler catches it."""


async def _killed(*args: Any, **kwargs: Any) -> None:
    raise _Killed


async def _lease_runs_out(db: Any, raw_id: str) -> None:
    """Attempt 1's processor is gone; its claim expires (time passing, shortened here)."""
    past = utcnow() - timedelta(seconds=1)
    await db.webhook_attempts.update_one({"_id": f"{raw_id}:1"}, {"$set": {"lease_until": past}})


async def _deliver(client: httpx.AsyncClient, db: Any, conn_id: str, payload: dict[str, Any]) -> str:
    token = (await db.whatsapp_connections.find_one({"_id": conn_id}))["webhook_token"]
    r = await client.post(f"{HOOK}/{conn_id}", json=payload, headers={"X-Webhook-Token": token})
    assert r.status_code == 200, r.text
    return raw_id_of(r)


@pytest.fixture
async def quiet(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any, settings: Settings
) -> tuple[Any, dict[str, Any]]:
    """A tenant with an open connection, and nothing pending in any lane (this module's
    processors are off): a pass a test kills meets only the test's own delivery."""
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution, processed=False)
    await WebhookProcessor(db, settings).run_once()
    return tenant, conn


async def _announced(db: Any, reseller_id: str, message_id: str) -> list[dict[str, Any]]:
    found = await db.tenant_events.find({"reseller_id": reseller_id, "type": "message.created"}).to_list(None)
    return [r for r in found if r["message"]["id"] == message_id]


async def test_a_retry_finishes_a_message_that_a_killed_attempt_stored_but_never_announced(
    client: httpx.AsyncClient, db: Any, settings: Settings, quiet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.messages import service as messages  # where the stored message is filed and announced

    tenant, conn = quiet
    phone, key_id = unique_phone(), f"3EB0{unique_phone()}"
    raw_id = await _deliver(client, db, conn["id"], _upsert(phone, key_id, "cheguei?"))
    lane = int(raw_id.split(":")[1])
    message_id = message_id_for(conn["id"], key_id)

    # Attempt 1 dies right after the message is stored: before its re-check against a finalize
    # and its announcement, the steps that only the message's first writer used to do.
    monkeypatch.setattr(messages, "_file_client_message", _killed)
    with pytest.raises(_Killed):
        await WebhookProcessor(db, settings).run_once({lane})
    monkeypatch.undo()
    stored = await db.messages.find_one({"_id": message_id})
    assert stored is not None and stored["body"] == "cheguei?"
    assert await _announced(db, tenant.id, message_id) == []
    # The ticket it opened shows it from its creation (event v1), as the queue lists it.
    ticket = await db.tickets.find_one({"_id": stored["ticket_id"]})
    assert ticket["last_message_preview"] == "cheguei?" and ticket["last_message_at"] == stored["created_at"]
    assert (await db.webhook_events_raw.find_one({"_id": raw_id}))["status"] == "received"

    await _lease_runs_out(db, raw_id)  # and a processor takes attempt 2
    await WebhookProcessor(db, settings).run_once({lane})
    raw = await db.webhook_events_raw.find_one({"_id": raw_id})
    assert (raw["status"], raw["attempts"]) == ("processed", 2), raw
    assert await db.messages.count_documents({"ticket_id": stored["ticket_id"]}) == 1
    ticket = await db.tickets.find_one({"_id": stored["ticket_id"]})
    assert ticket["last_message_preview"] == "cheguei?" and ticket["last_message_direction"] == "in"
    records = await _announced(db, tenant.id, message_id)
    assert len(records) == 1
    assert records[0]["ticket"]["id"] == stored["ticket_id"]
    assert records[0]["ticket"]["last_message_preview"] == "cheguei?"
    assert records[0]["message"]["body"] == "cheguei?"

    # The provider delivering it again is a first attempt of another delivery: a plain
    # duplicate, announced no further.
    again = await _deliver(client, db, conn["id"], _upsert(phone, key_id, "cheguei?"))
    await WebhookProcessor(db, settings).run_once({int(again.split(":")[1])})
    assert (await db.webhook_events_raw.find_one({"_id": again}))["result"] == ["duplicate"]
    assert len(await _announced(db, tenant.id, message_id)) == 1


async def test_a_retry_announces_a_receipt_that_a_killed_attempt_applied_silently(
    client: httpx.AsyncClient, db: Any, settings: Settings, quiet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.outbound import service as outbound

    tenant, conn = quiet
    phone, key_id = unique_phone(), f"3EB0{unique_phone()}"
    sent_from_phone = _upsert(phone, key_id, "mandei do celular")
    sent_from_phone["data"]["key"]["fromMe"] = True
    await _deliver(client, db, conn["id"], sent_from_phone)
    await WebhookProcessor(db, settings).run_once()
    message_id = message_id_for(conn["id"], key_id)
    assert (await db.messages.find_one({"_id": message_id}))["status"] == "sent"

    receipt = {
        "event": "messages.update",
        "data": {"keyId": key_id, "remoteJid": f"{phone}@s.whatsapp.net", "fromMe": True, "status": "DELIVERY_ACK"},
    }
    raw_id = await _deliver(client, db, conn["id"], receipt)
    lane = int(raw_id.split(":")[1])

    monkeypatch.setattr(outbound, "announce_status", _killed)  # dies after the move, before telling anyone
    with pytest.raises(_Killed):
        await WebhookProcessor(db, settings).run_once({lane})
    monkeypatch.undo()
    assert (await db.messages.find_one({"_id": message_id}))["status"] == "delivered"

    async def status_records() -> list[dict[str, Any]]:
        found = await db.tenant_events.find({"reseller_id": tenant.id, "type": "message.status"}).to_list(None)
        return [rec for rec in found if rec["message"]["id"] == message_id]

    assert await status_records() == []

    await _lease_runs_out(db, raw_id)
    await WebhookProcessor(db, settings).run_once({lane})
    raw = await db.webhook_events_raw.find_one({"_id": raw_id})
    assert (raw["status"], raw["attempts"]) == ("processed", 2), raw
    assert [rec["message"]["status"] for rec in await status_records()] == ["delivered"]


async def test_the_reprocess_script_keeps_a_lanes_stored_order_past_a_tenth_entry(db: Any) -> None:
    """`_id`s compare as text: "w:<lane>:10" sorts before "w:<lane>:9". A chat's failed deliveries
    (a message, then its receipts) are run again in the order they were stored."""
    from scripts.reprocess_webhooks import reprocess

    connection_id = new_id()
    for n in (10, 9, 100, 11):
        await db.webhook_events_raw.insert_one(
            {
                "_id": f"w:250:{n}",
                "seq": n,
                "connection_id": connection_id,
                "reseller_id": new_id(),
                "body": "{}",
                "received_at": utcnow(),
                "status": "failed",
                "attempts": 1,
            }
        )
    results = await reprocess(db, connection_id=connection_id, limit=10, dry_run=True)
    assert [raw.id for raw, _ in results] == ["w:250:9", "w:250:10", "w:250:11", "w:250:100"]


async def test_a_handed_delivery_is_processed_with_its_own_connection_read(
    db: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk has processed a delivery with its connection as read then; the connection changes
    (a menu enabled) and the next delivery arrives handed over with the webhook's read after the
    change: it is processed with that read, not with the walk's older one. A delivery read from
    the log (nothing handed) shares the walk's read."""
    processor, conn_id, conns = WebhookProcessor(db, settings), new_id(), {}
    before = Connection.model_construct(id=conn_id, menu_enabled=False)
    after = Connection.model_construct(id=conn_id, menu_enabled=True)
    seen: list[Connection | None] = []

    async def process(db_: Any, raw: RawEvent, *, conn: Connection | None, **_: Any) -> None:
        seen.append(conn)

    monkeypatch.setattr(service, "process", process)
    for handed in (before, after, None):
        raw: dict[str, Any] = {"_id": new_id(), "connection_id": conn_id, "status": "pending"}
        if handed is not None:
            raw[signals.CONNECTION] = handed
        assert await processor._handle(raw, conns)
    assert [c.menu_enabled if c else None for c in seen] == [False, True, True]


async def _killed_recording_the_failure(
    db: Any, settings: Settings, lane: int, raw_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A processor (one attempt allowed) fails the delivery for good, and its process is killed on
    the write recording it failed: between the failure's two writes. The delivery is still
    pending, and already waits for the sweep (written first)."""
    real = repository.mark

    async def mark(db_: Any, raw_id_: str, changes: dict[str, Any], **kwargs: Any) -> None:
        if changes.get("status") == "failed":
            raise _Killed
        await real(db_, raw_id_, changes, **kwargs)

    monkeypatch.setattr(repository, "mark", mark)
    with pytest.raises(_Killed):
        await WebhookProcessor(db, settings.model_copy(update={"WEBHOOK_MAX_ATTEMPTS": 1})).run_once({lane})
    monkeypatch.undo()
    assert (await db.webhook_events_raw.find_one({"_id": raw_id}))["status"] == "received"
    assert (await db.webhook_waiting.find_one({"_id": f"{raw_id}:retry"}))["reason"] == "retry"


async def _redriven(db: Any, settings: Settings, raw_id: str, message_id: str) -> dict[str, Any]:
    """The processors' sweep once the delivery's wait is over (time passing, shortened here): the
    delivery is filed, its wait ended. Returns the stored message."""
    past = utcnow() - timedelta(seconds=1)
    await db.webhook_waiting.update_one({"_id": f"{raw_id}:retry"}, {"$set": {"not_before": past}})
    assert await service.run_waiting(db, settings, since=utcnow() - timedelta(hours=1), limit=1000) >= 1
    raw = await db.webhook_events_raw.find_one({"_id": raw_id})
    assert raw["status"] == "processed", raw
    assert (await db.webhook_waiting.find_one({"_id": f"{raw_id}:retry"}))["applied_at"] is not None
    stored: dict[str, Any] = await db.messages.find_one({"_id": message_id})
    return stored


async def test_a_kill_while_a_delivery_fails_for_the_last_time_leaves_it_waiting_for_the_sweep(
    client: httpx.AsyncClient, db: Any, settings: Settings, quiet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its last attempt fails on an error that may pass; the process dies between the failure's
    two writes. The client's message is filed when the sweep runs the delivery, not left pending
    behind a lane that moved on."""
    from pymongo.errors import AutoReconnect

    from backend.tickets import intake

    tenant, conn = quiet
    phone, key_id = unique_phone(), f"3EB0{unique_phone()}"
    raw_id = await _deliver(client, db, conn["id"], _upsert(phone, key_id, "o boleto venceu"))

    async def store_away(*args: Any, **kwargs: Any) -> None:
        raise AutoReconnect("the store went away")

    monkeypatch.setattr(intake, "receive_client_message", store_away)
    await _killed_recording_the_failure(db, settings, int(raw_id.split(":")[1]), raw_id, monkeypatch)
    stored = await _redriven(db, settings, raw_id, message_id_for(conn["id"], key_id))
    assert (stored["body"], stored["reseller_id"]) == ("o boleto venceu", tenant.id)


async def test_a_last_attempt_whose_failure_cannot_be_recorded_keeps_the_lane_on_it_until_it_is(
    client: httpx.AsyncClient, db: Any, settings: Settings, quiet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delivery's last attempt fails on an error that may pass (the store away), and so does
    the write that would leave it waiting for the sweep: nothing records the failure. A lane that
    moved past it would leave the client's message stored raw, pending, with no wait for the sweep
    and no walk coming back to it: shown to nobody, ever. The lane stays on it instead; its next
    walk, the store back, leaves it waiting, and the sweep files it."""
    from pymongo.errors import AutoReconnect

    from backend.tickets import intake

    tenant, conn = quiet
    phone, key_id = unique_phone(), f"3EB0{unique_phone()}"
    raw_id = await _deliver(client, db, conn["id"], _upsert(phone, key_id, "segunda via do boleto"))
    lane = int(raw_id.split(":")[1])

    async def store_away(*args: Any, **kwargs: Any) -> None:
        raise AutoReconnect("the store went away")

    monkeypatch.setattr(intake, "receive_client_message", store_away)
    monkeypatch.setattr(repository, "wait", store_away)  # the failure's first record: its wait for the sweep
    processor = WebhookProcessor(db, settings.model_copy(update={"WEBHOOK_MAX_ATTEMPTS": 1}))
    await processor.run_once({lane})
    monkeypatch.undo()
    assert (await db.webhook_events_raw.find_one({"_id": raw_id}))["status"] == "received"
    assert await db.webhook_waiting.find_one({"_id": f"{raw_id}:retry"}) is None
    await processor.run_once({lane})  # the store is back: the same processor walks the lane again
    waiting = await db.webhook_waiting.find_one({"_id": f"{raw_id}:retry"})
    assert waiting is not None and waiting["reason"] == "retry", waiting
    stored = await _redriven(db, settings, raw_id, message_id_for(conn["id"], key_id))
    assert (stored["body"], stored["reseller_id"]) == ("segunda via do boleto", tenant.id)


async def test_a_delivery_whose_attempts_all_died_waits_for_the_sweep_before_it_is_recorded_failed(
    client: httpx.AsyncClient, db: Any, settings: Settings, quiet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every attempt's process died (deploys, kills): the next processor finds the attempts spent.
    It does not leave the delivery failed for an operator: it waits for the sweep first, and a kill
    before the failure is recorded leaves it pending and waiting."""
    from backend.tickets import intake

    tenant, conn = quiet
    phone, key_id = unique_phone(), f"3EB0{unique_phone()}"
    raw_id = await _deliver(client, db, conn["id"], _upsert(phone, key_id, "alguém aí?"))
    lane = int(raw_id.split(":")[1])
    monkeypatch.setattr(intake, "receive_client_message", _killed)  # attempt 1 dies mid-way
    with pytest.raises(_Killed):
        await WebhookProcessor(db, settings.model_copy(update={"WEBHOOK_MAX_ATTEMPTS": 1})).run_once({lane})
    monkeypatch.undo()
    await _lease_runs_out(db, raw_id)
    await _killed_recording_the_failure(db, settings, lane, raw_id, monkeypatch)  # attempt 2 is past the last
    stored = await _redriven(db, settings, raw_id, message_id_for(conn["id"], key_id))
    assert (stored["body"], stored["reseller_id"]) == ("alguém aí?", tenant.id)
