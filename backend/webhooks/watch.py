"""The connection watch: every CONNECTION_WATCH_SECONDS, each backend process asks the provider
how it holds every connection bound to an instance there, deactivated ones too (what their
clients write is still filed): connections.check_at_provider.

Why: every client message reaches IAZE through the instance's webhook, and nothing in IAZE would
notice one that stopped working. Someone edits it in Evolution's manager, Evolution's store is
restored from an old backup, PUBLIC_BASE_URL moves to a new domain: from then on Evolution posts
nowhere, or with a token the webhook refuses (401, never retried), and every message is stored
at Evolution and seen by nobody here. The state matters for the same reason: the
CONNECTION_UPDATE that says the phone disconnected may be one of the posts that never came.

What a check does, per connection:
- records the provider's state (the owner's disconnection banner follows it);
- when the webhook drifted in a way that loses posts (`connections.webhook_drift`), records the
  catch-up it owes first (webhooks.service.owe_catch_up: a durable `webhook_waiting` entry),
  then sets the webhook again, then catches up what the provider kept (findMessages) from when
  this process last found the webhook right (less CATCH_UP_MARGIN: WhatsApp stamps a message
  when the client wrote it, which may be before it reached the provider), or
  CONNECTION_WATCH_CATCH_UP_HOURS back when it never did. A kill anywhere after the first write
  leaves the debt to the processors' sweep (run_waiting), which pays it after CATCH_UP_HOLD.
  Catching up is idempotent (messages by their ids), so a generous window costs only reads;
- the same catch-up, without a drift (nor a debt recorded: the stored time moves only once the
  catch-up is done), at a process's first check of a connection, from the
  last time any process found its webhook right (`webhook_state` "watched:<id>"): when every
  process was down (a deploy, a crash), Evolution posted into the void and retried, and an
  Evolution restarted meanwhile (the same deploy) forgets those retries; only the messages not
  stored here are filed (webhooks.service.catch_up), so after a restart nobody had missed, this
  costs one read per message of the window;
- a drift that loses nothing (media inline) is set again without a catch-up;
- an instance the provider no longer has (its store lost): the connection is recorded closed and
  unbound, so the owner sees it disconnected and its next QR code creates the instance again
  (the history sync of that pairing brings what the phone received meanwhile).

Every process checks every connection (two provider reads per connection per period; a repair
made twice is the same repair, and a catch-up twice files nothing twice). A provider or store
failure is logged and counted (`iaze_connection_check_failed_total`); the next period asks
again, from the same last-right time."""

import asyncio
import contextlib
import random
from datetime import datetime, timedelta

from backend.connections import service as connections
from backend.connections.providers import registry
from backend.connections.providers.base import ProviderError, WhatsAppProvider
from backend.core import metrics
from backend.core.background import BackgroundLoop
from backend.core.clock import as_utc, utcnow
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.logging import get_logger
from backend.webhooks import repository, service

log = get_logger("webhooks")

CATCH_UP_MARGIN = timedelta(minutes=30)
# A provider down answers every connection alike, each after its timeout: the pass ends after this
# many in a row instead of spending EVOLUTION_TIMEOUT_SECONDS on each of thousands.
UNREACHABLE_IN_A_ROW = 3
HARMLESS = frozenset({"base64"})  # drifts that lose no post


async def check_connections(db: Database, settings: Settings, *, right_at: dict[str, datetime]) -> dict[str, list[str]]:
    """One pass over every connection the provider holds an instance for, deactivated ones too
    (what their clients write is still filed). `right_at`: per connection, when this process
    last found its webhook right (kept across passes; empty in a process that just started).
    Returns the drift found per connection checked (repaired); a connection whose check failed
    is left out, as is one whose document does not read (connections.bound_internal): each on its
    own, so one that fails at every pass (a provider no registry knows) stops no other's check."""
    checked: dict[str, list[str]] = {}
    unreachable = 0
    async with registry.http_client(settings) as http:
        for conn in await connections.bound_internal(db):  # those that read (one that does not is logged)
            started = utcnow()
            try:
                provider = registry.build(conn.provider, settings, http)  # inside: one no registry knows is its own
                checked[conn.id] = await _check(db, settings, conn, provider, started, known=right_at.get(conn.id))
            except Exception as exc:  # the provider or the store away, or a bug: asked again next period
                metrics.CONNECTION_CHECK_FAILED.inc()
                log.warning("connection check failed", connection_id=conn.id, error=f"{type(exc).__name__}: {exc}")
                unreachable = unreachable + 1 if isinstance(exc, ProviderError) and exc.retryable else 0
                if unreachable >= UNREACHABLE_IN_A_ROW:
                    log.warning("provider unreachable; connection checks resume next period")
                    break
                continue
            unreachable = 0
            if checked[conn.id] != ["instance"]:
                right_at[conn.id] = started
                await repository.record_watched_right(db, conn.id, started)
    return checked


