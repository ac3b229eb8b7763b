"""What waits for the processors' sweep (webhooks.service `run_waiting`) gets the whole window the
sweep looks after it (processor WAITING_LOOKED_AFTER) even when every processor was down longer
than that since it was parked: the window counts from the first sweep that read it. Before the
fix it counted from the parking, and an edit parked before a long outage was given up at the
first sweep after it, while its message could still be in a lane's backlog."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from backend.connections.providers.base import ProviderError
from backend.core import clock
from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.webhooks import service
from backend.webhooks.models import Waiting
from backend.webhooks.processor import WAITING_LOOKED_AFTER
from tests.factories import make_tenant
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.webhooks.evolution_shapes import OWNER, envelope, key_id, token

HOOK = "/api/v1/webhooks/whatsapp"
OUTAGE = WAITING_LOOKED_AFTER + timedelta(days=1)


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    # The processors' own sweep never runs during a test: the passes under test are the ones it calls.
    return {"WEBHOOK_WAITING_CHECK_SECONDS": 3600.0}


@pytest.fixture(scope="module")
async def conn(client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution) -> dict[str, Any]:
    return await make_connection(client, await make_tenant(client, admin_headers, agents=1), evolution)


@contextmanager
def later(by: timedelta) -> Iterator[None]:
    """Every clock of this process runs `by` ahead meanwhile."""
    with clock.override(lambda: datetime.now(UTC) + by):
        yield


def _sweep(db: Any, settings: Settings) -> Any:
    return service.run_waiting(db, settings, since=utcnow() - WAITING_LOOKED_AFTER, limit=200)


async def _parked_edit(client: httpx.AsyncClient, db: Any, conn: dict[str, Any]) -> dict[str, Any]:
    """An edit of a message not stored yet, parked by the processor."""
    protocol = {
        "key": {"remoteJid": f"{OWNER}@s.whatsapp.net", "fromMe": True, "id": key_id()},
        "type": "MESSAGE_EDIT",
        "editedMessage": {"conversation": "às 20h, não às 19h"},
        "timestampMs": str(int(time.time() * 1000)),
    }
    headers = {"X-Webhook-Token": await token(db, conn["id"])}
    r = await client.post(f"{HOOK}/{conn['id']}", json=envelope("messages.edited", protocol), headers=headers)
    assert r.status_code == 200, r.text
    raw_id = r.json()["raw_id"]

    async def parked() -> dict[str, Any] | None:
        found: dict[str, Any] | None = await db.webhook_waiting.find_one({"raw_id": raw_id, "reason": "edit"})
        return found

    entry: dict[str, Any] = await wait_for(parked)
    return entry


async def test_an_edit_parked_before_a_long_outage_gets_its_window_from_the_first_sweep(
    client: httpx.AsyncClient, db: Any, settings: Settings, conn: dict[str, Any]
) -> None:
    entry = await _parked_edit(client, db, conn)
    # Parked, then no sweep ran for longer than the window (every processor down).
    await db.webhook_waiting.update_one({"_id": entry["_id"]}, {"$set": {"parked_at": utcnow() - OUTAGE}})

    await _sweep(db, settings)  # the first sweep after the outage: its message may still come

    seen = await db.webhook_waiting.find_one({"_id": entry["_id"]})
    assert seen["applied_at"] is None and seen["seen_at"] is not None, seen
    with later(WAITING_LOOKED_AFTER - timedelta(minutes=1)):
        await _sweep(db, settings)
    assert (await db.webhook_waiting.find_one({"_id": entry["_id"]}))["applied_at"] is None
    with later(WAITING_LOOKED_AFTER + timedelta(minutes=1)):
        assert await _sweep(db, settings) >= 1
    ended = await db.webhook_waiting.find_one({"_id": entry["_id"]})
    assert ended["applied_at"] is not None, ended
    assert ended["error"].startswith("EditedMessageNotStored"), ended
    raw = await db.webhook_events_raw.find_one({"_id": entry["raw_id"]})
    assert raw["status"] == "failed", raw  # kept where the operators' reprocessing looks


async def test_an_owed_catch_up_parked_before_a_long_outage_is_run_again_not_given_up_at_once(
    db: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch, conn: dict[str, Any]
) -> None:
    """The same flaw for the entries that wait on a time (a redrive, an owed catch-up): the first
    run after the outage failed, and its next run fell after a window counted from the parking,
    so it was given up after one run instead of being run again for its two days."""

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise ProviderError("evolution answered 503", retryable=True)

    monkeypatch.setattr(service, "pay_catch_up", down)
    parked = utcnow() - OUTAGE
    owed = Waiting(
        id=f"{conn['id']}:{key_id()}:catch_up",
        raw_id="",
        connection_id=conn["id"],
        reason="catch_up",
        since=parked,
        parked_at=parked,
        not_before=parked + service.CATCH_UP_HOLD,
    )
    await db.webhook_waiting.insert_one(owed.stored())

    assert await _sweep(db, settings) >= 1

    postponed = await db.webhook_waiting.find_one({"_id": owed.id})
    assert postponed["applied_at"] is None and postponed["tries"] == 1, postponed
