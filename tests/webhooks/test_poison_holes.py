"""A hole (a number whose writer never inserted it) followed by a delivery whose acknowledgement
time does not read: the processor could not tell how old the entry past the hole was, raised at
every poll, and the lane, shared by many tenants' chats, stalled for good. Now the hole is passed
and the damaged delivery kept failed with why, like the other poison shapes (test_poison). So it
stalled when that delivery's `seq` did not read as a number: the hole is filled up to the number
its `_id` names, and the delivery, which reads otherwise, is processed like any other."""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.webhooks import service
from backend.webhooks.processor import WebhookProcessor
from backend.webhooks.service import message_id_for
from tests.fakes.harness import FakeEvolution
from tests.webhooks.test_poison import _chat_in_lane, _deliver, _tenant_connection


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"WEBHOOK_PROCESSOR_ENABLED": False, "CONNECTION_WATCH_ENABLED": False, "WEBHOOK_LANES": 4}


@dataclass(frozen=True)
class Lane:
    """Two tenants' chats in one lane: a hole (its writer reserved the number and died before
    inserting it), then the damaged tenant's delivery, then the good one's."""

    damaged: Any
    damaged_phone: str
    damaged_raw: str
    good: Any
    good_phone: str
    good_raw: str
    lost: str


async def _hole_then_damaged(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    *damages: dict[str, Any],
) -> Lane:
    damaged = await _tenant_connection(client, admin_headers, evolution, db)
    good = await _tenant_connection(client, admin_headers, evolution, db)
    await WebhookProcessor(db, settings).run_once()  # the connections' own updates: nothing pending
    lanes = settings.WEBHOOK_LANES
    damaged_phone = _chat_in_lane(damaged, lanes)
    good_phone = _chat_in_lane(good, lanes, service.lane_of(damaged.id, f"{damaged_phone}@s.whatsapp.net", lanes))
    lost = await _deliver(db, settings, damaged, damaged_phone, f"3EB0L{damaged_phone}")
    damaged_raw = await _deliver(db, settings, damaged, damaged_phone, f"3EB0{damaged_phone}")
    good_raw = await _deliver(db, settings, good, good_phone, f"3EB0{good_phone}")
    await db.webhook_events_raw.delete_one({"_id": lost})
    for damage in damages:
        await db.webhook_events_raw.update_one({"_id": damaged_raw}, damage)
    await WebhookProcessor(db, settings).run_once()  # a poll, as the lanes' loops make them
    assert (await db.webhook_events_raw.find_one({"_id": lost}))["hole"] is True
    assert (await db.webhook_events_raw.find_one({"_id": good_raw}))["status"] == "processed"
    assert await db.messages.find_one({"_id": message_id_for(good.id, f"3EB0{good_phone}")}) is not None
    return Lane(damaged, damaged_phone, damaged_raw, good, good_phone, good_raw, lost)


async def test_a_hole_before_a_delivery_whose_time_does_not_read_is_passed_and_the_lane_moves_on(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
) -> None:
    spoiled = {"$set": {"handed_to": "gone:1:abcdef", "received_at": "yesterday"}}
    lane = await _hole_then_damaged(client, admin_headers, evolution, db, settings, spoiled)
    kept = await db.webhook_events_raw.find_one({"_id": lane.damaged_raw})
    assert kept["status"] == "failed" and "received_at" in kept["error"], kept


@pytest.mark.parametrize(
    "damage",
    [{"$set": {"seq": "x"}}, {"$unset": {"seq": ""}}],
    ids=["its seq is not a number", "it has no seq"],
)
async def test_a_hole_before_a_delivery_whose_seq_does_not_read_is_passed_and_the_lane_moves_on(
    damage: dict[str, Any],
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
) -> None:
    """The entry past the hole is older than the grace, so the hole is filled up to it, found by
    its `_id` whatever its `seq` holds; the delivery reads otherwise and is processed."""
    old = {"$set": {"received_at": utcnow() - timedelta(hours=1)}}
    lane = await _hole_then_damaged(client, admin_headers, evolution, db, settings, old, damage)
    assert (await db.webhook_events_raw.find_one({"_id": lane.damaged_raw}))["status"] == "processed"
    stored = await db.messages.find_one({"_id": message_id_for(lane.damaged.id, f"3EB0{lane.damaged_phone}")})
    assert stored is not None
