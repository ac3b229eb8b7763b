"""scripts/reprocess_webhooks: a failed delivery stored in a shape this version does not read (an
older version's, an odd one) is passed over, logged and named to the operator, and every other
failed delivery is still listed and reprocessed; the listing's pages move past it, so a page of
nothing but unreadable documents neither ends the run nor loops on it."""

from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from backend.core.clock import utcnow
from backend.core.ids import new_id
from backend.webhooks import service
from backend.webhooks.models import RawEvent
from scripts import reprocess_webhooks
from tests.scripts.cli import env_for, run_cli

UNREADABLE = "webhook raw event unreadable; passed over"


async def _store(db: Any, connection_id: str) -> tuple[list[str], list[str]]:
    """Three failed documents that do not read (no body, reseller nor arrival time), sorting
    first, then two readable failed deliveries: (unreadable ids, readable ids)."""
    bad, good = [], []
    for n, raw_id in enumerate(sorted(new_id() for _ in range(5))):
        if n < 3:
            await db.webhook_events_raw.insert_one({"_id": raw_id, "connection_id": connection_id, "status": "failed"})
            bad.append(raw_id)
        else:
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
            good.append(raw_id)
    return bad, good


async def test_an_unreadable_failed_delivery_is_passed_over_and_the_others_are_reprocessed(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection_id = new_id()
    bad, good = await _store(db, connection_id)
    ran: list[str] = []

    async def process(_db: Any, raw: RawEvent, **_: Any) -> service.Processed:
        ran.append(raw.id)
        return service.Processed("processed")

    monkeypatch.setattr(service, "process", process)

    with capture_logs() as logs:
        # Pages of two: the first holds only unreadable documents, and the paging goes on past them.
        picked = await reprocess_webhooks.pick(db, connection_id=connection_id, limit=2)
        results = await reprocess_webhooks.reprocess(db, connection_id=connection_id, limit=10, dry_run=False)

    assert ([raw.id for raw in picked.events], picked.unreadable) == (good, bad)
    assert [(raw.id, outcome) for raw, outcome in results] == [(raw_id, "processed") for raw_id in good]
    assert ran == good
    assert [e["raw_id"] for e in logs if e["event"] == UNREADABLE] == bad * 2  # logged with its id, each run
    for raw_id in bad:  # left as it was, for an operator to mend
        assert await db.webhook_events_raw.find_one({"_id": raw_id}) == {
            "_id": raw_id,
            "connection_id": connection_id,
            "status": "failed",
        }


async def test_the_operator_is_told_which_deliveries_could_not_be_read(
    db: Any, mongo_url: str, db_name: str, tmp_path: Path
) -> None:
    connection_id = new_id()
    bad, good = await _store(db, connection_id)

    res = await run_cli(
        "scripts.reprocess_webhooks",
        "run",
        "--connection",
        connection_id,
        "--limit",
        "2",
        "--dry-run",
        env=env_for(mongo_url, db_name),
        cwd=tmp_path,
    )

    assert res.code == 1, res.output  # not all well: some stored deliveries do not read
    assert "2 event(s); 0 still failing" in res.stdout, res.output
    for raw_id in good:
        assert raw_id in res.stdout, res.output
    assert "3 stored event(s) do not read as a delivery, passed over" in res.stdout, res.output
    assert [line.split()[-1] for line in res.stdout.splitlines() if "unreadable:" in line] == bad, res.output
