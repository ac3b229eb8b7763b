"""The sweep's read of the waiting entries (repository `runnable_waiting_internal`) pages past a
document whose `parked_at` is missing or no time: before the fix, a full page that ended on one
raised KeyError (or, on a value of another type, read no entry parked at a time after it), and
every sweep stopped there, so nothing waiting behind it (a client's message) was ever run."""

from datetime import timedelta
from typing import Any

import pytest

from backend.core.clock import utcnow
from backend.webhooks import repository
from backend.webhooks.models import Waiting
from tests.factories import unique_phone


@pytest.mark.parametrize("damaged", [{}, {"parked_at": None}, {"parked_at": "yesterday"}])
async def test_a_full_page_ending_on_an_entry_without_a_parking_time_does_not_hide_the_ones_after(
    db: Any, damaged: dict[str, Any]
) -> None:
    await db.webhook_waiting.update_many({"applied_at": None}, {"$set": {"applied_at": utcnow()}})  # earlier tests'
    run = unique_phone()
    for n in range(2):  # a full page of them
        await db.webhook_waiting.insert_one({"_id": f"damaged-{run}-{n}", "applied_at": None, "tries": 0, **damaged})
    due = Waiting(
        id=f"due-{run}:retry",
        raw_id=f"due-{run}",
        connection_id="c",
        reason="retry",
        parked_at=utcnow() - timedelta(minutes=1),
        not_before=utcnow() - timedelta(seconds=1),
    )
    await db.webhook_waiting.insert_one(due.stored())

    read = [w.id async for w in repository.runnable_waiting_internal(db, now=utcnow(), page=2)]

    assert read == [due.id]
