"""The processors' sweep of waiting deliveries (webhooks.service `run_waiting`) reaches every one
whose time has come, whatever waits ahead of it: an entry that fails for good at every run is
postponed and the pass goes on, and entries that are not due (a redrive backing off) or that it
only walks past (an edit whose message never comes, kept two days) never fill its window. The
redrive behind them is a client's message whose attempts failed on errors that passed; the
sweep's own loop is slowed here so that each test runs the one pass it means to."""

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from pymongo.errors import AutoReconnect

from backend.core import metrics
from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.tickets import intake
from backend.webhooks import service
from backend.webhooks.models import Waiting
from tests.factories import Tenant, make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.webhooks.evolution_shapes import all_messages, pn_key, token, upsert

HOOK = "/api/v1/webhooks/whatsapp"
BODY = "ainda sem resposta do suporte"


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    # The processors' own sweep never runs during a test: the pass under test is the one it calls.
    return {"WEBHOOK_MAX_ATTEMPTS": 2, "WEBHOOK_BACKOFF_BASE_SECONDS": 0.05, "WEBHOOK_WAITING_CHECK_SECONDS": 3600.0}


class UnknownProvider(LookupError):
    """A failure no retry fixes (not a store error: backend/core/retry.py `is_retryable`)."""


async def _due_redrive(
    client: httpx.AsyncClient, db: Any, conn: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> tuple[str, datetime]:
    """A client's message whose attempts all failed on errors that passed since: kept failed and
    waiting to be run again, its time come. Its raw id and when it was parked."""
    # What an earlier test of this module left waiting is not this test's.
    await db.webhook_waiting.update_many({"applied_at": None}, {"$set": {"applied_at": utcnow()}})
    real_receive = intake.receive_client_message
    store_away = {"on": True}

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if store_away["on"]:
            raise AutoReconnect("the store went away")
        return await real_receive(*args, **kwargs)

    monkeypatch.setattr(intake, "receive_client_message", flaky)
    payload = upsert(pn_key(unique_phone()), {"conversation": BODY}, "conversation")
    r = await client.post(
        f"{HOOK}/{conn['id']}", json=payload, headers={"X-Webhook-Token": await token(db, conn["id"])}
    )
    assert r.status_code == 200, r.text
    raw_id: str = r.json()["raw_id"]

    async def parked() -> dict[str, Any] | None:
        raw = await db.webhook_events_raw.find_one({"_id": raw_id})
        found: dict[str, Any] | None = await db.webhook_waiting.find_one({"_id": f"{raw_id}:retry"})
        return found if raw["status"] == "failed" else None

    waiting = await wait_for(parked)
    store_away["on"] = False  # the cause passed
    await db.webhook_waiting.update_one(
        {"_id": waiting["_id"]}, {"$set": {"not_before": utcnow() - timedelta(seconds=1)}}
    )
    return raw_id, waiting["parked_at"]


async def _filed(client: httpx.AsyncClient, db: Any, tenant: Tenant, raw_id: str) -> None:
    raw = await db.webhook_events_raw.find_one({"_id": raw_id})
    assert raw["status"] == "processed", raw

    async def shown() -> list[str] | None:
        return [m["body"] for m in await all_messages(client, tenant)] or None

    assert await wait_for(shown, timeout=5) == [BODY]
    assert (await db.webhook_waiting.find_one({"_id": f"{raw_id}:retry"}))["applied_at"] is not None


async def _park(db: Any, waiting: Waiting) -> None:
    await db.webhook_waiting.insert_one(waiting.stored())


@pytest.mark.parametrize("failing", ["an owed catch-up of an unknown provider", "a delivery no longer readable"])
async def test_an_entry_failing_for_good_is_postponed_and_the_redrive_after_it_is_filed(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    failing: str,
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    raw_id, redrive_parked_at = await _due_redrive(client, db, conn, monkeypatch)
    ahead = redrive_parked_at - timedelta(minutes=1)
    if failing == "an owed catch-up of an unknown provider":

        async def unknown(*args: Any, **kwargs: Any) -> Any:
            raise UnknownProvider("no provider 'evolution-v9'")

        monkeypatch.setattr(service, "pay_catch_up", unknown)
        bad = Waiting(
            id=f"{conn['id']}:owed:catch_up",
            raw_id="",
            connection_id=conn["id"],
            reason="catch_up",
            since=ahead,
            parked_at=ahead,
        )
    else:  # a stored delivery that no longer validates (a field it lacks): a ValidationError at every run
        await db.webhook_events_raw.insert_one({"_id": f"unreadable-{raw_id}", "connection_id": conn["id"]})
        bad = Waiting(
            id=f"unreadable-{raw_id}:retry",
            raw_id=f"unreadable-{raw_id}",
            connection_id=conn["id"],
            reason="retry",
            parked_at=ahead,
        )
    await _park(db, bad)
    final_before = metrics.WEBHOOK_FAILED.labels(kind="final")._value.get()

    assert await service.run_waiting(db, settings, since=utcnow() - timedelta(hours=1), limit=200) == 2

    await _filed(client, db, tenant, raw_id)
    postponed = await db.webhook_waiting.find_one({"_id": bad.id})
    assert postponed["applied_at"] is None and postponed["tries"] == 1, postponed  # kept, run again later
    assert postponed["not_before"] > utcnow() + service.REDRIVE_FIRST
    assert metrics.WEBHOOK_FAILED.labels(kind="final")._value.get() == final_before + 1


@pytest.mark.parametrize("ahead", ["edits whose message never comes", "redrives not due yet", "unreadable entries"])
async def test_a_full_window_of_entries_the_pass_cannot_run_does_not_hide_a_due_redrive(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    ahead: str,
) -> None:
    limit = 3
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    raw_id, redrive_parked_at = await _due_redrive(client, db, conn, monkeypatch)
    parked_at = redrive_parked_at - timedelta(minutes=1)  # the same instant for all: ordered by `_id` then
    for n in range(limit):
        if ahead == "edits whose message never comes":
            entry = Waiting(
                id=f"never-{raw_id}-{n}:edit",
                raw_id=f"never-{raw_id}-{n}",
                connection_id=conn["id"],
                reason="edit",
                provider_message_id=f"NEVER{n}",
                parked_at=parked_at,
            )
        elif ahead == "unreadable entries":  # no delivery, connection nor reason: they fail validation
            await db.webhook_waiting.insert_one(
                {"_id": f"unreadable-{raw_id}-{n}", "parked_at": parked_at, "applied_at": None, "tries": 0}
            )
            continue
        else:
            entry = Waiting(
                id=f"later-{raw_id}-{n}:retry",
                raw_id=f"later-{raw_id}-{n}",
                connection_id=conn["id"],
                reason="retry",
                parked_at=parked_at,
                not_before=utcnow() + timedelta(hours=1),
            )
        await _park(db, entry)

    assert await service.run_waiting(db, settings, since=utcnow() - timedelta(hours=1), limit=limit) == 1

    await _filed(client, db, tenant, raw_id)
    untouched = await db.webhook_waiting.find({"_id": {"$ne": f"{raw_id}:retry"}, "applied_at": None}).to_list(None)
    assert sorted(w["tries"] for w in untouched) == [0] * limit  # walked past, not run, nor pushed back
