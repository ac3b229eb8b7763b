"""A store connection that stops answering in the middle of a delivery (MONGO_SOCKET_TIMEOUT_MS).

The backend reaches the store through a relay (tests/tcp_relay.py) that leaves the connection
carrying the message's insert open and silent: the insert never arrives, or it runs and its answer
never comes back. Before the socket timeout, the processor's lane waited on that connection for as
long as the kernel kept it (forever for a live peer): the client's message and every later message
of the chat stalled behind it. Now the command fails after the timeout like any store error, the
delivery is retried on a fresh connection, and both messages are filed once, in order."""

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from backend.webhooks.service import message_id_for
from tests.factories import Tenant, make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.tcp_relay import Lose, StoreProxy, command_marker, string_element
from tests.webhooks.evolution_shapes import pn_key, token, upsert

HOOK = "/api/v1/webhooks/whatsapp"


@pytest.fixture(scope="module")
def settings_overrides(store_relay: StoreProxy) -> dict[str, Any]:
    return {"MONGO_URL": store_relay.url, "MONGO_SOCKET_TIMEOUT_MS": 1500, "WEBHOOK_BACKOFF_BASE_SECONDS": 0.1}


@pytest.mark.parametrize("lose", ["request", "reply"])
async def test_a_store_connection_that_stops_answering_mid_delivery_holds_the_chat_only_until_the_timeout(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    lose: Lose,
) -> None:
    _, sent, stalled = await _two_messages(client, admin_headers, evolution, db, store_proxy, lose=lose)
    await asyncio.wait_for(stalled.wait(), timeout=15)
    first, _ = await _filed_once_in_order(direct, sent)
    await wait_for(lambda: _processed(direct, [r for r, _ in sent]), timeout=15)
    stalled_raw = await direct.webhook_events_raw.find_one({"_id": sent[0][0]})
    # The stalled command failed after the timeout (it did not hang) and its delivery ran again.
    assert stalled_raw["attempts"] >= 2, stalled_raw
    ticket = await direct.tickets.find_one({"_id": first["ticket_id"]})
    assert ticket is not None and ticket["status"] == "espera"


@pytest.mark.parametrize("lose", ["request", "reply"])
async def test_a_failed_attempt_whose_failure_is_not_recorded_is_run_again_as_a_retry(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    direct: Any,
    store_proxy: StoreProxy,
    lose: Lose,
) -> None:
    """The competitor between the failed attempt and its next one: the store loses the failure's
    record too (the first update of a delivery after the stall). The delivery's first attempt was
    handed over by its acknowledgement, so no claim of it is stored either: before the fix the next
    walk read the delivery as never attempted and ran it as a first attempt again. When the insert
    had run (`reply`), that attempt met the stored message as a plain duplicate and skipped what
    follows it: the message stayed out of the agents' screens (no announcement) and of the unread
    count. Now the processor remembers the attempt it made, and the next one is a retry."""
    marks: list[asyncio.Event] = []

    def lose_its_mark(raw_id: str) -> None:  # armed before the attempt's store timeout runs out
        update = command_marker("update", "webhook_events_raw")
        marks.append(store_proxy.stall_next(update, string_element("_id", raw_id), lose="request"))

    tenant, sent, stalled = await _two_messages(
        client, admin_headers, evolution, db, store_proxy, lose=lose, first_acked=lose_its_mark
    )
    (mark_lost,) = marks
    await asyncio.wait_for(stalled.wait(), timeout=15)
    await asyncio.wait_for(mark_lost.wait(), timeout=15)
    first, _ = await _filed_once_in_order(direct, sent)
    await wait_for(lambda: _processed(direct, [r for r, _ in sent]), timeout=30)
    # What follows the stored message was done: announced to open screens, counted unread.
    announced = await direct.tenant_events.count_documents({"type": "message.created", "message.id": first["_id"]})
    assert announced >= 1
    r = await client.get(f"/api/v1/tickets/{first['ticket_id']}", headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert r.json()["unread_count"] == 2
    stalled_raw = await direct.webhook_events_raw.find_one({"_id": sent[0][0]})
    assert stalled_raw["attempts"] >= 2, stalled_raw  # the second attempt knew it was one


async def _two_messages(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    store_proxy: StoreProxy,
    *,
    lose: Lose,
    first_acked: Callable[[str], None] | None = None,
) -> tuple[Tenant, list[tuple[str, str]], asyncio.Event]:
    """A new client's two messages, the first one's insert stalled (`first_acked` is told its
    delivery's raw id as soon as it is acknowledged). Returns the tenant, (raw id, message id) of
    each, and the stall's event."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    phone = unique_phone()
    headers = {"X-Webhook-Token": await token(db, conn["id"])}
    stalled = store_proxy.stall_next(command_marker("insert", "messages"), lose=lose)
    sent = []
    for n, text in enumerate(["o boleto venceu", "consegue mandar outro?"]):
        key = pn_key(phone, f"STALL{lose}{n}{phone}")
        r = await client.post(
            f"{HOOK}/{conn['id']}", json=upsert(key, {"conversation": text}, "conversation"), headers=headers
        )
        assert r.status_code == 200, r.text
        sent.append((r.json()["raw_id"], message_id_for(conn["id"], key["id"])))
        if n == 0 and first_acked is not None:
            first_acked(sent[0][0])
    return tenant, sent, stalled


async def _filed_once_in_order(direct: Any, sent: list[tuple[str, str]]) -> tuple[dict[str, Any], dict[str, Any]]:
    async def both_filed() -> list[dict[str, Any]] | None:
        found = await direct.messages.find({"_id": {"$in": [m for _, m in sent]}}).to_list(None)
        return found if len(found) == 2 else None

    messages = await wait_for(both_filed, timeout=30)
    (first,) = [m for m in messages if m["_id"] == sent[0][1]]
    (second,) = [m for m in messages if m["_id"] == sent[1][1]]
    assert first["ticket_id"] == second["ticket_id"]  # one conversation, nothing doubled or split
    assert first["body"] == "o boleto venceu" and second["body"] == "consegue mandar outro?"
    assert await direct.messages.count_documents({"ticket_id": first["ticket_id"]}) == 2
    assert first["created_at"] <= second["created_at"]  # the chat's order kept
    return first, second


async def _processed(db: Any, raw_ids: list[str]) -> bool:
    n = await db.webhook_events_raw.count_documents({"_id": {"$in": raw_ids}, "status": "processed"})
    return bool(n == len(raw_ids))
