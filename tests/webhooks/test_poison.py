"""One document that does not read must not keep anyone else's messages from being filed.

A lane is shared by many tenants' chats (service.lane_of): a delivery the processor cannot make,
and no retry mends, is kept failed with why and the lane moves on; raised, it held the lane for
good, and every chat behind it was stored and never processed. As in test_processor, the API
process runs no processor: the tests store deliveries as the webhook does and walk the lane."""

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from backend.connections import repository as connection_store
from backend.connections.models import Connection
from backend.core import metrics, single_flight
from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.core.ids import new_id
from backend.webhooks import repository as webhook_store
from backend.webhooks import service, watch
from backend.webhooks.processor import WebhookProcessor
from backend.webhooks.service import message_id_for
from tests.factories import make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection
from tests.webhooks.helpers import text_upsert


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"WEBHOOK_PROCESSOR_ENABLED": False, "CONNECTION_WATCH_ENABLED": False, "WEBHOOK_LANES": 4}


def _failures(kind: str = "final") -> float:
    value: float = metrics.WEBHOOK_FAILED.labels(kind=kind)._value.get()
    return value


async def _tenant_connection(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> Connection:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution, processed=False)
    return Connection.model_validate(await db.whatsapp_connections.find_one({"_id": conn["id"]}))


def _chat_in_lane(conn: Connection, lanes: int, lane: int | None = None) -> str:
    """A client's phone whose chat with `conn` is in `lane` (any lane by default)."""
    while True:
        phone = unique_phone()
        if lane is None or service.lane_of(conn.id, f"{phone}@s.whatsapp.net", lanes) == lane:
            return phone


async def _deliver(db: Any, settings: Settings, conn: Connection, phone: str, key_id: str) -> str:
    body = json.dumps(text_upsert(phone, key_id, "olá")).encode()
    _, raw_id = await service.store(db, conn, event_hint=None, body=body, lanes=settings.WEBHOOK_LANES)
    return raw_id


async def _poison_connection(db: Any, conn: Connection, raw_id: str) -> None:
    await db.whatsapp_connections.update_one({"_id": conn.id}, {"$set": {"menu_department_ids": "not a list"}})
    single_flight.forget(db[connection_store.COLLECTION], conn.id)  # as a process whose copy expired reads it


def _poison_delivery(changes: dict[str, Any]) -> Callable[[Any, Connection, str], Awaitable[None]]:
    async def poison(db: Any, conn: Connection, raw_id: str) -> None:
        await db.webhook_events_raw.update_one({"_id": raw_id}, changes)

    return poison


POISONS: dict[str, tuple[Callable[[Any, Connection, str], Awaitable[None]], str]] = {
    "its connection does not validate": (_poison_connection, "menu_department_ids"),
    "it names no connection": (_poison_delivery({"$unset": {"connection_id": ""}}), "connection_id"),
    "its attempts are not a number": (_poison_delivery({"$set": {"attempts": "two"}}), "attempts"),
    "its backoff is not a time": (_poison_delivery({"$set": {"retry_at": "soon"}}), "retry_at"),
    "its acknowledgement time is not a time": (
        _poison_delivery({"$set": {"handed_to": "gone:1:abcdef", "received_at": "yesterday"}}),
        "received_at",
    ),
}


