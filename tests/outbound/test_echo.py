"""An echo never swallows a real message: while an agent's reply is in flight, the operator types
the same text on the phone. Echoes are told by provider id; a fromMe upsert matched by its text
while the send is unanswered is only held, and settled by id when the answer comes. The API's
own worker is off: the tests step an `OutboundWorker` and hold the fake's send answer."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from backend.connections.providers import registry
from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.outbound.worker import OutboundWorker
from backend.webhooks import service as webhooks
from tests.factories import make_tenant
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.outbound.helpers import held_ticket
from tests.webhooks.helpers import settled


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"OUTBOUND_WORKER_ENABLED": False, "EVOLUTION_TIMEOUT_SECONDS": 60.0, "OUTBOUND_LEASE_SECONDS": 60.0}


async def _ok_queued(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> tuple[dict[str, Any], str, str, str]:
    """An agent's reply "ok" queued in a held ticket (conn, ticket id, client phone, reply id), by a
    tenant whose replies go out as typed (no signature line): these tests are about a phone copy
    of the very text the agent sent, which the signature would make differ."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    r = await client.patch("/api/v1/reseller-config", json={"signature_enabled": False}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    r = await client.post(f"/api/v1/tickets/{ticket_id}/messages", json={"body": "ok"}, headers=agent)
    assert r.status_code == 201, r.text
    return conn, ticket_id, phone, str(r.json()["id"])


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with registry.http_client(settings) as c:
        yield c


@pytest.fixture
async def evolution_reset(evolution: FakeEvolution) -> AsyncIterator[FakeEvolution]:
    yield evolution
    await evolution.control("POST", "release")
    await evolution.mode("ok", fail_next=0, hold_next=0, hold_answer_next=0, echo_first_seconds=0.0, echo=True)


async def _held_sends(evolution: FakeEvolution) -> int:
    """How many sends the fake has held so far (the module's tests share the fake)."""
    calls = await evolution.control("GET", "calls")
    return sum(c["mode"] == "held" for c in calls)


async def _one_more_held(evolution: FakeEvolution, before: int) -> bool:
    return await _held_sends(evolution) > before