async def _check(
    db: Database,
    settings: Settings,
    conn: connections.Connection,
    provider: WhatsAppProvider,
    started: datetime,
    *,
    known: datetime | None,
) -> list[str]:
    """One connection: its state and webhook (`connections.check_at_provider`), the webhook set
    again when it drifted, and a catch-up of what the provider kept since it was last found right
    when posts may have been lost: the webhook drifted, or this process has not watched the
    connection yet (it just started: every process may have been down, and an Evolution restarted
    meanwhile forgets the posts it was retrying), from the last time any process found it right.
    `started`: when this check began (recorded as the next right time once it ends well)."""
    drift = await connections.check_at_provider(db, settings, conn, provider)
    if drift == ["instance"]:  # gone at the provider: recorded, the owner pairs again
        return drift
    lost = bool(set(drift) - HARMLESS)
    stored = await repository.watched_right_at(db, conn.id) if known is None else None
    if not lost and stored is None:
        if drift:
            await connections.set_webhook_again(settings, conn, provider)
            metrics.CONNECTION_WEBHOOK_REPAIRED.inc()
        return drift
    since = known or stored or started - timedelta(hours=settings.CONNECTION_WATCH_CATCH_UP_HOURS)
    since = max(since - CATCH_UP_MARGIN, as_utc(conn.created_at))
    # A drift's debt is recorded before the repair, after which no check would see a reason to
    # catch up. A restart's needs no record: the stored right time moves only once it is paid,
    # so a process that dies before paying leaves it to the next one's first check.
    owed = await service.owe_catch_up(db, conn.id, since=since) if lost else None
    if drift:
        await connections.set_webhook_again(settings, conn, provider)
        metrics.CONNECTION_WEBHOOK_REPAIRED.inc()
    if owed is not None:
        done = await service.pay_catch_up(db, settings, conn, provider, owed)
    else:
        done = await service.catch_up(db, conn, provider, since=since, until=utcnow(), lanes=settings.WEBHOOK_LANES)
    (log.warning if lost or done.missing else log.info)(
        "connection caught up" + (" after its webhook was set again" if lost else " after a restart"),
        connection_id=conn.id,
        drift=drift,
        since=since.isoformat(),
        found=done.found,
        missing=done.missing,
    )
    return drift


async def run_until(db: Database, settings: Settings, stop: asyncio.Event) -> None:
    """A pass every CONNECTION_WATCH_SECONDS (±20 %: processes started together spread out), the
    first soon after the start (2-10 % of a period), which catches up what a restart missed."""
    right_at: dict[str, datetime] = {}
    period = settings.CONNECTION_WATCH_SECONDS
    wait = random.uniform(0.02, 0.1) * period
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=wait)
        if stop.is_set():
            return
        try:
            await check_connections(db, settings, right_at=right_at)
        except Exception as exc:  # the list of connections unreadable: the next pass
            metrics.CONNECTION_CHECK_FAILED.inc()
            log.warning("connection watch pass failed", error=f"{type(exc).__name__}: {exc}")
        wait = random.uniform(0.8, 1.2) * period


def background(db: Database, settings: Settings, *, enabled: bool = True) -> BackgroundLoop:
    """The watch inside a backend process's lifespan (CONNECTION_WATCH_ENABLED)."""
    return BackgroundLoop(
        "connection-watch", run_until, db, settings, enabled=enabled and settings.CONNECTION_WATCH_ENABLED
    )
