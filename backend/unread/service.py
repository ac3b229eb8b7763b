"""Unread counts: per user and ticket, the client messages since that user last read the ticket.

The rule: a ticket's client messages (sender "client", direction "in") are numbered in the order
they are recorded (`record_inbound`, from the message path once a message is settled in its
ticket); internal notes, agent replies and messages sent from the connection's phone never are.
A user's read marker says "read up to number s"; unread = the ticket's count - s. Both are found
by `_id` look-ups (repository docstring), so a list of tickets costs a few reads per row, never a
scan of `messages`.

Reading: `mark_read` (POST /tickets/{id}/read, which the screen calls when it shows a thread and
again when a client message arrives in the thread it shows) moves the caller's marker to the
ticket's current count. A marker only ever moves forward, also when two devices mark at once.

Where it ends:
- a client message that raced a finalize and was moved on (messages.service) may be counted in
  the finalized ticket and in the one it moved to: unread until read there, never missed;
- a message whose process died after storing it and before recording it: a webhook delivery is
  retried and records it then (`complete_stored`); a ticket created through the API by a request
  that died was not acknowledged, and its first message is not counted.
- counts start with this feature: messages stored before it are not counted.
"""

import asyncio
from collections.abc import Iterable

from backend.core.clock import utcnow
from backend.core.db import Database
from backend.core.errors import Conflict
from backend.core.runtime import runtime_of
from backend.messages.models import Message
from backend.tickets.models import Ticket
from backend.unread import repository

CLIENT = "client"
INBOUND = "in"
MAX_CLAIMS = 10_000  # numbers a recorder walks past; only a burst that size on one ticket needs more
KNOWN_HEADS = 20_000  # tickets whose inbound count this process remembers (bounded, LRU)
MAX_MARKS = 100  # marker races lost in a row; each loss means another device moved it meanwhile


def counts_toward_unread(message: Message) -> bool:
    return message.sender_type == CLIENT and message.direction == INBOUND


def _known_head(db: Database, ticket_id: str) -> int | None:
    return runtime_of(db).unread_inbound_heads.get((db.name, ticket_id))


def _remember_head(db: Database, ticket_id: str, n: int) -> None:
    """A bounded, process-local hint: inbound numbers 1..n of the ticket are stored (this process
    stored n, read the chain up to n, or created the ticket: n = 0). Entries are never removed,
    so it stays true; forgotten for the least recent tickets past the bound."""
    heads, key = runtime_of(db).unread_inbound_heads, (db.name, ticket_id)
    heads[key] = max(n, heads.pop(key, 0))
    while len(heads) > KNOWN_HEADS:
        heads.popitem(last=False)


def starts_empty(db: Database, ticket_id: str) -> None:
    """The caller has just created the ticket (its event v1 won): its first client message may
    try number 1 without reading (tickets/intake.py)."""
    _remember_head(db, ticket_id, 0)


async def record_inbound(db: Database, ticket: Ticket, message: Message) -> int | None:
    """Numbers a client message in `ticket`, once (safe to repeat), and answers its number (the
    one it already had on a repeat): its `message.created` carries it, so that a screen whose
    reader's `ticket.read` already counted that number does not count it again. None for other
    messages, which are never numbered.

    A number n is only ever tried by a writer that knows n-1 stored (the chain has no holes).
    When this process knows the ticket's numbers up to h stored (`_remember_head`: it stored h,
    or created the ticket, h = 0), h+1 is tried at once: one insert and the hint's raise instead
    of also reading the hint and the chain past it. A guess that is behind (another process, or
    a message moved in by a finalize race, took h+1) fails on the unique `_id`, and the usual
    search of the stored end follows; a message already numbered is refused by its unique
    (ticket, message) key whatever number it tries."""
    if not counts_toward_unread(message):
        return None
    ticket_id = ticket.id
    known = _known_head(db, ticket_id)
    n = known + 1 if known is not None else await _head(db, ticket_id) + 1
    for _ in range(MAX_CLAIMS):
        number = await repository.claim_inbound(db, ticket, message, n=n)
        if number is not None:  # the chain has no holes: 1..number are stored
            _remember_head(db, ticket_id, number)
            return number
        if known is not None:  # the guess was behind: jump to the stored end instead of walking
            known = None
            n = max(n, await _head(db, ticket_id))
        n += 1
    raise Conflict("the ticket is receiving too many messages at once; retry")


async def _head(db: Database, ticket_id: str) -> int:
    """The ticket's inbound count, read from past what this process knows stored (the stored
    hint lags the count by up to INBOUND_HINT_EVERY - 1: repository.claim_inbound), remembered."""
    head = await repository.inbound_head(db, ticket_id, known=_known_head(db, ticket_id) or 0)
    _remember_head(db, ticket_id, head)
    return head


async def unread_for(db: Database, user_id: str, ticket_id: str) -> int:
    return (await state(db, user_id, ticket_id))[0]


async def state(db: Database, user_id: str, ticket_id: str) -> tuple[int, int]:
    """(unread, through): the user's unread count of the ticket, and the inbound number it counts
    through (the ticket's count as read for it). One round when nothing changed (the count's hint
    with the entry past what this process knows, the marker's hint), more only when the count
    moved (a galloping read past it) or the marker's hint is behind the count (is there a later
    marker?)."""
    head, hint = await asyncio.gather(_head(db, ticket_id), repository.marker_hint(db, user_id, ticket_id))
    if hint[1] >= head:  # later markers only read further, never past the count
        return 0, head
    _, read = await repository.marker(db, user_id, ticket_id, hint=hint)
    return max(0, head - read), head


async def counts(db: Database, user_id: str, ticket_ids: Iterable[str]) -> dict[str, int]:
    """Unread per ticket for one user (callers run this for the tickets they return)."""
    ids = list(dict.fromkeys(ticket_ids))
    values = await asyncio.gather(*(unread_for(db, user_id, t) for t in ids))
    return dict(zip(ids, values, strict=True))


async def mark_read(db: Database, user_id: str, ticket: Ticket) -> range:
    """Moves the user's marker forward to the ticket's current count. Returns the inbound numbers
    this move read (`read_by`), empty when it did not move (already there, or another device
    moved it at least as far meanwhile)."""
    head = await _head(db, ticket.id)
    for _ in range(MAX_MARKS):
        k, read = await repository.marker(db, user_id, ticket.id)
        if read >= head:
            return range(0)
        if await repository.insert_marker(db, user_id=user_id, ticket=ticket, k=k + 1, seq=head, at=utcnow()):
            return range(read + 1, head + 1)
    raise Conflict("the ticket is being marked read too often at once; retry")


async def message_ids(db: Database, ticket_id: str, numbers: range) -> list[str]:
    """The client messages of the ticket with these inbound numbers (`mark_read`'s answer), in order."""
    return await repository.inbound_messages(db, ticket_id, numbers)
