"""Queries on `messages`: append-only; a message is never updated except for its delivery status
and, for a client message that raced a finalize, its ticket (`move_to_ticket`)."""

import re
from datetime import datetime
from typing import Any

from backend.core import group_commit
from backend.core.clock import utcnow
from backend.core.conditional import one_writer, update_if
from backend.core.db import Database
from backend.core.indexes import ASC, DESC, declare
from backend.core.schemas import readable
from backend.core.tenancy import TenantScope
from backend.messages.models import Message

NOTE_DIRECTION = "note"  # an internal note's direction and type (messages/notes.py)

COLLECTION = "messages"
WHAT = "message"  # how a document that does not read is logged (core.schemas.readable)
# Delivery statuses only move forward; `failed` only from before the provider took it.
RANK = {"pending": 0, "sent": 1, "delivered": 2, "read": 3}

declare(
    COLLECTION,
    [("ticket_id", ASC), ("created_at", ASC), ("_id", ASC)],
    name="ticket_created",
    purpose="a ticket's thread in chronological order",
)
declare(COLLECTION, [("reseller_id", ASC), ("created_at", ASC)], name="tenant_created", purpose="tenant exports")
declare(COLLECTION, [("created_at", ASC)], name="created", purpose="the projection sweep: every ticket active recently")
declare(
    COLLECTION,
    [("moved_from_ticket_id", ASC), ("created_at", ASC)],
    name="moved_from_created",
    purpose="a finalize's refile: the client messages already moved on from the ticket",
)


async def insert(db: Database, message: Message) -> None:
    """Raises DuplicateKeyError when a message with this `_id` is stored already (idempotent writes)."""
    await group_commit.insert_one(db[COLLECTION], message.stored())


async def get_internal(db: Database, message_id: str) -> Message | None:
    return Message.load(await db[COLLECTION].find_one({"_id": message_id}))


async def newest_for_ticket(
    db: Database, scope: TenantScope, ticket_id: str, *, before: tuple[datetime, str] | None, limit: int
) -> list[Message]:
    """Up to `limit` messages of a ticket, newest first, older than `before` (created_at, _id)
    when given: a thread opens at its end and pages back towards its first message. One that does
    not read is passed over (`TenantScope.page_by_time`) rather than failing the whole thread."""
    return await scope.page_by_time(
        db[COLLECTION], Message, {"ticket_id": ticket_id}, "created_at", before=before, limit=limit
    )


async def ticket_ids_with_text(db: Database, scope: TenantScope, text: str, *, limit: int) -> list[str]:
    """The tickets whose messages contain `text` (any case), newest message first (inbox search)."""
    query = scope.filter({"body": {"$regex": re.escape(text), "$options": "i"}})
    cursor = db[COLLECTION].find(query, projection={"ticket_id": 1}).sort("created_at", DESC).limit(limit)
    return list(dict.fromkeys(d["ticket_id"] for d in await cursor.to_list(length=limit)))


async def client_messages_after_internal(db: Database, ticket_id: str, at: datetime) -> list[Message]:
    """The client messages of a ticket stamped later than `at`, oldest first, with those already
    moved on from it (`moved_from_ticket_id`); not its rating (a client's answer to the survey
    after the finalize, which belongs to it: backend/automation). One that does not read as a
    message is logged and passed over (core.schemas.readable): the others still move on."""
    query = {
        "$or": [{"ticket_id": ticket_id}, {"moved_from_ticket_id": ticket_id}],
        "created_at": {"$gt": at},
        "sender_type": "client",
        "rating": None,
        "annotates": None,
    }
    cursor = db[COLLECTION].find(query).sort([("created_at", ASC), ("_id", ASC)])
    return readable(Message, await cursor.to_list(length=None), what=WHAT)


async def move_to_ticket(
    db: Database, message_id: str, *, from_ticket_id: str, to_ticket_id: str, at: datetime
) -> bool:
    """Files the message under another ticket if it is still under `from_ticket_id`. Returns
    whether it moved. An update, never a delete: `moved_from_ticket_id` keeps where it was."""
    changes = {"ticket_id": to_ticket_id, "moved_from_ticket_id": from_ticket_id, "moved_at": at}
    async with one_writer(db, COLLECTION, message_id):  # a message's writers take turns: `move_status_internal`
        moved = await update_if(db, COLLECTION, message_id, {"ticket_id": from_ticket_id}, {"$set": changes})
    return moved is not None


