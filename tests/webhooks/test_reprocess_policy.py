"""scripts/reprocess_webhooks: an event whose reprocessing meets a retryable outcome (a winner not
yet visible, a race lost too often) is reported as still failing and the run goes on to the next
events, instead of stopping with a traceback."""

from typing import Any

import pytest

from backend.core.clock import utcnow
from backend.core.errors import Conflict, NotYetVisible, Unprocessable
from backend.core.ids import new_id
from backend.webhooks import service
from backend.webhooks.models import RawEvent
from scripts import reprocess_webhooks


async def _failed_events(db: Any, connection_id: str, n: int) -> list[str]:
    ids = sorted(new_id() for _ in range(n))
    for raw_id in ids:
        await db.webhook_events_raw.insert_one(
            {
                "_id": raw_id,
                "connection_id": connection_id,
                "reseller_id": new_id(),
                "status": "failed",
                "received_at": utcnow(),
                "body": "{}",
            }
        )
    return ids


async def test_a_retryable_outcome_is_reported_and_the_run_goes_on(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    connection_id = new_id()
    first, second, third = await _failed_events(db, connection_id, 3)
    raised = {first: NotYetVisible("ticket x exists but is not visible yet; retry"), second: Conflict("busy; retry")}

    async def process(_db: Any, raw: RawEvent, **_: Any) -> str:
        if raw.id in raised:
            raise raised[raw.id]
        return "processed"

    monkeypatch.setattr(service, "process", process)
    results = await reprocess_webhooks.reprocess(db, connection_id=connection_id, limit=10, dry_run=False)

    outcomes = {raw.id: outcome for raw, outcome in results}
    assert outcomes[third] == "processed"
    assert outcomes[first].startswith("failed (retryable:") and "not visible yet" in outcomes[first]
    assert outcomes[second].startswith("failed (retryable:")


async def test_a_final_error_is_not_dressed_as_retryable(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    connection_id = new_id()
    (only,) = await _failed_events(db, connection_id, 1)

    async def process(_db: Any, raw: dict[str, Any], **_: Any) -> str:
        raise Unprocessable("a rule refused it")

    monkeypatch.setattr(service, "process", process)
    with pytest.raises(Unprocessable):
        await reprocess_webhooks.reprocess(db, connection_id=connection_id, limit=10, dry_run=False)
    assert (await db.webhook_events_raw.find_one({"_id": only}))["status"] == "failed"
