"""A delivery whose attempts all fail on errors that may pass (the store away, a race's winner
not visible yet) is kept failed, and no longer left there for an operator: the processors' sweep
runs it again later (after REDRIVE_FIRST, doubling), so the client's message reaches a ticket once
the cause passes. Through the real webhook and processor, with the fake Evolution as its own
process; the failure is injected in the filing step."""

from datetime import timedelta
from typing import Any

import httpx
import pytest
from pymongo.errors import AutoReconnect

from backend.core import metrics
from backend.tickets import intake
from backend.webhooks import service as webhooks
from tests.factories import make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.webhooks.evolution_shapes import all_messages, pn_key, token, upsert

HOOK = "/api/v1/webhooks/whatsapp"


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"WEBHOOK_MAX_ATTEMPTS": 2, "WEBHOOK_BACKOFF_BASE_SECONDS": 0.05}


async def test_a_delivery_failed_on_errors_that_pass_is_run_again_by_the_sweep_until_it_is_filed(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    monkeypatch.setattr(webhooks, "REDRIVE_FIRST", timedelta(seconds=0.3))
    real_receive = intake.receive_client_message
    store_away = {"on": True, "calls": 0}

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if store_away["on"]:
            store_away["calls"] += 1
            raise AutoReconnect("the store went away")
        return await real_receive(*args, **kwargs)

    monkeypatch.setattr(intake, "receive_client_message", flaky)
    failed_before = metrics.WEBHOOK_FAILED.labels(kind="retryable")._value.get()
    phone = unique_phone()
    payload = upsert(pn_key(phone), {"conversation": "meu pedido não chegou"}, "conversation")
    r = await client.post(
        f"{HOOK}/{conn['id']}", json=payload, headers={"X-Webhook-Token": await token(db, conn["id"])}
    )
    assert r.status_code == 200, r.text
    raw_id = r.json()["raw_id"]

    async def waiting() -> dict[str, Any] | None:
        doc: dict[str, Any] | None = await db.webhook_waiting.find_one({"_id": f"{raw_id}:retry"})
        return doc

    async def failed_and_waiting() -> dict[str, Any] | None:
        raw = await db.webhook_events_raw.find_one({"_id": raw_id})
        return await waiting() if raw["status"] == "failed" else None

    parked = await wait_for(failed_and_waiting)  # its two attempts failed: kept failed, and waiting
    raw = await db.webhook_events_raw.find_one({"_id": raw_id})
    assert (raw["status"], raw["attempts"], parked["reason"]) == ("failed", 2, "retry"), raw
    assert metrics.WEBHOOK_FAILED.labels(kind="retryable")._value.get() == failed_before + 1

    async def run_again_and_failed() -> bool:
        doc = await waiting()
        return doc is not None and doc["tries"] >= 1

    await wait_for(run_again_and_failed)  # the sweep ran it; still failing: it waits longer
    store_away["on"] = False

    async def filed() -> list[str] | None:
        bodies = [m["body"] for m in await all_messages(client, tenant)]
        return bodies or None

    assert await wait_for(filed, timeout=20) == ["meu pedido não chegou"]

    async def outcome_written() -> bool:
        # The thread shows the message a moment before the sweep writes the delivery's outcome
        # and ends its wait: read them once both are written.
        raw = await db.webhook_events_raw.find_one({"_id": raw_id})
        return raw["status"] != "failed" and (await waiting() or {}).get("applied_at") is not None

    await wait_for(outcome_written)
    raw = await db.webhook_events_raw.find_one({"_id": raw_id})
    assert raw["status"] == "processed", raw
