"""Inbound WhatsApp webhooks: authenticate, store raw (the acknowledgement), process later.

The webhook answers 2xx once the raw delivery is durable (`receive`: one connection read, one
insert), so the provider stops retrying and nothing it sent can be lost. The processor
(backend/webhooks/processor.py) then runs `process` on it, in order per chat: a payload we cannot
process (unknown event, bug) is kept with its error and scripts/reprocess_webhooks.py runs it
again; a status receipt ahead of its message is parked until the message is known. Processing is
idempotent: a message's `_id` is derived from (connection id, provider message id), so a
redelivery stores nothing new. A connection deactivated in IAZE (`active: false`) may still be
connected at the provider: its deliveries are processed like any other's (messages filed into
their client's ticket, receipts and connection changes recorded), and only the automatic messages
stay quiet (backend/automation).
"""

import asyncio
import contextlib
import hashlib
import hmac
import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError

from backend.automation import service as automation
from backend.clients import service as clients
from backend.clients.phones import whatsapp_addresses
from backend.connections import service as connections
from backend.connections.providers import registry
from backend.connections.providers.base import (
    ConnectionChange,
    Ignored,
    InboundEvent,
    InboundMessage,
    MessageChange,
    ProviderError,
    QrChange,
    Quote,
    StatusUpdate,
    WebhookParseError,
    WhatsAppProvider,
    change_key,
)
from backend.core import metrics
from backend.core.clock import as_utc, utcnow
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.errors import Unauthorized
from backend.core.ids import is_valid_id
from backend.core.logging import get_logger
from backend.core.retry import is_retryable
from backend.core.runtime import runtime_of
from backend.core.tuning import INGEST_CHAT_HINTS as CHAT_HINTS
from backend.media import service as media
from backend.messages import public as message_store
from backend.messages import service as messages
from backend.messages.models import Message
from backend.messages.service import message_id_for as message_id_for  # published: tests and scripts
from backend.outbound import service as outbound
from backend.tickets import intake
from backend.tickets import service as tickets
from backend.users import service as users
from backend.webhooks import repository, sanitize, signals
from backend.webhooks.models import RawEvent, Waiting
from backend.webhooks.schemas import Outcome

log = get_logger("webhooks")

# Larger deliveries (up to WEBHOOK_MAX_BODY_BYTES) are kept in parts: one document stays well
# under MongoDB's 16 MB limit with the delivery's other fields.
MAX_RAW_BYTES = 15 * 1024 * 1024
# A delivery failed on errors that may pass is run again after 5 minutes, doubling up to 2 hours.
REDRIVE_FIRST, REDRIVE_MAX = timedelta(minutes=5), timedelta(hours=2)
FILED: frozenset[Outcome] = frozenset({"processed", "ignored"})
CAUGHT_UP = "iaze-catch-up"  # a stored sync's `source` when IAZE asked for it (`catch_up`)
# An owed catch-up waits this long for the repair of its webhook before the sweep runs it (the
# check that owes it runs it itself once the webhook is set again; this is for its death).
CATCH_UP_HOLD = timedelta(minutes=2)
SNIFF_MAX_CHARS = 256  # event names and chat ids are short; the raw body keeps the rest
ERROR_MAX_CHARS = 2000
# A new client's name when WhatsApp gives neither its profile name nor its number (a LID chat
# our own phone wrote first): agents rename it.
WHATSAPP_CONTACT = "Contato WhatsApp"
_DUMMY_TOKEN = "x" * 43  # compared against when the connection does not exist: same work either way


async def authenticate(db: Database, connection_id: str, token: str | None) -> connections.Connection:
    """One answer for "no such connection" and "wrong token", so callers learn nothing: both read
    the store once. A token this process's copy of the connection takes (connections.get_cached_internal)
    needs no read; one it refuses is checked against the store, so a token changed in another
    process is never refused because of the copy (the old one is still taken until it expires)."""
    valid = is_valid_id(connection_id)
    conn = connections.kept_internal(db, connection_id) if valid else None
    if conn is None or not hmac.compare_digest(conn.webhook_token.encode(), (token or "").encode()):
        conn = await connections.get_shared_internal(db, connection_id) if valid else None
    expected = conn.webhook_token if conn else _DUMMY_TOKEN
    if not hmac.compare_digest(expected.encode(), (token or "").encode()) or conn is None:
        raise Unauthorized("invalid webhook credentials")
    return conn


def _chat_of(payload: dict[str, Any]) -> str:
    """The chat a delivery belongs to ("" for connection-wide events): one chat, one lane."""
    data = payload.get("data")
    if isinstance(data, list) and data:
        data = data[0]
    if not isinstance(data, dict):
        return ""
    nested = data.get("key")
    key: dict[str, Any] = nested if isinstance(nested, dict) else data
    # The chat as the provider names it: a LID chat by its LID, whether or not a delivery also
    # carries its number (backend/clients/phones.py), so all of its messages share a lane. A
    # call names it `from`.
    return str(key.get("remoteJid") or data.get("from") or "")


