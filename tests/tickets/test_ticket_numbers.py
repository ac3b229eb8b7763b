"""Ticket numbers (tickets/service.py `_allocate_number`) on the real store: creators of one tenant
in one process take numbers one after the other, without losing claims to each other; creators
in another process at the same time still get numbers of their own (the unique key decides)."""

import asyncio
from typing import Any

from backend.core.ids import new_id
from backend.tickets import service
from tests.monitoring import CommandRecorder


async def test_creators_of_one_tenant_in_one_process_claim_each_number_once_and_other_processes_still_get_their_own(
    recorded_and_rival: tuple[Any, Any, CommandRecorder],
) -> None:
    """Issue 20: a backlog's lanes opening tickets of one tenant at once were all proposed the
    same number by FerretDB's non-atomic $inc; each loser read the winner's key and probed on."""
    db, other, recorder = recorded_and_rival
    reseller = new_id()
    await service._allocate_number(db, reseller, new_id())  # the counter exists (its upsert race is another test's)
    recorder.commands.clear()
    mine = await asyncio.gather(*(service._allocate_number(db, reseller, new_id()) for _ in range(12)))
    assert sorted(mine) == list(range(2, 14))
    # No claim lost to a creator of the same process: no read of a winner's key, no counter raise.
    assert recorder.named("find") == [] and recorder.named("update") == [], recorder.commands
    # Another process's creators between and beside ours: every number is taken once.
    theirs, more = await asyncio.gather(
        asyncio.gather(*(service._allocate_number(other, reseller, new_id()) for _ in range(8))),
        asyncio.gather(*(service._allocate_number(db, reseller, new_id()) for _ in range(8))),
    )
    taken = [1, *mine, *theirs, *more]
    assert len(set(taken)) == len(taken) == 29
    keys = await db["natural_keys"].count_documents({"_id": {"$regex": f"^{service.NUMBER_KEY}:{reseller}:"}})
    assert keys == 29
