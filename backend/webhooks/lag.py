"""How far the webhook processor is behind, per lane, for the metrics (backend/monitoring):
`_id` reads only (the lane's saved cursor, its head, a few entries past the cursor)."""

from dataclasses import dataclass

from backend.core.clock import as_utc, utcnow
from backend.core.db import Database
from backend.webhooks import repository

UNPROCESSED = "received"  # a stored delivery no processor has finished


@dataclass(frozen=True)
class LaneLag:
    lane: int
    backlog: int  # deliveries stored past the saved cursor (it trails the walk by a few)
    lag_seconds: float  # age of the oldest delivery not processed yet; 0 when none


async def measure(db: Database, *, lanes: int, look: int) -> list[LaneLag]:
    """Each lane's cursor and head, and its oldest unprocessed delivery among the `look` after
    the cursor (a lane further behind already shows as a backlog)."""
    now = utcnow()
    out = []
    for n in range(lanes):
        log = repository.lane(n)
        cursor, head = await log.get_cursor(db), await log.head(db)
        lag = 0.0
        for seq in range(cursor + 1, min(head, cursor + look) + 1):
            raw = await log.get(db, seq)
            if raw is not None and raw.get("status") == UNPROCESSED and raw.get("received_at") is not None:
                lag = max(0.0, (now - as_utc(raw["received_at"])).total_seconds())
                break
        out.append(LaneLag(lane=n, backlog=max(0, head - cursor), lag_seconds=lag))
    return out


async def waiting(db: Database, reason: str) -> int:
    """Deliveries waiting to be run again for `reason` ("edit", "retry"; webhooks.service
    `run_waiting`): one scan of that small collection on FerretDB, an index on MongoDB."""
    return await repository.count_waiting_internal(db, reason)