def _sniff(body: str, hint: str | None) -> tuple[str | None, str]:
    """(event name, chat) for the raw record and its lane; never fails (bad bodies fail later)."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # nested past the parser's depth: kept, and fails later
        return hint, ""
    if not isinstance(payload, dict):
        return hint, ""
    event = payload.get("event")
    name = str(event) if isinstance(event, str) else hint
    # Both are stored with the raw event: what the store refuses must not refuse the delivery.
    return (sanitize.text(name)[:SNIFF_MAX_CHARS] if name else name), sanitize.text(_chat_of(payload))[:SNIFF_MAX_CHARS]


@dataclass(frozen=True)
class CaughtUp:
    found: int  # the messages the provider holds for the window
    chats: int  # deliveries stored, one per chat with messages not stored here
    missing: int = 0  # the messages in those deliveries


async def catch_up(
    db: Database,
    conn: connections.Connection,
    provider: WhatsAppProvider,
    *,
    since: datetime,
    until: datetime,
    lanes: int,
    page_size: int = 200,
) -> CaughtUp:
    """What the provider itself stored of the connection's messages stamped between `since` and
    `until` (its findMessages), stored here as history-sync deliveries, one per chat in that
    chat's lane: processed like a MESSAGES_SET (one from before the connection stays out). Only the
    messages not stored here go (one `_id` read each: a window of hundreds of messages that all
    arrived costs reads, not deliveries to process); one stored meanwhile is a duplicate by id
    when processed. For the deliveries an outage lost (scripts/catch_up_messages.py, and the
    connection watch after a drift or a restart). Newest first from the provider, stored oldest
    first per chat."""
    by_chat: dict[str, list[dict[str, Any]]] = {}
    page, pages, found = 1, 1, 0
    while page <= pages:
        records, pages = await provider.find_messages(
            instance_name=conn.instance_name, since=since, until=until, page=page, page_size=page_size
        )
        stored = await asyncio.gather(*(_stored_record(db, conn.id, record) for record in records))
        for record, here in zip(records, stored, strict=True):
            if not here:
                by_chat.setdefault(_chat_of({"data": record}), []).append(record)
        found += len(records)
        page += 1
    for records in by_chat.values():
        records.sort(key=lambda r: str(r.get("messageTimestamp") or "").zfill(20))
        sync = {"event": "messages.set", "instance": conn.instance_name, "data": records, "source": CAUGHT_UP}
        body = json.dumps(sync).encode()
        await store(db, conn, event_hint="messages.set", body=body, lanes=lanes)
    missing = sum(map(len, by_chat.values()))
    metrics.CAUGHT_UP.inc(missing)
    return CaughtUp(found=found, chats=len(by_chat), missing=missing)


async def _stored_record(db: Database, connection_id: str, record: dict[str, Any]) -> bool:
    """Whether a provider's record names a message stored here (a client's, or a reply's echo).
    One stored under a document that does not read as a message is stored all the same: logged
    and passed over (delivered again, it would only fail on that document), so one bad message
    does not stop the catch-up of its connection's whole window. It stays, for an operator."""
    key = record.get("key")
    key_id = key.get("id") if isinstance(key, dict) else None
    if not isinstance(key_id, str) or not key_id:
        return False
    try:
        return await _changed_message(db, connection_id, key_id) is not None
    except ValidationError as exc:
        log.error(
            "stored message unreadable; the catch-up passes over it",
            connection_id=connection_id,
            provider_message_id=key_id,
            error=str(exc),
        )
        return True