@pytest.mark.parametrize("poison", list(POISONS))
async def test_a_delivery_no_retry_can_make_is_kept_failed_with_why_and_another_tenants_chat_in_its_lane_is_filed(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    poison: str,
) -> None:
    spoil, named = POISONS[poison]
    bad = await _tenant_connection(client, admin_headers, evolution, db)
    good = await _tenant_connection(client, admin_headers, evolution, db)
    await WebhookProcessor(db, settings).run_once()  # the connections' own updates: nothing pending
    lanes = settings.WEBHOOK_LANES
    bad_phone = _chat_in_lane(bad, lanes)
    lane = service.lane_of(bad.id, f"{bad_phone}@s.whatsapp.net", lanes)
    good_phone = _chat_in_lane(good, lanes, lane)
    bad_raw = await _deliver(db, settings, bad, bad_phone, f"3EB0{bad_phone}")
    await spoil(db, bad, bad_raw)
    good_raw = await _deliver(db, settings, good, good_phone, f"3EB0{good_phone}")  # behind it, same lane
    failures, retryable = _failures(), _failures("retryable")

    await WebhookProcessor(db, settings).run_once({lane})

    assert await db.messages.find_one({"_id": message_id_for(good.id, f"3EB0{good_phone}")}) is not None
    assert (await db.webhook_events_raw.find_one({"_id": good_raw}))["status"] == "processed"
    kept = await db.webhook_events_raw.find_one({"_id": bad_raw})
    assert kept["status"] == "failed" and kept["failed_at"] is not None, kept
    assert named in kept["error"], kept["error"]  # why, for the operator who mends it
    assert kept["body"], kept  # kept raw, for scripts/reprocess_webhooks.py
    waiting = await db.webhook_waiting.find_one({"_id": f"{bad_raw}:retry"})
    if spoil is _poison_connection:
        # A delivery that reads, failed on its connection's document: maybe one a newer version
        # wrote in a rolling deploy. The waiting sweep runs it again, as it runs a delivery whose
        # attempts failed on errors that may pass; mended by then, it is filed.
        assert waiting is not None and waiting["not_before"] is not None, waiting
        assert (_failures(), _failures("retryable")) == (failures, retryable + 1)
        await db.whatsapp_connections.update_one({"_id": bad.id}, {"$set": {"menu_department_ids": []}})
        single_flight.forget(db[connection_store.COLLECTION], bad.id)
        await db.webhook_waiting.update_one({"_id": waiting["_id"]}, {"$set": {"not_before": utcnow()}})
        assert await service.run_waiting(db, settings, since=utcnow() - timedelta(hours=1), limit=200) >= 1
        assert await db.messages.find_one({"_id": message_id_for(bad.id, f"3EB0{bad_phone}")}) is not None
        assert (await db.webhook_events_raw.find_one({"_id": bad_raw}))["status"] == "processed"
    else:  # a delivery that does not read: no run mends it, the operator does
        assert waiting is None, waiting
        assert (_failures(), _failures("retryable")) == (failures + 1, retryable)


async def _bound_copy(db: Any, of: Connection, **changes: Any) -> str:
    """Another bound connection's document, `of`'s with `changes`, checked before every other
    (its `_id` sorts first)."""
    copy_id = "00000000" + new_id()[8:]
    doc = {**of.stored(), "_id": copy_id, "instance_name": f"copy-{copy_id}", **changes}
    await db.whatsapp_connections.insert_one(doc)
    return copy_id


async def test_a_connection_document_that_does_not_read_is_passed_over_and_every_other_is_still_watched(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
) -> None:
    good = await _tenant_connection(client, admin_headers, evolution, db)
    unreadable = await _bound_copy(db, good, created_at="last week")

    checked = await watch.check_connections(db, settings, right_at={})

    assert good.id in checked and unreadable not in checked, checked


async def test_a_connection_of_a_provider_no_registry_knows_stops_no_other_connections_check(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
) -> None:
    good = await _tenant_connection(client, admin_headers, evolution, db)
    unknown = await _bound_copy(db, good, provider="no-such-provider")
    failed = metrics.CONNECTION_CHECK_FAILED._value.get()
    right_at: dict[str, Any] = {}

    checked = await watch.check_connections(db, settings, right_at=right_at)

    assert good.id in checked and good.id in right_at, checked
    assert unknown not in checked and unknown not in right_at, checked
    assert metrics.CONNECTION_CHECK_FAILED._value.get() > failed  # counted, as any check that failed


async def test_reprocessing_a_delivery_whose_connection_does_not_read_keeps_it_failed_with_why(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
) -> None:
    conn = await _tenant_connection(client, admin_headers, evolution, db)
    await WebhookProcessor(db, settings).run_once()
    phone = _chat_in_lane(conn, settings.WEBHOOK_LANES)
    raw_id = await _deliver(db, settings, conn, phone, f"3EB0{phone}")
    await _poison_connection(db, conn, raw_id)
    raw = await webhook_store.get(db, raw_id)
    assert raw is not None

    assert (await service.process(db, raw)).outcome == "failed"  # as scripts/reprocess_webhooks.py runs it: no crash

    kept = await db.webhook_events_raw.find_one({"_id": raw_id})
    assert kept["status"] == "failed" and "menu_department_ids" in kept["error"], kept
