"""A hole (a number whose writer never inserted it) followed by a delivery whose acknowledgement
time does not read: the processor could not tell how old the entry past the hole was, raised at
every poll, and the lane, shared by many tenants' chats, stalled for good. Now the hole is passed
and the damaged delivery kept failed with why, like the other poison shapes (test_poison)."""

from typing import Any

import httpx
import pytest

from backend.core.config import Settings
from backend.webhooks import service
from backend.webhooks.processor import WebhookProcessor
from backend.webhooks.service import message_id_for
from tests.fakes.harness import FakeEvolution
from tests.webhooks.test_poison import _chat_in_lane, _deliver, _tenant_connection


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"WEBHOOK_PROCESSOR_ENABLED": False, "CONNECTION_WATCH_ENABLED": False, "WEBHOOK_LANES": 4}


async def test_a_hole_before_a_delivery_whose_time_does_not_read_is_passed_and_the_lane_moves_on(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
) -> None:
    bad = await _tenant_connection(client, admin_headers, evolution, db)
    good = await _tenant_connection(client, admin_headers, evolution, db)
    await WebhookProcessor(db, settings).run_once()  # the connections' own updates: nothing pending
    lanes = settings.WEBHOOK_LANES
    bad_phone = _chat_in_lane(bad, lanes)
    lane = service.lane_of(bad.id, f"{bad_phone}@s.whatsapp.net", lanes)
    good_phone = _chat_in_lane(good, lanes, lane)
    lost = await _deliver(db, settings, bad, bad_phone, f"3EB0L{bad_phone}")
    bad_raw = await _deliver(db, settings, bad, bad_phone, f"3EB0{bad_phone}")
    good_raw = await _deliver(db, settings, good, good_phone, f"3EB0{good_phone}")
    # Its writer reserved the number and died before inserting it: a hole before the damaged one.
    await db.webhook_events_raw.delete_one({"_id": lost})
    await db.webhook_events_raw.update_one(
        {"_id": bad_raw}, {"$set": {"handed_to": "gone:1:abcdef", "received_at": "yesterday"}}
    )

    await WebhookProcessor(db, settings).run_once()  # a poll, as the lanes' loops make them

    assert (await db.webhook_events_raw.find_one({"_id": lost}))["hole"] is True
    kept = await db.webhook_events_raw.find_one({"_id": bad_raw})
    assert kept["status"] == "failed" and "received_at" in kept["error"], kept
    assert (await db.webhook_events_raw.find_one({"_id": good_raw}))["status"] == "processed"
    assert await db.messages.find_one({"_id": message_id_for(good.id, f"3EB0{good_phone}")}) is not None
