import asyncio
import itertools
import uuid
from typing import Any

import httpx
import pytest

from backend.outbound import repository as outbound_repository
from tests.factories import make_tenant
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.outbound.helpers import held_ticket, unsigned
from tests.webhooks.helpers import settled


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"EVOLUTION_TIMEOUT_SECONDS": 1.0, "OUTBOUND_LEASE_SECONDS": 5.0, "OUTBOUND_MAX_ATTEMPTS": 3}


async def _message(db: Any, message_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = await db.messages.find_one({"_id": message_id})
    return doc


async def _read(db: Any, message_id: str) -> dict[str, Any] | None:
    doc = await _message(db, message_id)
    return doc if doc["status"] == "read" else None


async def _settled(db: Any, message_id: str) -> dict[str, Any] | None:
    doc = await _message(db, message_id)
    return doc if doc["status"] != "pending" else None


async def test_happy_path_end_to_end(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    # create connection -> QR code -> the phone scans it (CONNECTION_UPDATE open)
    conn = await make_connection(client, tenant, evolution, open_=False)
    qr = (await client.get(f"/api/v1/whatsapp-connections/{conn['id']}/qrcode", headers=tenant.headers)).json()
    assert qr["status"] == "connecting" and qr["qr_code"]
    await settled(db, await evolution.control("POST", "state", {"instance": conn["instance_name"], "state": "open"}))
    got = (await client.get(f"/api/v1/whatsapp-connections/{conn['id']}", headers=tenant.headers)).json()
    assert got["status"] == "open"

    # inbound message opens an espera ticket; the agent assumes and replies
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    r = await client.post(
        f"/api/v1/tickets/{ticket_id}/messages", json={"body": "Bom dia! Como posso ajudar?"}, headers=agent
    )
    assert r.status_code == 201, r.text
    reply = r.json()
    assert reply["status"] == "pending" and reply["direction"] == "out"

    # the worker sends it once; the fake's fromMe echo does not store a second copy
    sent = await wait_for(lambda: _sent_to(evolution, phone))
    signed = f"*{tenant.agents[0]['name']}:*\nBom dia! Como posso ajudar?"
    assert [(s["number"], s["text"]) for s in sent] == [(phone, signed)]
    doc = await wait_for(lambda: _settled(db, reply["id"]))
    assert doc["status"] == "sent" and doc["provider_message_id"] == sent[0]["key_id"]
    await wait_for(lambda: _echo_seen(db, conn["id"]))
    outgoing = await db.messages.find({"ticket_id": ticket_id, "direction": "out"}).to_list(None)
    assert [m["_id"] for m in outgoing] == [reply["id"]]

    # receipts move it on: delivered, then read; a late "delivered" does not move it back
    for status, expected in (("DELIVERY_ACK", "delivered"), ("READ", "read"), ("DELIVERY_ACK", "read")):
        result = await evolution.control(
            "POST", "receipt", {"instance": conn["instance_name"], "key_id": sent[0]["key_id"], "status": status}
        )
        assert result["status_code"] == 200 and (await settled(db, result))["status"] == "processed", result
        assert (await _message(db, reply["id"]))["status"] == expected
    msgs = (await client.get(f"/api/v1/tickets/{ticket_id}/messages", headers=agent)).json()["items"]
    assert [m["status"] for m in msgs if m["direction"] == "out"] == ["read"]
    statuses = await db.tenant_events.find({"reseller_id": tenant.id, "type": "message.status"}).to_list(None)
    assert [s["data"]["status"] for s in statuses] == ["sent", "delivered", "read"]


async def _sent_to(evolution: FakeEvolution, phone: str) -> list[dict[str, Any]]:
    return [s for s in await evolution.sent() if s["number"] == phone]


async def _echo_seen(db: Any, connection_id: str) -> bool:
    raw = await db.webhook_events_raw.find_one({"connection_id": connection_id, "result": ["echo of an IAZE reply"]})
    return raw is not None


async def _reply(client: httpx.AsyncClient, ticket_id: str, agent: dict[str, str], text: str) -> dict[str, Any]:
    r = await client.post(f"/api/v1/tickets/{ticket_id}/messages", json={"body": text}, headers=agent)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_an_echo_that_outruns_the_send_answer_is_still_our_reply(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """Evolution may post the fromMe echo of our send before it answers the send. The echo is
    processed while the worker still waits for the provider id, and must not become a second,
    phone-typed copy of the agent's reply. The same text typed on the phone afterwards is a
    message of its own."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    await evolution.mode("ok", echo_first_seconds=0.5)  # under EVOLUTION_TIMEOUT_SECONDS
    try:
        reply = await _reply(client, ticket_id, agent, "Já verifiquei, pode testar?")
        echoed = await wait_for(lambda: _echo_seen(db, conn["id"]))
        assert echoed
        assert (await _message(db, reply["id"]))["status"] == "pending"  # the echo came first
        doc = await wait_for(lambda: _settled(db, reply["id"]))
    finally:
        await evolution.mode("ok", echo_first_seconds=0.0)
    sent = await _sent_to(evolution, phone)
    assert doc["status"] == "sent" and doc["provider_message_id"] == sent[0]["key_id"]
    outgoing = await db.messages.find({"ticket_id": ticket_id, "direction": "out"}).to_list(None)
    assert [m["_id"] for m in outgoing] == [reply["id"]]

    typed = await evolution.inbound(conn["instance_name"], phone, "Já verifiquei, pode testar?", from_me=True)
    assert (await settled(db, typed))["status"] == "processed"
    outgoing = await db.messages.find({"ticket_id": ticket_id, "direction": "out"}).to_list(None)
    assert len(outgoing) == 2 and {m["sender_type"] for m in outgoing} == {"agent", "system"}


async def test_5xx_is_retried_with_backoff_then_failed_with_the_reason(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    await evolution.mode("5xx")
    try:
        reply = await _reply(client, ticket_id, agent, "vai falhar")
        doc = await wait_for(lambda: _settled(db, reply["id"]))
    finally:
        await evolution.mode("ok")
    assert doc["status"] == "failed" and "500" in doc["failure_reason"]
    attempts = await db.outbox_attempts.find({"message_id": reply["id"]}).sort("attempt", 1).to_list(None)
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert all(a["result"] == "error" and a["retryable"] for a in attempts)
    gaps = [(b["claimed_at"] - a["finished_at"]).total_seconds() for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19, gaps  # 0.1 s, then 0.2 s: exponential
    assert await _sent_to(evolution, phone) == []
    statuses = await db.tenant_events.find({"reseller_id": tenant.id, "type": "message.status"}).to_list(None)
    assert [s["data"]["status"] for s in statuses] == ["failed"]


async def test_provider_down_then_back_within_the_retries_sends_once(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, _phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    evolution.stop()
    try:
        reply = await _reply(client, ticket_id, agent, "chega depois")
        await wait_for(lambda: db.outbox_attempts.find_one({"_id": f"{reply['id']}:1", "result": "error"}))
    finally:
        evolution.start()  # a fresh fake: it forgot instances, as a wiped provider would
    attempt = await db.outbox_attempts.find_one({"_id": f"{reply['id']}:1"})
    assert "unreachable" in attempt["error"]
    doc = await wait_for(lambda: _settled(db, reply["id"]))
    # the restarted fake no longer knows the instance: 404 is final, not retried
    assert doc["status"] == "failed" and "404" in doc["failure_reason"], doc


async def test_provider_down_for_good_fails_with_the_reason(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, _, agent = await held_ticket(client, tenant, evolution, conn, db)
    evolution.stop()
    try:
        reply = await _reply(client, ticket_id, agent, "ninguém ouve")
        doc = await wait_for(lambda: _settled(db, reply["id"]))
    finally:
        evolution.start()
    assert doc["status"] == "failed" and "unreachable" in doc["failure_reason"]
    assert await db.outbox_attempts.count_documents({"message_id": reply["id"]}) == 3


async def test_slow_provider_within_the_timeout_sends_once_beyond_it_retries(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    await evolution.mode("slow", slow_seconds=0.3)
    try:
        reply = await _reply(client, ticket_id, agent, "devagar")
        doc = await wait_for(lambda: _settled(db, reply["id"]))
        assert doc["status"] == "sent" and len(await _sent_to(evolution, phone)) == 1

        await evolution.mode("slow", slow_seconds=1.5)  # beyond EVOLUTION_TIMEOUT_SECONDS=1
        reply = await _reply(client, ticket_id, agent, "devagar demais")
        await wait_for(lambda: db.outbox_attempts.find_one({"_id": f"{reply['id']}:1", "result": "error"}))
    finally:
        await evolution.mode("ok")
    attempt = await db.outbox_attempts.find_one({"_id": f"{reply['id']}:1"})
    assert "timeout" in attempt["error"] and attempt["retryable"]
    doc = await wait_for(lambda: _settled(db, reply["id"]))
    assert doc["status"] == "sent"
    # A timeout is ambiguous: the slow fake still took the first request, and Evolution has no
    # idempotency key, so the client may get it twice. This is the documented at-least-once case.
    texts = [unsigned(s["text"]) for s in await _sent_to(evolution, phone)]
    assert texts.count("devagar demais") in (1, 2)


async def test_malformed_answer_to_a_send_fails_at_once_without_resending(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, _, agent = await held_ticket(client, tenant, evolution, conn, db)
    await evolution.mode("malformed")
    try:
        reply = await _reply(client, ticket_id, agent, "resposta estranha")
        doc = await wait_for(lambda: _settled(db, reply["id"]))
    finally:
        await evolution.mode("ok")
    assert doc["status"] == "failed" and "not JSON" in doc["failure_reason"]
    assert await db.outbox_attempts.count_documents({"message_id": reply["id"]}) == 1


async def _receipt(evolution: FakeEvolution, conn: dict[str, Any], key_id: str, status: str) -> dict[str, Any]:
    posted: dict[str, Any] = await evolution.control(
        "POST", "receipt", {"instance": conn["instance_name"], "key_id": key_id, "status": status}
    )
    assert posted["status_code"] == 200
    return posted


async def test_receipts_ahead_of_our_send_are_parked_and_applied_when_it_is_recorded(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """Evolution may post a send's receipts before the worker has recorded the send's provider
    id. They must not be lost (the message would show "sent" forever): parked, then applied."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    key_id = "3EB0EARLY" + uuid.uuid4().hex[:10].upper()
    early = [await _receipt(evolution, conn, key_id, s) for s in ("DELIVERY_ACK", "READ")]
    for posted in early:
        raw = await settled(db, posted)
        assert raw["status"] == "processed" and "parked" in raw["result"][0], raw
    await evolution.mode("ok", next_key_id=key_id)
    reply = await _reply(client, ticket_id, agent, "Chegou?")
    doc = await wait_for(lambda: _read(db, reply["id"]))
    assert doc["provider_message_id"] == key_id and doc["delivered_at"] and doc["read_at"]
    assert (await _sent_to(evolution, phone))[0]["key_id"] == key_id
    # The parked receipts are marked applied after they are applied: wait for that write too.
    parked = await wait_for(
        lambda: db.receipts_parked.find_one({"_id": f"{conn['id']}:{key_id}", "applied_at": {"$ne": None}})
    )
    assert [r["status"] for r in parked["receipts"]] == ["delivered", "read"]
    assert parked["message_id"] == reply["id"] and parked["applied_at"] is not None


async def test_a_receipt_parked_while_the_worker_applies_the_earlier_ones_is_applied_too(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ "read" arrives before the send is recorded (its lane finds no message), and is parked just
    after the worker read and applied the parked "delivered"; the lane looks for its message again
    only after the worker marked the receipts applied. The old mark said "all applied" over the
    new receipt, and the message stayed "delivered"."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, _, agent = await held_ticket(client, tenant, evolution, conn, db)
    key_id = "3EB0LATE" + uuid.uuid4().hex[:10].upper()
    raw = await settled(db, await _receipt(evolution, conn, key_id, "DELIVERY_ACK"))
    assert "parked" in raw["result"][0], raw
    worker_applied, read_parked, marked = asyncio.Event(), asyncio.Event(), asyncio.Event()
    park, mark = outbound_repository.park_receipt, outbound_repository.mark_parked_applied

    async def park_between(db_: Any, **kwargs: Any) -> None:
        if kwargs["status"] == "read":
            await worker_applied.wait()
        await park(db_, **kwargs)
        if kwargs["status"] == "read":
            read_parked.set()
            await marked.wait()

    async def mark_after_the_park(db_: Any, parked: Any, **kwargs: Any) -> None:
        if not worker_applied.is_set():  # the worker, having applied "delivered"
            worker_applied.set()
            await read_parked.wait()
        await mark(db_, parked, **kwargs)
        marked.set()

    monkeypatch.setattr(outbound_repository, "park_receipt", park_between)
    monkeypatch.setattr(outbound_repository, "mark_parked_applied", mark_after_the_park)
    read = await _receipt(evolution, conn, key_id, "READ")
    await evolution.mode("ok", next_key_id=key_id)
    reply = await _reply(client, ticket_id, agent, "Leu?")
    assert (await settled(db, read))["status"] == "processed"
    assert read_parked.is_set() and marked.is_set()
    doc = await wait_for(lambda: _read(db, reply["id"]))
    assert doc["delivered_at"] and doc["read_at"]


async def test_a_receipt_ahead_of_a_message_sent_from_the_phone_is_applied_when_it_arrives(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    _ticket_id, phone, _agent = await held_ticket(client, tenant, evolution, conn, db)
    early = await _receipt(evolution, conn, "3EB0NOTYET", "READ")
    assert (await settled(db, early))["status"] == "processed"
    late = await evolution.inbound(conn["instance_name"], phone, "do celular", from_me=True, key_id="3EB0NOTYET")
    raw = await settled(db, late)
    message = await db.messages.find_one({"connection_id": conn["id"], "provider_message_id": "3EB0NOTYET"})
    assert raw["status"] == "processed" and message is not None
    assert message["status"] == "read" and message["read_at"] is not None
    # nothing was left failed for an operator to reprocess
    assert await db.webhook_events_raw.count_documents({"connection_id": conn["id"], "status": "failed"}) == 0
