"""Outbound rules shared by the API (enqueue), the worker (sent/failed) and inbound webhooks
(provider status receipts)."""

from typing import Any

from backend.connections.providers.base import StatusUpdate
from backend.core import natural_keys
from backend.core.clock import as_utc, utcnow
from backend.core.db import Database
from backend.outbound import repository
from backend.realtime import feed
from backend.tickets import projection

# Provider message id -> our message id, per connection. Claimed once, so the echo of our own
# send (fromMe upsert) and status receipts find the message the agent wrote.
PROVIDER_KEY = "wa-out"


async def enqueue(db: Database, *, message_id: str, ticket: dict[str, Any]) -> int:
    """Called before the message itself is stored: an entry whose message never got stored
    (the request died in between) is skipped by the worker, never sent."""
    return await repository.enqueue(
        db,
        {
            "message_id": message_id,
            "ticket_id": ticket["_id"],
            "reseller_id": ticket["reseller_id"],
            "connection_id": ticket.get("channel"),
            "enqueued_at": utcnow(),
        },
    )


async def bind_provider_id(db: Database, *, connection_id: str, provider_message_id: str, message_id: str) -> str:
    """Returns the message id the provider id is bound to (ours, or whoever bound it first)."""
    bound, _ = await natural_keys.claim(db, PROVIDER_KEY, connection_id, provider_message_id, target=message_id)
    return bound


ECHO_WINDOW_SECONDS = 120.0  # how long after a send a fromMe upsert of its text counts as its echo


async def own_send_for_echo(
    db: Database, *, connection_id: str, phone: str, text: str, provider_message_id: str
) -> str | None:
    """Our message a fromMe upsert echoes when the echo outran the worker (the provider posts it
    while, or just after, answering the send, before the worker has recorded the provider id).
    Matched on the latest send of the same text to the same phone, recent, whose message has no
    other provider id yet; anything else is a message typed on the phone itself."""
    marker = await repository.get_sending(db, connection_id=connection_id, phone=phone, text=text)
    if marker is None or (utcnow() - as_utc(marker["at"])).total_seconds() > ECHO_WINDOW_SECONDS:
        return None
    message = await repository.get_message(db, str(marker["message_id"]))
    if message is None:
        return None
    known = message.get("provider_message_id")
    return str(message["_id"]) if known in (None, provider_message_id) else None


async def lookup_provider_id(db: Database, *, connection_id: str, provider_message_id: str) -> str | None:
    return await natural_keys.lookup(db, PROVIDER_KEY, connection_id, provider_message_id)


async def announce_status(db: Database, message: dict[str, Any]) -> None:
    # The ticket as its log says, not the stored projection, which can be a moment behind it.
    ticket = await projection.settle(db, str(message["ticket_id"]))
    if ticket is None:
        return
    await feed.publish(
        db,
        reseller_id=message["reseller_id"],
        type_="message.status",
        ticket=ticket,
        message=message,
        data={"message_id": message["_id"], "status": message["status"]},
    )


async def move(db: Database, message_id: str, *, to: str, extra: dict[str, Any] | None = None) -> dict[str, Any] | None:
    moved = await repository.move_status(db, message_id, to=to, at=utcnow(), extra=extra)
    if moved is not None:
        await announce_status(db, moved)
    return moved


async def apply_receipt(
    db: Database, *, connection_id: str, update: StatusUpdate, fallback_id: str, retry: bool = False
) -> str:
    """A provider status receipt (MESSAGES_UPDATE). Returns what happened, for the raw log.
    `retry`: an earlier attempt at the same delivery did not finish and may have moved the
    status without announcing it; found already there, the message's status is announced again."""
    if update.status == "pending":
        return "ignored: pending"
    pid = update.provider_message_id
    message_id = await _receipt_target(
        db, connection_id=connection_id, provider_message_id=pid, fallback_id=fallback_id
    )
    if message_id is None:
        # Usually our own send whose receipt outran the worker's bookkeeping (or a message sent
        # from the phone, not stored yet). Parked; whoever makes the message known applies it.
        await repository.park_receipt(
            db, connection_id=connection_id, provider_message_id=pid, status=update.status, reason=update.reason
        )
        # It may have become known between the look-up and the parking: both sides look after
        # their own write, so at least one of them sees the other's.
        message_id = await _receipt_target(
            db, connection_id=connection_id, provider_message_id=pid, fallback_id=fallback_id
        )
        if message_id is None:
            return f"status {update.status} parked: its message is not known yet"
        await apply_parked(db, connection_id=connection_id, provider_message_id=pid, message_id=message_id)
        return f"status {update.status} parked, then applied"
    return await _apply_status(db, message_id, update.status, update.reason, retry=retry)


async def _receipt_target(
    db: Database, *, connection_id: str, provider_message_id: str, fallback_id: str
) -> str | None:
    message_id = await lookup_provider_id(db, connection_id=connection_id, provider_message_id=provider_message_id)
    message_id = message_id or fallback_id  # a message sent from the phone, stored by its id
    return message_id if await repository.get_message(db, message_id) is not None else None


async def _apply_status(db: Database, message_id: str, status: str, reason: str, *, retry: bool = False) -> str:
    extra = {"failure_reason": reason or "provider reported an error"} if status == "failed" else None
    moved = await move(db, message_id, to=status, extra=extra)
    if moved is None and retry:
        current = await repository.get_message(db, message_id)
        if current is not None:
            await announce_status(db, current)
    return f"status {status}" if moved else f"status {status} (no change)"


async def apply_parked(db: Database, *, connection_id: str, provider_message_id: str, message_id: str) -> None:
    """Applies receipts that arrived before `message_id` was known by its provider id. Called once
    the message is stored and bound; applying twice changes nothing (statuses only move forward)."""
    parked = await repository.get_parked(db, connection_id=connection_id, provider_message_id=provider_message_id)
    if parked is None or parked.get("applied_at") is not None:
        return
    for receipt in parked.get("receipts") or []:
        await _apply_status(db, message_id, receipt["status"], receipt.get("reason") or "")
    await repository.mark_parked_applied(db, parked, message_id=message_id)
