"""A ticket's thread: appending (idempotent when the caller supplies the id) and reading."""

from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from backend.core.clock import as_utc, utcnow
from backend.core.db import Database
from backend.core.errors import Conflict, Forbidden, Unprocessable
from backend.core.ids import new_id
from backend.core.pagination import decode_cursor, encode_cursor
from backend.core.retry import read_winner
from backend.core.tenancy import Actor
from backend.messages import repository
from backend.messages.schemas import MessagePage, MessageRead
from backend.outbound import service as outbound
from backend.realtime import feed
from backend.tickets import repository as tickets_repo
from backend.tickets import service as tickets
from backend.tickets.states import Status

PREVIEW_CHARS = 120


async def append(
    db: Database,
    ticket: dict[str, Any],
    *,
    direction: str,
    sender_type: str,
    sender_id: str | None,
    sender_name: str,
    body: str,
    status: str,
    message_id: str | None = None,
    type_: str = "text",
    media: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], bool]:
    """Stores the message, then moves the ticket's activity. Returns (message, created).

    With a deterministic `message_id` (e.g. derived from a provider's message id) a redelivery
    finds the stored message and changes nothing.
    """
    now = utcnow()
    doc: dict[str, Any] = {
        "_id": message_id or new_id(),
        "ticket_id": ticket["_id"],
        "reseller_id": ticket["reseller_id"],
        "direction": direction,
        "sender_type": sender_type,
        "sender_id": sender_id,
        "sender_name": sender_name,
        "type": type_,
        "body": body,
        "media": media,
        "status": status,
        "created_at": now,
        **(extra or {}),
    }
    try:
        await repository.insert(db, doc)
    except DuplicateKeyError:
        existing = await read_winner(lambda: repository.get(db, doc["_id"]), what=f"message {doc['_id']}")
        return existing, False
    await _after_stored(db, ticket, doc)
    return doc, True


async def _after_stored(db: Database, ticket: dict[str, Any], message: dict[str, Any]) -> None:
    """What follows a stored message: the ticket's activity moves, then the announcement."""
    at, direction = as_utc(message["created_at"]), message["direction"]
    preview = message["body"][:PREVIEW_CHARS] if message.get("body") else f"[{message.get('type', 'text')}]"
    await tickets_repo.touch_activity(db, ticket, at=at, preview=preview, direction=direction)
    activity: dict[str, Any] = {}
    if ticket.get("last_message_at") is None or as_utc(ticket["last_message_at"]) <= at:
        activity = {"last_message_at": at, "last_message_preview": preview, "last_message_direction": direction}
    await feed.publish(
        db, reseller_id=ticket["reseller_id"], type_="message.created", ticket={**ticket, **activity}, message=message
    )


async def complete_stored(db: Database, message: dict[str, Any]) -> None:
    """For a retry that finds its message already stored: the earlier attempt may have stopped
    (process killed, database error) between storing it and announcing it, which would leave
    the ticket's activity behind and every open screen without the message until a reload.
    Both steps are safe to repeat — activity only moves forward, and a second announcement is a
    later feed seq that clients apply by message id — so the retry simply does them again."""
    ticket = await tickets.load(db, str(message["ticket_id"]))
    if ticket is not None:
        await _after_stored(db, ticket, message)


async def reply(db: Database, actor: Actor, *, ticket_id: str, body: str) -> MessageRead:
    """An agent answers in a ticket it holds."""
    if actor.role != "agent":
        raise Forbidden("only the agent holding the ticket can reply")
    ticket = await tickets.get_visible_or_404(db, actor, ticket_id=ticket_id)
    if ticket["status"] != Status.ATENDENDO.value or ticket.get("agent_id") != actor.id:
        raise Conflict({"message": "assume the ticket before replying", "status": ticket["status"]})
    # Tickets opened through the API have no provider to deliver to; WhatsApp ones start pending.
    status = "sent" if ticket.get("channel") == "api" else "pending"
    message_id = new_id()
    if status == "pending":
        # Queued before the message is stored and before any network call: a crash anywhere
        # after this leaves the worker something to pick up (backend/outbound).
        await outbound.enqueue(db, message_id=message_id, ticket=ticket)
    doc, _ = await append(
        db,
        ticket,
        direction="out",
        sender_type="agent",
        sender_id=actor.id,
        sender_name=actor.name,
        body=body,
        status=status,
        message_id=message_id,
    )
    return MessageRead.from_doc(doc)


async def list_page(db: Database, actor: Actor, *, ticket_id: str, cursor: str | None, limit: int) -> MessagePage:
    await tickets.get_visible_or_404(db, actor, ticket_id=ticket_id)
    after = None
    if cursor:
        at_raw, last_id = decode_cursor(cursor, 2)
        try:
            after = (datetime.fromisoformat(str(at_raw)), str(last_id))
        except ValueError as exc:
            raise Unprocessable("invalid cursor") from exc
    docs = await repository.list_for_ticket(db, ticket_id, after=after, limit=limit + 1)
    nxt = None
    if len(docs) > limit:
        last = docs[limit - 1]
        nxt = encode_cursor([last["created_at"].isoformat(), last["_id"]])
    return MessagePage(items=[MessageRead.from_doc(d) for d in docs[:limit]], next_cursor=nxt)
