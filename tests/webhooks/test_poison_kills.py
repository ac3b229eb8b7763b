"""A process killed between the two writes that fail a delivery on its connection's document
(processor `_fail`: its waiting entry, then its failure) loses nothing, files nothing twice and
stalls no lane: a restarted processor and the waiting sweep finish what it left. As in
test_poison, the API process runs no processor: the tests walk the lane themselves."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from backend.connections import repository as connection_store
from backend.core import clock, single_flight
from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.webhooks import service
from backend.webhooks.processor import WAITING_LOOKED_AFTER, WebhookProcessor
from backend.webhooks.service import message_id_for
from tests.fakes.harness import FakeEvolution
from tests.webhooks.test_poison import _chat_in_lane, _deliver, _failures, _poison_connection, _tenant_connection


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"WEBHOOK_PROCESSOR_ENABLED": False, "CONNECTION_WATCH_ENABLED": False, "WEBHOOK_LANES": 4}


class Killed(BaseException):
    """The process dies here: nothing after it runs, and no `except Exception` stops it."""


@contextmanager
def later(by: timedelta) -> Iterator[None]:
    """Every clock of this process runs `by` ahead meanwhile (a restart that long after)."""
    with clock.override(lambda: datetime.now(UTC) + by):
        yield


def _sweep(db: Any, settings: Settings) -> Any:
    return service.run_waiting(db, settings, since=utcnow() - WAITING_LOOKED_AFTER, limit=200)


async def test_a_kill_between_the_redrive_wait_and_the_failure_loses_nothing_and_stalls_no_lane(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bad = await _tenant_connection(client, admin_headers, evolution, db)
    good = await _tenant_connection(client, admin_headers, evolution, db)
    await WebhookProcessor(db, settings).run_once()  # the connections' own updates: nothing pending
    lanes = settings.WEBHOOK_LANES
    bad_phone = _chat_in_lane(bad, lanes)
    lane = service.lane_of(bad.id, f"{bad_phone}@s.whatsapp.net", lanes)
    good_phone = _chat_in_lane(good, lanes, lane)
    bad_raw = await _deliver(db, settings, bad, bad_phone, f"3EB0{bad_phone}")
    await _poison_connection(db, bad, bad_raw)
    good_raw = await _deliver(db, settings, good, good_phone, f"3EB0{good_phone}")  # behind it, same lane
    real_wait = service.wait_to_redrive

    async def dies_after(db: Any, raw_id: str, connection_id: str) -> None:
        await real_wait(db, raw_id, connection_id)
        raise Killed

    monkeypatch.setattr(service, "wait_to_redrive", dies_after)
    with pytest.raises(Killed):
        await WebhookProcessor(db, settings).run_once({lane})
    monkeypatch.setattr(service, "wait_to_redrive", real_wait)
    assert (await db.webhook_events_raw.find_one({"_id": bad_raw}))["status"] == "received"
    assert (await db.webhook_waiting.find_one({"_id": f"{bad_raw}:retry"}))["applied_at"] is None

    # Restarted once the dead attempt's lease ran out; each sweep comes when the redrive is due.
    lease = timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS)
    with later(lease + timedelta(seconds=1)):
        await WebhookProcessor(db, settings).run_once({lane})
        assert await _sweep(db, settings) == 0  # not due yet
    assert await db.messages.find_one({"_id": message_id_for(good.id, f"3EB0{good_phone}")}) is not None
    assert (await db.webhook_events_raw.find_one({"_id": good_raw}))["status"] == "processed"
    kept = await db.webhook_events_raw.find_one({"_id": bad_raw})
    assert kept["status"] == "failed" and "menu_department_ids" in kept["error"], kept

    final, postponed = _failures("final"), _failures("waiting_postponed")
    with later(lease + service.REDRIVE_FIRST + timedelta(seconds=2)):  # due, its connection still unread
        await _sweep(db, settings)
    assert (await db.webhook_waiting.find_one({"_id": f"{bad_raw}:retry"}))["applied_at"] is None
    # Run again later, so not reported as final (the InboundFailed alert): only once given up.
    assert (_failures("final"), _failures("waiting_postponed")) == (final, postponed + 1)
    assert (await db.webhook_events_raw.find_one({"_id": bad_raw}))["status"] == "failed"

    await db.whatsapp_connections.update_one({"_id": bad.id}, {"$set": {"menu_department_ids": []}})
    single_flight.forget(db[connection_store.COLLECTION], bad.id)
    with later(timedelta(hours=1)):
        assert await _sweep(db, settings) == 1
        assert await _sweep(db, settings) == 0
    assert (await db.webhook_events_raw.find_one({"_id": bad_raw}))["status"] == "processed"
    filed = await db.messages.count_documents({"provider_message_id": f"3EB0{bad_phone}"})
    assert filed == 1
    assert (await db.webhook_waiting.find_one({"_id": f"{bad_raw}:retry"}))["applied_at"] is not None