async def _outgoing(db: Any, ticket_id: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = await db.messages.find({"ticket_id": ticket_id, "direction": "out"}).to_list(None)
    return docs


async def _status(db: Any, message_id: str) -> str:
    return str((await db.messages.find_one({"_id": message_id}))["status"])


async def _raw_of_key(db: Any, connection_id: str, key_id: str) -> dict[str, Any] | None:
    """The processed raw delivery that carries provider message `key_id`."""
    for raw in await db.webhook_events_raw.find({"connection_id": connection_id}).to_list(None):
        if key_id in raw["body"] and raw["status"] != "received":
            found: dict[str, Any] = raw
            return found
    return None


async def test_the_same_text_typed_on_the_phone_while_the_reply_is_in_flight_stays_its_own_message(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution_reset: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
) -> None:
    evolution = evolution_reset
    conn, ticket_id, phone, reply = await _ok_queued(client, admin_headers, evolution, db)
    before = await _held_sends(evolution)
    await evolution.mode("ok", hold_next=1)  # the provider has not answered the send yet
    worker = OutboundWorker(db, settings, http)
    in_flight = asyncio.create_task(worker.run_once())
    try:
        await wait_for(lambda: _one_more_held(evolution, before))
        typed = await evolution.inbound(conn["instance_name"], phone, "ok", from_me=True)
        raw = await settled(db, typed)
        assert raw["status"] == "processed"  # held as a probable echo: the send is unanswered
    finally:
        await evolution.control("POST", "release")
        await in_flight
    sent = [s for s in await evolution.sent() if s["number"] == phone]
    assert len(sent) == 1 and sent[0]["key_id"] != typed["key_id"]

    # The answer names another id: the typed "ok" is a message of its own.
    async def both() -> list[dict[str, Any]] | None:
        docs = await _outgoing(db, ticket_id)
        return docs if len(docs) == 2 else None

    outgoing = {m["provider_message_id"]: m for m in await wait_for(both)}
    assert outgoing[sent[0]["key_id"]]["_id"] == reply and outgoing[sent[0]["key_id"]]["sender_type"] == "agent"
    mine = outgoing[typed["key_id"]]
    assert mine["body"] == "ok" and mine["sender_type"] == "system"
    assert await _status(db, reply) == "sent"

    # The real echo (the answered id) is still recognised as the agent's reply.
    echo = await wait_for(lambda: _raw_of_key(db, conn["id"], sent[0]["key_id"]))
    assert echo["result"] == ["echo of an IAZE reply"]
    assert len(await _outgoing(db, ticket_id)) == 2
    holds = await db.outbox_echoes.find({"message_id": reply}).to_list(None)
    assert [(h["provider_message_id"], h["resolution"]) for h in holds] == [(typed["key_id"], "released")]


async def test_the_echo_and_a_phone_copy_both_ahead_of_the_answer_are_told_apart_by_id(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution_reset: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
) -> None:
    """The real echo and then the typed "ok" both arrive before the send is answered (the fake
    posts the echo, then holds its answer): both are held, and the answered id decides."""
    evolution = evolution_reset
    conn, ticket_id, phone, reply = await _ok_queued(client, admin_headers, evolution, db)
    await evolution.mode("ok", hold_answer_next=1)
    worker = OutboundWorker(db, settings, http)
    in_flight = asyncio.create_task(worker.run_once())
    try:

        async def holds(n: int) -> bool:
            return await db.outbox_echoes.count_documents({"message_id": reply}) == n

        await wait_for(lambda: holds(1))  # the echo, processed while the answer is held back
        typed = await evolution.inbound(conn["instance_name"], phone, "ok", from_me=True)
        assert (await settled(db, typed))["status"] == "processed"
        assert await holds(2)
        assert await _status(db, reply) == "pending" and len(await _outgoing(db, ticket_id)) == 1
    finally:
        await evolution.control("POST", "release")
        await in_flight
    sent = [s for s in await evolution.sent() if s["number"] == phone]
    assert len(sent) == 1

    async def both() -> list[dict[str, Any]] | None:
        docs = await _outgoing(db, ticket_id)
        return docs if len(docs) == 2 else None

    outgoing = {m["provider_message_id"]: m for m in await wait_for(both)}
    assert outgoing[sent[0]["key_id"]]["_id"] == reply
    assert outgoing[typed["key_id"]]["sender_type"] == "system"
    found = await db.outbox_echoes.find({"message_id": reply}).sort("_id", 1).to_list(None)
    assert [(h["provider_message_id"], h["resolution"]) for h in found] == [
        (sent[0]["key_id"], "echo"),
        (typed["key_id"], "released"),
    ]


async def test_a_hold_the_worker_settles_before_it_lands_is_settled_by_the_processor(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution_reset: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The processor reads the attempt as unanswered, then the answer is recorded and the worker
    settles (finding no hold), then the hold lands: the processor's second look decides it."""
    evolution = evolution_reset
    conn, ticket_id, phone, reply = await _ok_queued(client, admin_headers, evolution, db)
    before = await _held_sends(evolution)
    await evolution.mode("ok", hold_next=1, echo=False)
    worker = OutboundWorker(db, settings, http)
    in_flight = asyncio.create_task(worker.run_once())
    from backend.outbound import repository
    from backend.outbound.models import HeldEcho

    real_hold = repository.hold_echo

    async def hold_after_the_answer(db_: Any, **kw: Any) -> HeldEcho:
        await evolution.control("POST", "release")
        await in_flight  # answered, recorded and settled before the hold is written
        return await real_hold(db_, **kw)

    try:
        await wait_for(lambda: _one_more_held(evolution, before))
        monkeypatch.setattr(repository, "hold_echo", hold_after_the_answer)
        typed = await evolution.inbound(conn["instance_name"], phone, "ok", from_me=True)
        assert (await settled(db, typed))["status"] == "processed"
    finally:
        await evolution.control("POST", "release")
        await evolution.mode("ok", echo=True)
        await in_flight
    assert await _status(db, reply) == "sent"
    outgoing = {m["provider_message_id"]: m for m in await _outgoing(db, ticket_id)}
    assert len(outgoing) == 2 and outgoing[typed["key_id"]]["sender_type"] == "system"
    hold = await db.outbox_echoes.find_one({"message_id": reply})
    assert hold["resolution"] == "released"
    assert webhooks.message_id_for(conn["id"], typed["key_id"]) == outgoing[typed["key_id"]]["_id"]


async def test_a_held_phone_message_is_stored_even_when_the_worker_dies_before_settling_it(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution_reset: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
) -> None:
    """The worker records the answer and binds its id, then dies before settling the holds; a
    delivery receipt then moves the reply on, so the next worker finds it no longer pending —
    and still settles the holds from the recorded answer."""
    evolution = evolution_reset
    conn, ticket_id, phone, reply = await _ok_queued(client, admin_headers, evolution, db)
    before = await _held_sends(evolution)
    await evolution.mode("ok", hold_next=1)
    dying = OutboundWorker(db, settings, http)

    async def killed(*_: Any, **__: Any) -> None:
        raise RuntimeError("worker killed")

    dying._settle_echoes = killed  # type: ignore[method-assign]
    in_flight = asyncio.create_task(dying.run_once())
    try:
        await wait_for(lambda: _one_more_held(evolution, before))
        typed = await evolution.inbound(conn["instance_name"], phone, "ok", from_me=True)
        assert (await settled(db, typed))["status"] == "processed"
    finally:
        await evolution.control("POST", "release")
        await in_flight
    key_id = next(s for s in await evolution.sent() if s["number"] == phone)["key_id"]
    receipt = await evolution.control(
        "POST", "receipt", {"instance": conn["instance_name"], "key_id": key_id, "status": "DELIVERY_ACK"}
    )
    assert (await settled(db, receipt))["status"] == "processed"
    assert await _status(db, reply) == "delivered"
    assert len(await _outgoing(db, ticket_id)) == 1  # the typed "ok" is still held

    await OutboundWorker(db, settings, http).run_once()
    outgoing = {m["_id"]: m for m in await _outgoing(db, ticket_id)}
    mine = outgoing.get(webhooks.message_id_for(conn["id"], typed["key_id"]))
    assert len(outgoing) == 2 and reply in outgoing
    assert mine is not None and mine["body"] == "ok" and mine["sender_type"] == "system"


async def test_a_held_phone_message_whose_hold_partly_does_not_read_is_still_stored(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution_reset: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
) -> None:
    """The hold of the typed "ok" stops reading while the send is in flight (its time, type and resolution
    spoiled, injected there): it is settled by what reads of it — the upsert it stands for — and
    the typed "ok" is stored as a message of its own. Passed over, it would never be stored."""
    evolution = evolution_reset
    conn, ticket_id, phone, reply = await _ok_queued(client, admin_headers, evolution, db)
    before = await _held_sends(evolution)
    await evolution.mode("ok", hold_next=1)
    in_flight = asyncio.create_task(OutboundWorker(db, settings, http).run_once())
    try:
        await wait_for(lambda: _one_more_held(evolution, before))
        typed = await evolution.inbound(conn["instance_name"], phone, "ok", from_me=True)
        assert (await settled(db, typed))["status"] == "processed"
        spoiled = await db.outbox_echoes.update_one(
            {"message_id": reply}, {"$set": {"held_at": "not a time", "type": 7, "resolution": "maybe"}}
        )
        assert spoiled.modified_count == 1
    finally:
        await evolution.control("POST", "release")
        await in_flight

    async def both() -> list[dict[str, Any]] | None:
        docs = await _outgoing(db, ticket_id)
        return docs if len(docs) == 2 else None

    outgoing = {m["provider_message_id"]: m for m in await wait_for(both)}
    mine = outgoing[typed["key_id"]]
    assert mine["_id"] == webhooks.message_id_for(conn["id"], typed["key_id"]) and mine["sender_type"] == "system"
    assert await _status(db, reply) == "sent"
    hold = await db.outbox_echoes.find_one({"message_id": reply})
    assert hold["resolution"] == "released" and hold["held_at"] == "not a time"  # only settled


async def test_an_unanswered_send_whose_echo_hold_partly_does_not_read_is_not_sent_again(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution_reset: FakeEvolution,
    db: Any,
    settings: Settings,
    http: httpx.AsyncClient,
) -> None:
    """The provider took the send and posted its echo (held), then the worker died before hearing
    the answer; the hold's time stopped reading meanwhile. Once the lease is over, the
    next worker takes the held echo for the answer, as it would a readable one: sent once. Passed
    over, the reply would be sent again and reach the client twice."""
    evolution = evolution_reset
    _, _, phone, reply = await _ok_queued(client, admin_headers, evolution, db)
    await evolution.mode("ok", hold_answer_next=1)  # the echo comes, the answer is held back
    dying = asyncio.create_task(OutboundWorker(db, settings, http).run_once())
    try:

        async def held() -> bool:
            return await db.outbox_echoes.count_documents({"message_id": reply}) == 1

        await wait_for(held)
        dying.cancel()  # killed before the answer: the attempt stays unanswered
        with contextlib.suppress(asyncio.CancelledError):
            await dying
    finally:
        await evolution.control("POST", "release")
    await db.outbox_echoes.update_one({"message_id": reply}, {"$set": {"held_at": "not a time"}})
    await db.outbox_attempts.update_one({"_id": f"{reply}:1"}, {"$set": {"lease_until": utcnow() - timedelta(1)}})

    worker = OutboundWorker(db, settings, http)

    async def sent() -> bool:
        await worker.run_once()
        return await _status(db, reply) == "sent"

    await wait_for(sent)
    await worker.run_once()
    assert len([s for s in await evolution.sent() if s["number"] == phone]) == 1
    attempts = await db.outbox_attempts.find({"message_id": reply}).to_list(None)
    assert [(a["result"], a.get("answered_by")) for a in attempts] == [("sent", "echo")]
