"""History sync: a phone paired again gets from WhatsApp the chats' recent messages, and a message
received while the instance was logged out reaches the helpdesk only this way: Evolution API 2.3.6
posts them as MESSAGES_SET, an array of messages shaped as upserts (`messaging-history.set`
handler, `prepareMessage`), when the instance's webhook lists that event. Through the real webhook
and API with the fake Evolution as its own process."""

import asyncio
import time
from typing import Any

import httpx
import pytest

from backend.connections.providers.evolution import WEBHOOK_EVENTS
from backend.webhooks import service as webhooks
from scripts import reprocess_webhooks
from tests.factories import make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection
from tests.webhooks.evolution_shapes import all_messages, envelope, key_id, pn_key, post, shown, tickets_of, upsert
from tests.webhooks.helpers import connection_state


def _synced(phone: str, text: str, at: int, *, kid: str | None = None, from_me: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = upsert(pn_key(phone, kid, from_me=from_me), {"conversation": text}, "conversation")["data"]
    return {**data, "messageTimestamp": at, "status": "SERVER_ACK" if from_me else "DELIVERY_ACK"}


async def test_new_instances_are_asked_for_the_history_sync(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution, open_=False)
    inst = await evolution.control("GET", f"instances/{conn['instance_name']}")
    assert "MESSAGES_SET" in inst["events"]
    assert inst["events"] == WEBHOOK_EVENTS


async def test_messages_received_while_logged_out_arrive_by_history_sync_and_the_past_stays_out(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    await asyncio.sleep(1.1)  # the synced messages below are stamped in whole seconds after it
    known, waiting = unique_phone(), unique_phone()
    before_live = key_id()
    raw = await post(client, db, conn, upsert(pn_key(known, before_live), {"conversation": "oi"}, "conversation"))
    assert raw["status"] == "processed", raw["result"]

    await connection_state(evolution, db, conn, "close")  # logged out: the phone kept receiving
    await connection_state(evolution, db, conn, "open")  # paired again: WhatsApp syncs the history
    now = int(time.time())
    batch = [
        _synced(waiting, "ano passado", 1_600_000_000),  # before the connection existed
        _synced(known, "oi", now, kid=before_live),  # received live already
        _synced(waiting, "alguém aí? faz 1h que espero", now),
        _synced(known, "e o boleto?", now),
    ]
    raw = await post(client, db, conn, envelope("messages.set", batch))
    assert raw["status"] == "processed", raw
    assert raw["result"][0] == "ignored: history from before the connection"
    assert raw["result"][1].startswith("duplicate"), raw["result"]

    bodies = sorted(m["body"] for m in await all_messages(client, tenant))
    assert bodies == ["alguém aí? faz 1h que espero", "e o boleto?", "oi"]
    assert len(await tickets_of(client, tenant)) == 2  # the known client's and the waiting one's
    # The same sync delivered again changes nothing.
    again = await post(client, db, conn, envelope("messages.set", batch))
    assert again["status"] == "processed", again
    assert sorted(m["body"] for m in await all_messages(client, tenant)) == bodies
    thread = await all_messages(client, tenant)
    assert ("in", "text", "e o boleto?") in shown(thread)


async def test_an_instance_made_before_the_history_sync_is_asked_for_it_when_paired_again(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """An instance created by an earlier version asked for four events. The QR code request that
    pairs it again first sets its webhook as a new instance's (Evolution's /webhook/set), once; a
    provider failure there does not stop the pairing and is asked again next time."""
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution, open_=False)
    old = ["QRCODE_UPDATED", "CONNECTION_UPDATE", "MESSAGES_UPSERT", "MESSAGES_UPDATE"]
    await evolution.control("POST", f"instances/{conn['instance_name']}/events", {"events": old})
    await db.whatsapp_connections.update_one({"_id": conn["id"]}, {"$unset": {"webhook_events": ""}})
    assert (await evolution.control("GET", f"instances/{conn['instance_name']}"))["events"] == old

    await evolution.mode("ok", fail_paths=[f"/webhook/set/{conn['instance_name']}"])
    try:
        r = await client.get(f"/api/v1/whatsapp-connections/{conn['id']}/qrcode", headers=tenant.headers)
        assert (r.status_code, r.json()["status"]) == (200, "connecting"), r.text
    finally:
        await evolution.mode("ok")
    assert (await evolution.control("GET", f"instances/{conn['instance_name']}"))["events"] == old

    r = await client.get(f"/api/v1/whatsapp-connections/{conn['id']}/qrcode", headers=tenant.headers)
    assert r.status_code == 200, r.text
    inst = await evolution.control("GET", f"instances/{conn['instance_name']}")
    assert inst["events"] == WEBHOOK_EVENTS
    stored = await db.whatsapp_connections.find_one({"_id": conn["id"]})
    assert inst["webhook_headers"] == {"X-Webhook-Token": stored["webhook_token"]}
    assert inst["webhook_url"].endswith(f"/api/v1/webhooks/whatsapp/{conn['id']}")
    assert stored["webhook_events"] == WEBHOOK_EVENTS
    calls = [c["path"] for c in await evolution.control("GET", "calls")]
    assert calls.count(f"/webhook/set/{conn['instance_name']}") == 2  # the failed one, then once
    r = await client.get(f"/api/v1/whatsapp-connections/{conn['id']}/qrcode", headers=tenant.headers)
    calls = [c["path"] for c in await evolution.control("GET", "calls")]
    assert calls.count(f"/webhook/set/{conn['instance_name']}") == 2


async def test_one_message_of_a_sync_that_fails_holds_back_none_of_the_others(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sync carries many clients' messages in one delivery. One that fails for good (here a bug
    injected for one message; an item the parser refuses is left out the same way) is recorded in
    its place; the others are filed; the delivery is kept failed, and reprocessing it files the
    one that failed and nothing twice."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    await asyncio.sleep(1.1)
    now = int(time.time())
    phones = [unique_phone() for _ in range(3)]
    batch = [_synced(phone, f"mensagem {i}", now) for i, phone in enumerate(phones)]
    batch.insert(1, {**batch[0], "key": {**batch[0]["key"], "id": "3EB0BROKEN"}, "message": "not an object"})
    real = webhooks._ingest_message

    async def fails_for_the_second(db_: Any, conn_: Any, event: Any, **kwargs: Any) -> str:
        if event.body == "mensagem 1":
            raise ValueError("a bug met by one message")
        return await real(db_, conn_, event, **kwargs)

    monkeypatch.setattr(webhooks, "_ingest_message", fails_for_the_second)
    raw = await post(client, db, conn, envelope("messages.set", batch))
    assert raw["status"] == "failed", raw
    assert raw["result"][1] == "ignored: history item refused: data.message is not an object"
    assert raw["result"][2] == "failed: ValueError: a bug met by one message"
    assert raw["error"] == "ValueError: a bug met by one message"
    assert sorted(m["body"] for m in await all_messages(client, tenant)) == ["mensagem 0", "mensagem 2"]

    monkeypatch.undo()
    [(_, outcome)] = await reprocess_webhooks.reprocess(db, connection_id=conn["id"], limit=10, dry_run=False)
    assert outcome == "processed"
    assert sorted(m["body"] for m in await all_messages(client, tenant)) == ["mensagem 0", "mensagem 1", "mensagem 2"]
