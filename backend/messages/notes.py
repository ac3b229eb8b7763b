"""Internal notes: staff-only remarks in a ticket's thread.

A note is stored in `messages` as a message with `type: "note"` and `direction: "note"`, not in
a collection of its own. Why:
- one thread query: the thread pages by (created_at, _id) over `messages`, so notes fall between
  the messages they comment on, with the same keyset cursor and index, and no merge of two paged
  lists in the API or the screen;
- the guarantees already cover `messages`: append-only, never deleted, counted by the deploy
  ledger guard and kept by every backup (scripts/backup.py), with no new collection to register;
- the realtime feed already carries messages to exactly the staff who can see the ticket
  (`message.created`, audience rule), and the screen's cache applies it by id.
What keeps a note from acting like a message is its direction, which nothing on the client path
matches: the outbox is fed only by `messages.service.reply` (a note is never enqueued, so no
provider call exists for it), client-message rules select `sender_type: "client"`, and a reply is
`direction: "out"`. A note also leaves the ticket's activity (`last_message_*`) alone: the inbox
preview and order show what the client and the agents said to each other, not staff remarks.
Clients have no API session; if they get one, their thread must filter `direction: "note"` out.
"""

import hashlib

from pymongo.errors import DuplicateKeyError

from backend.core.clock import utcnow
from backend.core.db import Database
from backend.core.errors import Forbidden
from backend.core.ids import new_id
from backend.core.retry import read_winner
from backend.core.tenancy import Actor
from backend.messages import repository
from backend.messages.models import Message
from backend.messages.schemas import MessageRead
from backend.realtime import feed
from backend.tickets import projection
from backend.tickets import service as tickets
from backend.tickets.models import Ticket
from backend.tickets.projection import Activity

NOTE = repository.NOTE_DIRECTION
STAFF_ROLES = frozenset({"agent", "reseller"})


async def add(
    db: Database, actor: Actor, *, ticket_id: str, body: str, idempotency_key: str | None = None
) -> MessageRead:
    """Any of the tenant's staff who can see the ticket adds a note, whatever its status (a queued
    ticket or a closed one can need a remark as much as one being handled). With a key, the note's
    id is the key's (`_keyed_id`): a repeat whose first answer was lost finds the note stored (or
    meets it at its insert, stored by the first attempt at that moment), and announces it again:
    the first attempt may have failed before it did. The announcement is
    required: a note whose feed record failed is answered with the store's error, not as added,
    so the Composer tries again and its repeat announces it (open threads showed it only after a
    reload)."""
    if actor.role not in STAFF_ROLES:
        raise Forbidden("notes are written by the tenant's staff")
    ticket = await tickets.get_visible_or_404(db, actor, ticket_id=ticket_id)
    note_id = _keyed_id(actor, ticket.id, idempotency_key) if idempotency_key is not None else None
    earlier = await repository.get_internal(db, note_id) if note_id is not None else None
    if earlier is None:
        try:
            return MessageRead.of_message(await store(db, actor, ticket, body=body, note_id=note_id, required=True))
        except DuplicateKeyError:  # the same key's other attempt stored it between our look and our insert
            assert note_id is not None
            earlier = await read_winner(lambda: repository.get_internal(db, note_id), what="note")
    # The attempt that stored it may have failed (or yet fail) before announcing it, and this
    # answer tells the Composer the note is added: announced again (the key names actor and ticket).
    await feed.publish(
        db, reseller_id=ticket.reseller_id, type_="message.created", ticket=ticket, message=earlier, required=True
    )
    return MessageRead.of_message(earlier)


def _keyed_id(actor: Actor, ticket_id: str, key: str) -> str:
    return hashlib.sha256(f"note\0{actor.reseller_id}\0{ticket_id}\0{actor.id}\0{key}".encode()).hexdigest()[:24]


async def store(
    db: Database,
    actor: Actor,
    ticket: Ticket,
    *,
    body: str,
    opening: bool = False,
    note_id: str | None = None,
    required: bool = False,
) -> Message:
    """Stores and announces `actor`'s note in `ticket` (authorized by the caller). `opening`: the
    first words of a ticket staff opened with no way to reach the client — all it says, so it is
    also the ticket's activity (preview), unlike a remark on a conversation. `required`: a failed
    announcement raises (feed.publish), for a caller whose repeat announces it again."""
    doc = Message(
        id=note_id or new_id(),
        ticket_id=ticket.id,
        reseller_id=ticket.reseller_id,
        direction=NOTE,
        sender_type=actor.role,
        sender_id=actor.id,
        sender_name=actor.name,
        type=NOTE,
        body=body,
        media=None,
        status="internal",
        created_at=utcnow(),
    )
    await repository.insert(db, doc)
    if opening:
        activity = Activity.of(doc)
        written = await tickets.touch_activity(db, ticket, activity=activity)
        ticket = await projection.settle(db, ticket.id, activity=activity, read=written) or ticket
    await feed.publish(
        db, reseller_id=ticket.reseller_id, type_="message.created", ticket=ticket, message=doc, required=required
    )
    return doc