def lane_of(connection_id: str, chat: str, lanes: int) -> int:
    digest = hashlib.sha256(f"{connection_id}:{chat}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % lanes


async def receive(
    db: Database, *, connection_id: str, token: str | None, event_hint: str | None, body: bytes, lanes: int
) -> tuple[Outcome, str]:
    """Authenticates and stores the delivery durably (w=majority, j=true) in its chat's lane.
    Returns ("received", raw id); a database error propagates (the route answers 503)."""
    conn = await authenticate(db, connection_id, token)
    return await store(db, conn, event_hint=event_hint, body=body, lanes=lanes)


async def store(
    db: Database, conn: connections.Connection, *, event_hint: str | None, body: bytes, lanes: int
) -> tuple[Outcome, str]:
    """Stores an authenticated delivery (the route authenticates before it reads the body), whole
    whatever its size: one too large for one document is kept in parts (repository.store_body)."""
    text = body.decode("utf-8", errors="replace")
    event, chat = _sniff(text, event_hint)
    parted: dict[str, Any] = {}
    if len(body) > MAX_RAW_BYTES:
        body_id, parts = await repository.store_body(db, body)
        parted, text = {"body_id": body_id, "body_parts": parts}, ""
    lane = lane_of(conn.id, chat, lanes)
    raw: dict[str, Any] = {
        "lane": lane,
        "chat": chat,
        "connection_id": conn.id,
        "reseller_id": conn.reseller_id,
        "provider": conn.provider,
        "event_hint": event_hint,
        "event": event,
        "body": text,
        **parted,
        "received_at": utcnow(),
        "status": "received",
        "attempts": 0,
        "error": None,
        "result": None,
        # The processor that will be handed it holds its first attempt (processor `_claim`).
        "handed_to": signals.claimant(db, text),
        "acked_by": signals.processor_of(db),
    }
    seq, raw_id = await repository.lane(lane).append(db, raw, reserve=True)
    if not signals.wake(db, lane, seq, {**raw, "_id": raw_id, "seq": seq}, connection=conn):
        # Its named processor stopped between the claim and now, and released what it held before this.
        await repository.release_handed(db, [raw_id])
    return "received", raw_id


@dataclass(frozen=True)
class Processed:
    """What `process` recorded on a delivery: its outcome and, when it failed, the error it kept."""

    outcome: Outcome
    error: str | None = None


async def process(
    db: Database,
    raw: RawEvent,
    *,
    conn: connections.Connection | None = None,
    attempt: int | None = None,
    retry: bool | None = None,
    chats: dict[str, Any] | None = None,
    failed_as: Literal["final", "waiting_postponed"] = "final",
) -> Processed:
    """Runs one stored delivery and records the outcome on it, returned with the error it keeps.
    Retryable errors (database, backend/core/retry.py) propagate: the processor retries with
    backoff; anything else is kept as the event's error, final — counted `failed_as` (the waiting
    sweep's runs: "waiting_postponed", as it runs them again and counts them final only once it
    gives them up, `_give_up`).
    `attempt`: the processor's claimed attempt number, recorded as `attempts`.
    `retry`: an earlier attempt may have started (by default, when `attempt` > 1).
    `chats`: kept by the caller across the deliveries of one lane walk; per chat, the client and
    the ticket its last message was filed under, and per tenant its config (see `_ingest_message`)."""
    counted: dict[str, Any] = {"attempts": attempt} if attempt is not None else {}
    inc = attempt is None
    try:
        # Inside: a connection document that does not read is this delivery's error, kept (a
        # reprocessing run goes on to the next delivery), not a crash of its caller.
        conn = conn or await connections.get_internal(db, raw.connection_id)
        if conn is None:
            raise LookupError("connection not found")
        if raw.truncated:
            raise WebhookParseError("payload larger than the raw store keeps")
        try:
            payload = json.loads(await repository.body_of(db, raw))
        except ValueError as exc:
            raise WebhookParseError(f"body is not JSON: {exc}") from exc
        except RecursionError as exc:
            raise WebhookParseError("body is JSON nested deeper than the parser reads") from exc
        parsed = registry.parse_webhook(conn.provider, payload, event_hint=raw.event_hint)
        events = [sanitize.event(event) for event in parsed]
        if isinstance(payload, dict) and payload.get("source") == CAUGHT_UP:
            events = [replace(e, recovered=True) if isinstance(e, InboundMessage) else e for e in events]
        # Whatever the connection's `active` says: one deactivated in IAZE may still be connected
        # at the provider, and what its clients write is filed as ever (the automatic messages
        # stay quiet on it: automation `_speaks`, which asks the store, not this copy).
        if retry is None:
            retry = attempt is not None and attempt > 1
        results, failed = await _apply_all(db, conn, events, retry=retry, raw_id=raw.id, chats=chats)
        outcome: Outcome = "ignored" if results and all(r.startswith("ignored") for r in results) else "processed"
    except Exception as exc:  # unknown shape or a bug: keep it
        if is_retryable(exc):
            raise
        log.warning("webhook event failed", raw_id=raw.id, error=str(exc), kind=type(exc).__name__)
        metrics.WEBHOOK_FAILED.labels(kind=failed_as).inc()
        error = sanitize.text(f"{type(exc).__name__}: {exc}")[:ERROR_MAX_CHARS]
        await repository.mark(
            db,
            raw.id,
            {"status": "failed", "error": error, "failed_at": utcnow(), "retry_at": None, **counted},
            inc_attempts=inc,
        )
        return Processed("failed", error)
    done: dict[str, Any] = {"status": outcome, "error": None, "result": results, "processed_at": utcnow()}
    if failed is not None:  # the others are applied; kept failed, the delivery is run again whole
        log.warning("webhook event failed", raw_id=raw.id, error=failed, kind="one event of several")
        metrics.WEBHOOK_FAILED.labels(kind=failed_as).inc()
        outcome = "failed"
        done = {"status": outcome, "error": failed, "result": results, "failed_at": utcnow()}
    await repository.mark(db, raw.id, {**done, "retry_at": None, **counted}, inc_attempts=inc)
    return Processed(outcome, failed)


async def _apply_all(
    db: Database,
    conn: connections.Connection,
    events: list[InboundEvent],
    *,
    retry: bool,
    raw_id: str,
    chats: dict[str, Any] | None,
) -> tuple[list[str], str | None]:
    """Applies a delivery's events in order: (their results, the first final error). One that
    fails for good does not hold back the others (a history sync carries hundreds of messages,
    each its client's): it is recorded as failed in its place and the delivery is kept failed, so
    a reprocessing runs it all again (each event is idempotent). A retryable error stops the
    delivery, which is retried whole; so does any error of a one-event delivery."""
    results: list[str] = []
    first: str | None = None
    for event in events:
        try:
            results.append(await _apply(db, conn, event, retry=retry, raw_id=raw_id, chats=chats))
        except Exception as exc:
            if is_retryable(exc) or len(events) == 1:
                raise
            error = sanitize.text(f"{type(exc).__name__}: {exc}")[:ERROR_MAX_CHARS]
            results.append(f"failed: {error}")
            first = first or error
    return results, first


async def _apply(
    db: Database,
    conn: connections.Connection,
    event: InboundEvent,
    *,
    retry: bool = False,
    raw_id: str = "",
    chats: dict[str, Any] | None = None,
) -> str:
    """`retry`: an earlier attempt at this same delivery was claimed and did not finish.
    `raw_id`: the delivery, for a fromMe upsert held as a probable echo (released from it)."""
    if isinstance(event, InboundMessage):
        return await _ingest_message(db, conn, event, retry=retry, raw_id=raw_id, chats=chats)
    if isinstance(event, MessageChange):
        return await _apply_change(db, conn, event, raw_id=raw_id)
    if isinstance(event, StatusUpdate):
        return await outbound.apply_receipt(
            db,
            connection_id=conn.id,
            update=event,
            fallback_id=message_id_for(conn.id, event.provider_message_id),
            retry=retry,
        )
    if isinstance(event, ConnectionChange | QrChange):
        # record_status skips a write that would change nothing: compared with a copy older than
        # another process's write (connections.get_cached_internal), it would keep a wrong status.
        current = await connections.get_internal(db, conn.id) or conn
        if isinstance(event, QrChange):
            await connections.record_status(
                db, current, status="connecting", qr_code=event.qr_code, retry=retry, posted_at=event.at
            )
            return "qrcode updated"
        keep_qr = current.qr_code if event.status == "connecting" else None
        await connections.record_status(
            db, current, status=event.status, qr_code=keep_qr, retry=retry, posted_at=event.at
        )
        return f"connection {event.status}"
    assert isinstance(event, Ignored)
    return f"ignored: {event.reason}"


async def _apply_change(db: Database, conn: connections.Connection, change: MessageChange, *, raw_id: str) -> str:
    """An edit, a deletion for everyone or a reaction, recorded beside the message it changes
    (messages.record_change). That message is ours by its provider id: an agent's reply once
    its send was answered, else a message received on this connection. An edit of a message not
    stored yet may come first (Evolution posts a client's edit under our own number, another
    lane than the client's chat, and a backlog's lanes catch up at their own pace; or the message
    reaches us later, in a history sync): it is parked, its lane moves on, and the processor's
    sweep runs its delivery again once the message is stored (`run_waiting`; one whose message
    has not come in the two days the sweep looks after it, a message from before the connection
    or one an outage lost, is given up there: its delivery kept failed for an operator, who can
    catch the message up and reprocess it).

    A deletion for everyone is not parked: Evolution reports it twice, as MESSAGES_EDITED under
    our number and as MESSAGES_DELETE in the message's own chat, after the message (lane order),
    and both are one record. So a deletion of a message not stored is one of a message we never
    had (WhatsApp allows deleting for days: one sent before the connection existed), ignored at
    once. A reaction comes in the reacted chat's lane too: one to a message we never had is
    ignored. Both keep their raw delivery.

    An agent's reaction or edit (messages.react, messages.edit) comes back as the provider's
    report of it: told from one made on the connection's phone as a reply's echo is, so it is no
    second record."""
    pid = change.provider_message_id
    message_id = messages.change_id_for(conn.id, change.kind, pid, change.change_id)

    async def ours(provider_message_id: str) -> bool:
        """An agent's reaction or edit sent by the outbox, echoed back, or one made on the phone:
        told apart as a reply's echo is (by its id, else by the chat and the text or emoji while
        the send is open). True: one of its own, to record."""
        verdict = await outbound.from_me_verdict(
            db,
            connection_id=conn.id,
            addresses=whatsapp_addresses(change.phone, change.lid),
            text=change.body,
            provider_message_id=provider_message_id,
            own_message_id=message_id,
            raw_id=raw_id,
            type_=change.kind,
        )
        return verdict is outbound.FromMe.OWN

    if change.kind == "reaction" and change.from_me and not await ours(change.change_id):
        return "echo of an IAZE reaction"
    target = await _changed_message(db, conn.id, pid)
    if target is None and change.kind == "edit":
        parked = Waiting(
            id=f"{raw_id}:{change_key(change.kind, pid, change.change_id)}",
            raw_id=raw_id,
            connection_id=conn.id,
            reason="edit",
            provider_message_id=pid,
            parked_at=utcnow(),
        )
        parks = await repository.wait(db, parked)
        # Stored meanwhile (its lane runs beside this one)? Then at once, not at the next sweep.
        target = await _changed_message(db, conn.id, pid)
        if target is None:
            if not parks and await repository.waiting_ended(db, parked.id):
                # Its wait was given up (`run_waiting`) and an operator runs it again, its message
                # still not stored: kept failed for them, not "parked" with nothing waiting.
                raise LookupError("the message this edit changes is not stored, and its wait has ended")
            return "parked: the message this edit changes is not stored yet"
        await repository.done_waiting(db, parked.id)
    if target is None:
        return f"ignored: the message this {change.kind} changes is not stored"
    # An edit of a message the connection sent: an agent's edit's report is named by the answer
    # to its send (`change_key`, the provider's edit_text).
    sent_edit = change.kind == "edit" and target.direction == "out"
    if sent_edit and not await ours(change_key("edit", pid, change.change_id)):
        return "echo of an IAZE edit"
    recorded = await messages.record_change(
        db,
        target,
        kind=change.kind,
        message_id=message_id,
        body=change.body,
        from_me=change.from_me if change.kind == "reaction" else None,
        connection_id=conn.id,
    )
    if recorded is None:
        return f"ignored: the ticket of message {target.id} is gone"
    message, created = recorded
    if not created:
        # Stored by an earlier attempt at this delivery, or at this moment by another lane or
        # process (WhatsApp reports a deletion twice, in two chats' lanes): that attempt may have
        # failed, or yet fail, before announcing it and numbering it unread, and this one ends as
        # processed, so no retry comes after it.
        await messages.complete_stored(db, message)
    return f"{change.kind} of message {target.id}: {message.id}" + ("" if created else " (duplicate)")


async def _changed_message(db: Database, connection_id: str, provider_message_id: str) -> Message | None:
    """The message a change names by its provider id: an agent's reply once its send was
    answered, else a message received on (or sent from the phone of) the connection."""
    bound = await outbound.lookup_provider_id(db, connection_id=connection_id, provider_message_id=provider_message_id)
    return await message_store.get_internal(db, bound or message_id_for(connection_id, provider_message_id))


def redrive_wait(tries: int) -> timedelta:
    """How long a delivery that failed on errors that may pass waits before its next run by the
    sweep: REDRIVE_FIRST, doubling, at most REDRIVE_MAX (two dozen runs over the two days the
    sweep looks after it: processor WAITING_LOOKED_AFTER; then it is given up, `_run_again_later`)."""
    return min(REDRIVE_FIRST * int(2**tries), REDRIVE_MAX)


async def wait_to_redrive(db: Database, raw_id: str, connection_id: str) -> None:
    """A delivery whose attempts all failed on errors that may pass (the store away, a race's
    winner not visible): kept failed, and run again by the processors' sweep after `redrive_wait`
    instead of waiting for an operator (scripts/reprocess_webhooks.py): a client's message
    stored raw and shown to nobody is a lost one."""
    now = utcnow()
    waiting = Waiting(id=f"{raw_id}:retry", raw_id=raw_id, connection_id=connection_id, reason="retry", parked_at=now)
    await repository.wait(db, waiting.model_copy(update={"not_before": now + redrive_wait(0)}))


async def owe_catch_up(db: Database, connection_id: str, *, since: datetime) -> Waiting:
    """Records that the messages the connection's provider kept from `since` on may never have
    been posted here (its webhook drifted), before the webhook is set again: a kill after the
    repair still leaves them owed, and the sweep catches them up after CATCH_UP_HOLD."""
    now = utcnow()
    waiting = Waiting(
        id=f"{connection_id}:{since:%Y%m%dT%H%M%S}:catch_up",
        raw_id="",
        connection_id=connection_id,
        reason="catch_up",
        since=since,
        parked_at=now,
        not_before=now + CATCH_UP_HOLD,
    )
    await repository.wait(db, waiting)
    return waiting


async def pay_catch_up(
    db: Database, settings: Settings, conn: connections.Connection, provider: WhatsAppProvider, waiting: Waiting
) -> CaughtUp:
    """Catches up what `owe_catch_up` recorded, up to now (after the webhook's repair: what came
    later is posted), and ends the debt. A failure propagates and leaves it owed."""
    assert waiting.since is not None
    done = await catch_up(db, conn, provider, since=waiting.since, until=utcnow(), lanes=settings.WEBHOOK_LANES)
    await repository.done_waiting(db, waiting.id)
    return done


async def _run_owed(db: Database, settings: Settings, waiting: Waiting, *, looked_after: timedelta) -> bool:
    """An owed catch-up whose check died before paying it (or failed to). Whether it ran."""
    conn = await connections.get_internal(db, waiting.connection_id)
    if conn is None or not conn.provider_created:  # no instance at the provider to ask any more
        await repository.done_waiting(db, waiting.id)
        return False
    try:
        async with registry.http_client(settings) as http:
            await pay_catch_up(db, settings, conn, registry.build(conn.provider, settings, http), waiting)
    except Exception as exc:
        if not (isinstance(exc, ProviderError) or is_retryable(exc)):
            raise
        log.warning("owed catch-up failed; asked again later", connection_id=conn.id, error=str(exc))
        await _run_again_later(db, waiting, error=_error_text(exc), looked_after=looked_after)
    return True


async def run_waiting(db: Database, settings: Settings, *, since: datetime, limit: int) -> int:
    """Runs again, out of their lanes, the deliveries that wait (repository.wait) and whose time
    has come: a parked edit once its message is stored (`_apply_change`: the edit is recorded
    beside it), a failed one at its `not_before`. The delivery's outcome says what happened. For
    the processors' sweep, in every process: a delivery run twice records its messages once (by
    their ids). One that fails again waits longer, for as long as the sweep looks after it (from
    `since` to now: processor WAITING_LOOKED_AFTER), then is given up: kept failed, with its
    error, for scripts/reprocess_webhooks.py, like one that fails for good in `process`. An owed
    catch-up (`owe_catch_up`) is paid the same way. A parked edit whose message has not come by
    then (first seen before `since`) is given up the same way, not left waiting. Each window
    counts from the first sweep that read the entry (`Waiting.seen_at`, recorded here), not from
    its parking: what was parked before the processors' outage still gets its whole window after
    it. Runs (or gives up) at most `limit`, walking past the edits whose message is not stored
    yet however many there are. Returns how many ran or were given up."""
    ran = 0
    now = utcnow()
    looked_after = now - since
    walk = repository.runnable_waiting_internal(db, now=now, page=limit)
    async with contextlib.aclosing(walk) as runnable:
        async for waiting in runnable:
            if waiting.seen_at is None:
                await repository.seen_waiting(db, waiting.id, at=now)
                waiting = waiting.model_copy(update={"seen_at": now})
            try:
                ran += await _run_one_waiting(db, settings, waiting, since=since, looked_after=looked_after)
            except Exception as exc:
                # Each on its own: one that fails at every run (a document that no longer
                # validates, a provider no registry knows) would otherwise stop the pass at the
                # same place every time, and nothing parked after it (a client's message, an owed
                # catch-up) would ever run. It waits longer, as one failing on errors that pass.
                ran += 1
                if is_retryable(exc):
                    log.warning("waiting webhook delivery failed again", waiting_id=waiting.id, error=str(exc))
                else:
                    log.error(
                        "waiting webhook delivery failed; postponed",
                        waiting_id=waiting.id,
                        reason=waiting.reason,
                        error=str(exc),
                        kind=type(exc).__name__,
                    )
                    # Not "final": it runs again, and is counted that way only if it is given up.
                    metrics.WEBHOOK_FAILED.labels(kind="waiting_postponed").inc()
                await _run_again_later(db, waiting, error=_error_text(exc), looked_after=looked_after)
            if ran >= limit:
                break
    return ran


async def _run_one_waiting(
    db: Database, settings: Settings, waiting: Waiting, *, since: datetime, looked_after: timedelta
) -> bool:
    """One of `run_waiting`'s: whether it ran (an edit whose message is not stored yet does not;
    one whose message has not come while the sweep looked after it, first seen before `since`, is
    given up, and counts as run)."""
    if waiting.reason == "catch_up":
        return await _run_owed(db, settings, waiting, looked_after=looked_after)
    edited = waiting.connection_id, waiting.provider_message_id
    if waiting.reason == "edit" and await _changed_message(db, *edited) is None:
        if _window_start(waiting) >= since:
            return False
        # Its message never came (lost in an outage the catch-ups did not cover, or sent before
        # the connection): left waiting, it would be counted waiting forever and told to nobody.
        hours = round(looked_after.total_seconds() / 3600)
        never = f"the message this edit changes ({waiting.provider_message_id}) did not come within {hours} hours"
        await _give_up(db, waiting, error=f"EditedMessageNotStored: {never}", runs=0)
        return True
    raw = await repository.get(db, waiting.raw_id)
    if raw is None or (waiting.reason == "retry" and raw.status in FILED):
        # Filed meanwhile by its lane's next attempt (it waits before it is recorded failed).
        await repository.done_waiting(db, waiting.id)
        return False
    ran = await process(db, raw, attempt=raw.attempts + 1, failed_as="waiting_postponed")
    if ran.outcome == "failed":
        # `process` keeps every error it does not raise, and this one may still pass (a connection
        # document a newer version wrote, not mended yet): ended now, it would be left to an
        # operator long before the window it is looked after for.
        await _run_again_later(db, waiting, error=ran.error or "failed again", looked_after=looked_after)
        return True
    await repository.done_waiting(db, waiting.id)
    return True


def _window_start(waiting: Waiting) -> datetime:
    """Where the window the sweep looks after an entry for starts (`run_waiting`)."""
    return as_utc(waiting.seen_at or waiting.parked_at)


def _error_text(exc: Exception) -> str:
    return sanitize.text(f"{type(exc).__name__}: {exc}")[:ERROR_MAX_CHARS]


async def _run_again_later(db: Database, waiting: Waiting, *, error: str, looked_after: timedelta) -> None:
    """A run of a waiting entry failed: it waits `redrive_wait` longer, unless its next run would
    come after the sweep stops looking after it (`looked_after` from `_window_start`). Then it is
    given up now, with this failure to report: past that time it is the operators' (README: run
    again for 2 days), and a late run would only delay telling them."""
    not_before = utcnow() + redrive_wait(waiting.tries + 1)
    if not_before <= _window_start(waiting) + looked_after:
        await repository.postpone(db, waiting, not_before=not_before)
    else:
        await _give_up(db, waiting, error=error)


async def _give_up(db: Database, waiting: Waiting, *, error: str, runs: int | None = None) -> None:
    """Ends a waiting entry as failed for good where an operator looks for those: its delivery is
    kept failed (scripts/reprocess_webhooks.py lists it; an edit's was "processed" while parked),
    with why, before the entry is ended, so a kill in between leaves it waiting, given up again
    at its next run. An owed catch-up has no delivery: the log names its window for
    scripts/catch_up_messages.py, and the entry keeps its error. Reported (logged, counted
    "final", what the InboundFailed alert watches) by the first to give it up (repository
    `claim_give_up`). Nothing is removed. `runs`: how many times the sweep ran it (by default this
    run and the `tries` before it; none for an edit whose message never came)."""
    runs = waiting.tries + 1 if runs is None else runs
    if await repository.claim_give_up(db, waiting.id):
        log.error(
            "waiting webhook delivery given up; kept failed for an operator",
            waiting_id=waiting.id,
            reason=waiting.reason,
            raw_id=waiting.raw_id or None,
            connection_id=waiting.connection_id,
            since=waiting.since.isoformat() if waiting.since is not None else None,
            runs=runs,
            error=error,
        )
        metrics.WEBHOOK_FAILED.labels(kind="final").inc()
    if waiting.raw_id:
        # Whatever its status (failed since its lane's attempts, or processed while parked):
        # one written by a run that succeeded meanwhile in another process is only a false
        # failure, which a reprocessing finds filed (its messages are stored once, by their ids).
        given_up = f"given up by the waiting sweep{f' after {runs} runs' if runs else ''}: {error}"[:ERROR_MAX_CHARS]
        await repository.mark(
            db,
            waiting.raw_id,
            {"status": "failed", "error": given_up, "failed_at": utcnow(), "retry_at": None},
            inc_attempts=False,
        )
    await repository.give_up_waiting(db, waiting.id, error=error)


async def _known_client(
    db: Database, reseller_id: str, event: InboundMessage, *, client_id: str | None
) -> clients.User | None:
    """Most messages come from known clients: two `_id` reads instead of a losing claim insert
    (inserts are what a FerretDB under load queues on). New clients go through the race-safe
    clients.upsert_for_chat, and so does a known one the delivery tells something it lacks (its
    LID, or a number for one known only by its LID). `client_id`: the chat key's target as this
    process read it before (a key never changes its target, so only the client document is
    read). The key is the number's canonical form: a client saved as "55 31 9 8xxx-xxxx" is
    found for the JID "5531 8xxx-xxxx" WhatsApp reports an account from before the ninth digit
    by (backend/clients/phones.py), and a LID chat's client by its LID, number or not."""
    client = await users.get_internal(db, client_id) if client_id is not None else None
    if client is None:
        # Not hinted, or not there (a database restored from a backup older than the client).
        found = await clients.id_for_chat(db, reseller_id, phone=event.phone, lid=event.lid)
        client = await users.get_internal(db, found) if found else None
    if client is not None and client.merged_into:  # its chats are another client's now (clients/merge.py)
        client = await clients.followed(db, client)
    if client is None or (event.lid and not client.whatsapp_lid) or (event.phone and not client.phone):
        return None
    return client


def _remember_chat(db: Database, connection_id: str, names: str, client_id: str, ticket_id: str) -> None:
    """A bounded, process-local hint of ids, never of documents: the client the chat's phone key
    names (the key's target never changes) and the ticket its last message was filed under (used
    only as `ticket_hint`: re-read, and the answer only while its document shows it open)."""
    chats, key = runtime_of(db).ingest_chats, (db.name, connection_id, names)
    chats.pop(key, None)
    chats[key] = (client_id, ticket_id)
    while len(chats) > CHAT_HINTS:
        chats.popitem(last=False)


async def _ingest_message(
    db: Database,
    conn: connections.Connection,
    event: InboundMessage,
    *,
    retry: bool,
    raw_id: str,
    chats: dict[str, Any] | None = None,
) -> str:
    sanitize.check_storable(event)  # before the client and ticket writes: never a ticket without it
    if event.synced and (event.sent_at is None or event.sent_at < as_utc(conn.created_at)):
        # A history sync hands over the chats' past too: what came before this connection existed
        # is no conversation of the helpdesk's (its raw delivery keeps it). What came since is
        # filed as any message (those stored already are duplicates by id).
        return "ignored: history from before the connection"
    message_id = message_id_for(conn.id, event.provider_message_id)
    # A redelivery (the message stored already) must stop before the ticket step opens a ticket
    # for an old message whose ticket was finalized since. A first delivery of a message into its
    # client's open ticket writes nothing before the message insert, whose unique `_id` stops a
    # redelivery there (intake raises AlreadyStored): so the look for it is made only before a
    # ticket would be opened (`not_stored_yet`), and up front only for a retry (which completes
    # what its killed attempt left) and for fromMe messages (whose echo check comes first).
    if retry or event.from_me:
        stored = await message_store.get_internal(db, message_id)
        if stored is not None:
            return await _redelivered(db, conn, stored, retry=retry, event=event, raw_id=raw_id)
    if event.from_me:
        # Our own reply echoed back by the provider, or a message the phone sent outside IAZE:
        # told apart by provider id (the rule and its one text-matched window: from_me_verdict).
        verdict = await outbound.from_me_verdict(
            db,
            connection_id=conn.id,
            addresses=whatsapp_addresses(event.phone, event.lid),
            text=event.body or "",
            provider_message_id=event.provider_message_id,
            own_message_id=message_id,
            raw_id=raw_id,
            type_=event.type,
        )
        if verdict is not outbound.FromMe.OWN:
            return "echo of an IAZE reply"  # held ones too: settled when the send is answered
    # A chat's earlier message in this walk found its client (the phone key never changes its
    # target; the client document is as fresh as the walk, like the connection) and its open
    # ticket, which intake then only re-reads (tickets.open_for_client `ticket_hint`). Past the
    # walk, this process remembers the ids alone (`_remember_chat`): the client document is read
    # by `_id` without the phone key, and the ticket is the hint intake re-reads, instead of the
    # slot key and the ticket (one read less each).
    chats = {} if chats is None else chats  # no lane walk: this delivery alone
    names = f"{event.phone}/{event.lid}"  # what the delivery names the chat by
    chat = f"{conn.id}:{names}"
    seen = chats.get(chat)
    known = runtime_of(db).ingest_chats.get((db.name, conn.id, names)) if seen is None else None
    client = (
        seen[0]
        if seen is not None
        else await _known_client(db, conn.reseller_id, event, client_id=known[0] if known is not None else None)
    )
    new_client = False
    if client is None:
        client, new_client = await clients.upsert_for_chat(
            db,
            reseller_id=conn.reseller_id,
            phone=event.phone,
            lid=event.lid,
            name=(event.push_name if not event.from_me else "") or event.phone or WHATSAPP_CONTACT,
        )
    if known is not None and client.id != known[0]:
        known = None  # not the client the hint was for: its ticket hint says nothing of this one

    async def not_stored_yet() -> None:
        stored = await message_store.get_internal(db, message_id)
        if stored is not None:
            raise intake.AlreadyStored(stored)

    if not event.from_me and event.type == "text" and automation.rating_of(event.body) is not None:
        # A lone digit may answer the satisfaction survey of the client's finalized ticket: then
        # it is filed there as its rating instead of opening a new ticket (backend/automation).
        rated = await automation.take_rating(
            db,
            conn,
            client=client,
            phone=event.address,
            message_id=message_id,
            body=event.body or "",
            extra=_message_extra(conn, event),
        )
        if rated is not None:
            return rated
    # The tenant's config is read once for the ticket's opening and the automatic messages after
    # it, and, like the connection, once per lane walk: as fresh as the walk.
    reseller_id = conn.reseller_id
    config = chats.setdefault(f"config:{reseller_id}", automation.config_once(db, reseller_id))
    try:
        ticket, message, created = await intake.receive_client_message(
            db,
            reseller_id=reseller_id,
            client=client,
            department_id=conn.default_department_id,
            channel=conn.id,
            body=event.body,
            message_id=message_id,
            type_=event.type,
            media=event.media,
            extra={
                **_message_extra(conn, event),
                **({"quoted": await _quoted(db, conn, event.quoted)} if event.quoted is not None else {}),
                **({"location": event.location} if event.location is not None else {}),
                **({"contacts": event.contacts} if event.contacts is not None else {}),
            },
            from_me=event.from_me,
            before_create=not_stored_yet,
            ticket_hint=seen[1] if seen is not None else (known[1] if known is not None else None),
            new_client=new_client,
            # A ticket the client's own message opens gets the automatic messages' markers.
            opening=None
            if event.from_me
            else automation.ticket_opening(
                db, conn, message_id=message_id, config=config, written_at=event.sent_at, history=event.from_history
            ),
        )
    except intake.AlreadyStored as exc:
        return await _redelivered(db, conn, exc.message, retry=retry, event=event, raw_id=raw_id)
    await _fetch_media(db, conn, event, message, raw_id=raw_id)
    chats[chat] = (client, ticket.id)
    _remember_chat(db, conn.id, names, client.id, ticket.id)
    if event.from_me:  # sent from the phone: its receipts may have come first
        await outbound.apply_parked(
            db, connection_id=conn.id, provider_message_id=event.provider_message_id, message_id=message.id
        )
    # Inside the delivery's processing: an attempt killed before or during the automatic messages
    # is retried by the processor, which finds the message stored and runs them again (_redelivered).
    automatic = await automation.after_client_message(
        db, conn, ticket=ticket, message=message, config=config, new_client=new_client, history=event.from_history
    )
    return (
        f"message {message.id} in ticket {ticket.id}"
        + (" (new ticket)" if created else "")
        + (f"; automatic: {', '.join(automatic)}" if automatic else "")
    )


async def _fetch_media(
    db: Database, conn: connections.Connection, event: InboundMessage, message: Message, *, raw_id: str
) -> None:
    """Queues the fetch of a media message's bytes, after the message is stored: the lane goes on
    at once and the message shows as pending meanwhile (backend/media/worker.py)."""
    if media.needs_fetch(message):
        await media.enqueue_fetch(
            db,
            message=message,
            connection_id=conn.id,
            provider_message_id=event.provider_message_id,
            phone=event.address,
            from_me=event.from_me,
            raw_id=raw_id or None,
        )


@dataclass(frozen=True)
class DeliveredMedia:
    """What a stored delivery holds of one media message, for its fetch (backend/media/worker.py)."""

    inline_base64: str | None = None  # its bytes, when the provider sent them inline
    content: dict[str, Any] | None = None  # its content as the provider's media download takes it


async def delivered_media(db: Database, *, raw_id: str, provider_message_id: str) -> DeliveredMedia:
    """From the stored delivery of that message: the base64 bytes it carried inline, if it did,
    and the message's content for the provider's download (the provider's parser unwraps it:
    registry.media_contents), if it is a media message there. Empty when the delivery is gone or
    unreadable."""
    raw = await repository.get(db, raw_id)
    # Its provider alone is used, which never changes: the copy will do.
    conn = await connections.get_cached_internal(db, raw.connection_id) if raw is not None else None
    if raw is None or conn is None:
        return DeliveredMedia()
    try:
        payload = json.loads(await repository.body_of(db, raw))
        parsed = registry.parse_webhook(conn.provider, payload, event_hint=raw.event_hint)
        contents = registry.media_contents(conn.provider, payload, event_hint=raw.event_hint)
    except (ValueError, RecursionError):
        return DeliveredMedia()
    inline = next(
        (
            event.inline_base64
            for event in parsed
            if isinstance(event, InboundMessage)
            and sanitize.provider_id(event.provider_message_id) == provider_message_id
        ),
        None,
    )
    content = next((c for pid, c in contents.items() if sanitize.provider_id(pid) == provider_message_id), None)
    return DeliveredMedia(inline_base64=inline, content=content)


async def _redelivered(
    db: Database,
    conn: connections.Connection,
    stored: Message,
    *,
    retry: bool,
    event: InboundMessage,
    raw_id: str,
) -> str:
    """Concurrent redeliveries can both get past the looks for a stored message; the unique
    message `_id` stores them once. The media fetch is queued by the delivery that stored it (a
    retry of it queues it again: the killed attempt may have stopped before; a second entry for
    one message is harmless, its attempts are claimed once). The automatic messages the first
    processing sent or should have sent are looked for again: each is stored once, by its
    deterministic id."""
    if stored.rating is not None:  # a survey answer, filed under its finalized ticket
        if retry:  # our earlier attempt stored it, maybe without its announcement
            await messages.complete_stored(db, stored)
        return await automation.complete_rating(db, stored)
    if retry:
        # Our own earlier attempt stored it, maybe without what follows (killed in between).
        await messages.complete_stored(db, stored)
        await _fetch_media(db, conn, event, stored, raw_id=raw_id)
    current = await message_store.get_internal(db, stored.id) if retry else stored
    ticket = await tickets.load(db, (current or stored).ticket_id)
    automatic = (
        await automation.after_client_message(
            db, conn, ticket=ticket, message=current or stored, retry=retry, history=event.from_history
        )
        if ticket is not None
        else []
    )
    suffix = f"; automatic: {', '.join(automatic)}" if automatic else ""
    if retry:
        return f"message {stored.id} completed after an unfinished attempt{suffix}"
    return f"duplicate{suffix}"


async def _quoted(db: Database, conn: connections.Connection, quoted: Quote) -> dict[str, Any]:
    """What a client's message quotes, by our id when we hold it: an agent's reply (bound to its
    provider id when sent) or an earlier message of the chat (stored under an id derived from its
    provider id). Its text as the provider quoted it; unknown ones keep only that."""
    pid = quoted.provider_message_id
    message_id = await outbound.lookup_provider_id(db, connection_id=conn.id, provider_message_id=pid)
    if message_id is None and await message_store.get_internal(db, message_id_for(conn.id, pid)) is not None:
        message_id = message_id_for(conn.id, pid)
    return {"message_id": message_id, "body": quoted.body, "type": quoted.type, "provider_message_id": pid}


def _message_extra(conn: connections.Connection, event: InboundMessage) -> dict[str, Any]:
    return {
        "connection_id": conn.id,
        "provider_message_id": event.provider_message_id,
        "provider_sent_at": event.sent_at,
        **({"truncated": list(event.cut)} if event.cut else {}),
    }


async def release_held_echo(
    db: Database, *, connection_id: str, provider_message_id: str, raw_id: str, own_message_id: str | None = None
) -> None:
    """A fromMe upsert held as the probable echo of an agent's reply turned out, once the send was
    answered with another id, to be typed on the phone (backend/outbound/service.py,
    `from_me_verdict`). Its id is bound to its own message (`own_message_id`, the record a
    reaction or an edit takes; a message's is derived from its id), then its stored delivery is
    processed again, which now stores it as a message of its own. Safe to repeat: run as a
    retry, a repeat that finds the message stored completes what a killed run may have left undone."""
    await outbound.bind_provider_id(
        db,
        connection_id=connection_id,
        provider_message_id=provider_message_id,
        message_id=own_message_id or message_id_for(connection_id, provider_message_id),
    )
    raw = await repository.get(db, raw_id)
    if raw is not None:
        await process(db, raw, attempt=raw.attempts + 1)
