"""A delivery too large for one document (a history sync after a pairing can be many megabytes) is
kept whole and filed like any other: before, everything past 15 MB was cut off, the delivery kept
failed ("payload larger than the raw store keeps"), and its messages shown to nobody. Past the
webhook's limit it is refused with 413 and nothing is stored. Through the real webhook with the
fake Evolution as its own process, on the real store."""

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from pymongo.errors import AutoReconnect

from backend.webhooks import repository
from tests.factories import make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection
from tests.webhooks.evolution_shapes import all_messages, envelope, pn_key, token, upsert
from tests.webhooks.helpers import settled

HOOK = "/api/v1/webhooks/whatsapp"


def _synced(phone: str, text: str) -> dict[str, Any]:
    data: dict[str, Any] = upsert(pn_key(phone), {"conversation": text}, "conversation")["data"]
    return {**data, "messageTimestamp": int(time.time()), "status": "DELIVERY_ACK"}


async def _post(client: httpx.AsyncClient, db: Any, conn: dict[str, Any], body: bytes) -> httpx.Response:
    headers = {"X-Webhook-Token": await token(db, conn["id"]), "Content-Type": "application/json"}
    return await client.post(f"{HOOK}/{conn['id']}", content=body, headers=headers)


def _sync_of(phones: list[str], pad_bytes: int) -> bytes:
    """A history sync of one message per phone, made `pad_bytes` larger by a field nobody reads."""
    payload = envelope("messages.set", [_synced(p, f"mensagem de {p}") for p in phones])
    return json.dumps({**payload, "padding": "x" * pad_bytes}).encode()


async def test_a_history_sync_larger_than_a_document_is_kept_whole_and_filed(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    await asyncio.sleep(1.1)  # synced messages count when stamped after the connection was made
    phones = [unique_phone(), unique_phone()]
    body = _sync_of(phones, 17 * 1024 * 1024)  # past one document, under the 32 MiB limit
    r = await _post(client, db, conn, body)
    assert r.status_code == 200, r.text
    raw = await settled(db, r)
    assert raw["status"] == "processed", raw.get("error")
    assert [line.split(" in ticket")[0].startswith("message") for line in raw["result"]] == [True, True]
    assert (raw["body"], raw["body_parts"]) == ("", 3)
    stored = await repository.get(db, raw["_id"])
    assert stored is not None and (await repository.body_of(db, stored)).encode() == body  # byte for byte
    bodies = {m["body"] for m in await all_messages(client, tenant)}
    assert {f"mensagem de {p}" for p in phones} <= bodies


async def test_a_delivery_past_the_webhook_limit_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    before = await db.webhook_events_raw.count_documents({"connection_id": conn["id"]})
    r = await _post(client, db, conn, _sync_of([unique_phone()], 33 * 1024 * 1024))
    assert r.status_code == 413, r.text
    assert await db.webhook_events_raw.count_documents({"connection_id": conn["id"]}) == before


async def test_a_store_failing_between_the_parts_and_the_delivery_acknowledges_nothing_and_the_resend_is_filed(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The parts are written, then the delivery's own insert fails (the store went away): the
    provider gets 503 and sends it again; the parts nobody names stay, the resend is filed."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    await asyncio.sleep(1.1)
    phone = unique_phone()
    body = _sync_of([phone], 16 * 1024 * 1024)
    real_store = repository.store_body
    stored: list[str] = []

    async def parts_then_the_store_goes(db_: Any, data: bytes) -> tuple[str, int]:
        body_id, parts = await real_store(db_, data)
        stored.append(body_id)
        monkeypatch.setattr(repository.SeqLog, "append", _unreachable)
        return body_id, parts

    async def _unreachable(*_args: Any, **_kwargs: Any) -> Any:
        raise AutoReconnect("the store went away")

    monkeypatch.setattr(repository, "store_body", parts_then_the_store_goes)
    r = await _post(client, db, conn, body)
    assert r.status_code == 503, r.text
    assert await db.webhook_bodies.count_documents({"_id": {"$regex": f"^{stored[0]}:"}}) == 3
    monkeypatch.undo()
    r = await _post(client, db, conn, body)
    assert r.status_code == 200, r.text
    raw = await settled(db, r)
    assert raw["status"] == "processed" and raw["body_id"] != stored[0], raw.get("error")
    assert f"mensagem de {phone}" in {m["body"] for m in await all_messages(client, tenant)}