async def latest_per_ticket_since_internal(db: Database, since: datetime) -> dict[str, tuple[datetime, str]]:
    """For each ticket with a message created at or after `since`: (created_at, _id) of its newest
    such message. Only those two fields travel (the `created` index on MongoDB; a scan on FerretDB).
    Internal notes are not messages of the conversation: they never make a ticket's activity."""
    latest: dict[str, tuple[datetime, str]] = {}
    query = {"created_at": {"$gte": since}, "direction": {"$ne": NOTE_DIRECTION}}
    cursor = db[COLLECTION].find(query, {"ticket_id": 1, "created_at": 1})
    async for doc in cursor:
        key, seen = str(doc["ticket_id"]), (doc["created_at"], str(doc["_id"]))
        if key not in latest or seen > latest[key]:
            latest[key] = seen
    return latest


async def move_status_internal(
    db: Database, message_id: str, *, to: str, at: datetime, extra: dict[str, Any] | None = None
) -> Message | None:
    """Moves a message's delivery status forward only; returns the message when it moved.

    A message has three kinds of writers that can land together: a move to another ticket (a
    client message that raced a finalize), a delivery status (the send, the provider's receipts)
    and its media (the fetch). On MongoDB each filtered update is atomic. On FerretDB an update
    writes back the whole document as it read it, so one could put the message back under the
    finalized ticket it just left, or a status back to an earlier one, and two status moves
    (delivered and read arriving together) could both pass the check. In this process they take
    turns (`one_writer`); a writer in another process on FerretDB keeps that window, and the next
    status event or a redelivery heals a status. Sends are never repeated by it.
    """
    allowed = ["pending", "sent"] if to == "failed" else [s for s, r in RANK.items() if r < RANK[to]]
    changes: dict[str, Any] = {"status": to, f"{to}_at": at, **(extra or {})}
    async with one_writer(db, COLLECTION, message_id):
        moved = await update_if(db, COLLECTION, message_id, {"status": {"$in": allowed}}, {"$set": changes})
    return Message.load(moved)


async def give_up_internal(
    db: Database, message_id: str, *, reason: str, media: bool = False, sent_as: str | None = None
) -> bool:
    """Ends what is still pending of a message that a document its worker needs does not read:
    its delivery (the outbound worker's give-up: failed, or sent as `sent_as` when the provider
    took it) or, `media`, its media fetch (failed). Written by `_id`, conditioned on the stored
    status, without reading the message as a `Message`. True when it moved."""
    if media:
        return await _end_pending(db, message_id, "media.status", {"media.status": "failed", "media.error": reason})
    if sent_as is not None:
        return await _end_pending(
            db, message_id, "status", {"status": "sent", "sent_at": utcnow(), "provider_message_id": sent_as}
        )
    return await _end_pending(
        db, message_id, "status", {"status": "failed", "failed_at": utcnow(), "failure_reason": reason}
    )


async def _end_pending(db: Database, message_id: str, status: str, changes: dict[str, Any]) -> bool:
    async with one_writer(db, COLLECTION, message_id):
        return await update_if(db, COLLECTION, message_id, {status: "pending"}, {"$set": changes}) is not None


async def set_media_internal(db: Database, message: Message, changes: dict[str, Any]) -> Message | None:
    """Writes the named fields of a message's `media` (all of it when it has none) while it is
    still filed under its ticket as the caller read it. Returns the message as written (the
    update's own answer), or None when it moved since the caller's read (MongoDB; the caller reads it
    again).
    On MongoDB the condition is the update's filter. On FerretDB the caller's read stands in for
    update_if's (`current`): the check was never atomic there, and the server's own read for the
    write is the one that counts: a move stored before it is in the answer (the ticket announced
    is the one the message is in now), and a move stored during it is the window every update
    has on FerretDB, a re-read would not close it (core/conditional.py)."""
    fields = {f"media.{k}": v for k, v in changes.items()} if message.media is not None else {"media": changes}
    condition, read = {"ticket_id": message.ticket_id}, {"_id": message.id, "ticket_id": message.ticket_id}
    async with one_writer(db, COLLECTION, message.id):  # a message's writers take turns: `move_status_internal`
        written = await update_if(db, COLLECTION, message.id, condition, {"$set": fields}, current=read)
    return Message.load(written)


async def all_for_tenant_internal(db: Database, reseller_id: str) -> list[Message]:
    """Every message of a tenant: the reports rebuild's read (a scan; an operator's tool, never a request's)."""
    return [Message.model_validate(d) async for d in db[COLLECTION].find({"reseller_id": reseller_id})]
