"""Refreshes the gauges that are read from the database (tickets by state per tenant, outbox
backlog, webhook lane lag, late scheduled messages) when /metrics is scraped, at most once per METRICS_REFRESH_SECONDS:
Prometheus scrapes every process, and the figures are the same from each (alert on max()).
A failed refresh keeps the previous values and counts iaze_metrics_refresh_errors_total; the
scrape itself never fails for it.

Cost of one refresh, all `_id` reads (FerretDB pushes those down): per tenant the ticket counters'
totals and tail (backend/tickets/counters.py), plus a page of the resellers list per 200 tenants;
the outbox cursor, head and at most METRICS_LOOK_AHEAD entries; per webhook lane the same; and
two counts of the webhook deliveries waiting to be run again (a small collection); the soonest
scheduled message still waiting (one indexed read on MongoDB, a scan of a small collection on
FerretDB).
"""

import asyncio
import time

from pymongo.errors import PyMongoError

from backend.core import metrics
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.logging import get_logger
from backend.outbound import backlog
from backend.resellers import service as resellers
from backend.scheduled import service as scheduled
from backend.tickets import counters
from backend.tickets.states import Status
from backend.webhooks import lag

log = get_logger("monitoring")


class Refresher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = asyncio.Lock()
        self._done_at: float | None = None

    async def refresh(self, db: Database) -> None:
        async with self._lock:  # concurrent scrapes share one refresh
            now = time.monotonic()
            if self._done_at is not None and now - self._done_at < self.settings.METRICS_REFRESH_SECONDS:
                return
            try:
                await refresh(db, self.settings)
            except PyMongoError as exc:
                metrics.REFRESH_ERRORS.inc()
                log.warning("metrics refresh failed", error=str(exc))
            self._done_at = time.monotonic()


async def refresh(db: Database, settings: Settings) -> None:
    for tenant in await resellers.all_ids(db):
        figures = await counters.tenant_by_status(db, tenant)
        for status in Status:
            metrics.TICKETS.labels(reseller_id=tenant, status=status.value).set(figures[status.value])
    owed = await backlog.measure(db, look=settings.METRICS_LOOK_AHEAD)
    metrics.OUTBOX_BACKLOG.set(owed.entries)
    metrics.OUTBOX_OLDEST_PENDING.set(owed.oldest_pending_seconds)
    for lane in await lag.measure(db, lanes=settings.WEBHOOK_LANES, look=settings.METRICS_LOOK_AHEAD):
        metrics.WEBHOOK_BACKLOG.labels(lane=str(lane.lane)).set(lane.backlog)
        metrics.WEBHOOK_LAG.labels(lane=str(lane.lane)).set(lane.lag_seconds)
    for reason in ("edit", "retry", "catch_up"):
        metrics.WEBHOOK_WAITING.labels(reason=reason).set(await lag.waiting(db, reason))
    metrics.SCHEDULED_OVERDUE.set(await scheduled.overdue_seconds(db))
