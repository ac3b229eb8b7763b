"""A user reads a ticket: its unread count for that user clears (rules in backend/unread), and,
when the reader is the agent holding it, the client's phone is told its messages were read."""

import asyncio

from fastapi import BackgroundTasks

from backend.connections import service as connections
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.logging import get_logger
from backend.core.tenancy import Actor
from backend.messages import public as messages
from backend.realtime import feed
from backend.resellers import service as resellers
from backend.tickets import presenter, service
from backend.tickets.models import Ticket
from backend.tickets.schemas import TicketRead
from backend.tickets.states import Status
from backend.unread import service as unread

log = get_logger("tickets")

# The newest client messages one read acknowledges to the client's phone: WhatsApp shows a chat
# read through its newest receipt, and a long backlog needs no receipt each.
RECEIPTS_AT_MOST = 20


async def mark_read(
    db: Database,
    actor: Actor,
    *,
    ticket_id: str,
    settings: Settings | None = None,
    later: BackgroundTasks | None = None,
) -> TicketRead:
    """Moves the actor's read marker to the ticket's newest client message and answers the ticket
    as the actor now sees it. The actor's other sockets (other devices, other tabs) are told with
    a `ticket.read` carrying the new count, so their badges clear too — also by a read that moved
    nothing: the screen asks only while it shows something unread, and the read that moved the
    marker may have failed before telling anyone (its store answer lost), leaving the badges of
    the other screens where they were.
    When the actor holds the ticket (atendendo), the messages this read are acknowledged to the
    client's phone (blue ticks) after the answer (`later`), if the company wants it
    (`read_receipts`): the client sees that the person answering has read it, not that someone
    glanced at the queue."""
    ticket = await service.get_visible_or_404(db, actor, ticket_id=ticket_id)
    numbers = await unread.mark_read(db, actor.id, ticket)
    # The count is read with the inbound number it counts through, which the `ticket.read` carries:
    # a client message numbered before this read, but announced after it, is counted in it (read,
    # or unread since), and the screens do not count it again on its `message.created`.
    count, through = await unread.state(db, actor.id, ticket.id)
    read = await presenter.read_one(db, ticket, reader=actor, unread_count=count)
    if not actor.is_admin:  # an admin has no tenant feed to be told on
        await feed.publish(
            db,
            reseller_id=ticket.reseller_id,
            type_="ticket.read",
            ticket=ticket,
            unread_count=count,
            data={"inbound_through": through},
            reader_id=actor.id,
        )
    holds = ticket.status == Status.ATENDENDO.value and ticket.agent_id == actor.id
    if numbers and holds and settings is not None and later is not None:
        later.add_task(send_receipts, db, settings, ticket, numbers)
    return read


async def acknowledge_taken(db: Database, settings: Settings, *, ticket_id: str, holder_id: str) -> None:
    """After a person took the ticket (assume, a transfer to it): the client messages it had read
    before (a read by a person not holding the ticket acknowledges nothing, and the screen shows a
    thread, marking it read, before its Assumir) are acknowledged now, as its holder's reads."""
    try:
        ticket = await service.get_internal(db, ticket_id)
        if ticket is None or ticket.status != Status.ATENDENDO.value or ticket.agent_id != holder_id:
            return  # moved on again meanwhile: the next holder's reads are its own
        count, through = await unread.state(db, holder_id, ticket.id)
        read = through - count
    except Exception as exc:  # a receipt never fails the move
        log.warning("read receipts failed", ticket_id=ticket_id, error=f"{type(exc).__name__}: {exc}")
        return
    if read > 0:
        await send_receipts(db, settings, ticket, range(1, read + 1))


async def send_receipts(db: Database, settings: Settings, ticket: Ticket, numbers: range) -> None:
    """Best effort, after the reader's answer: a receipt is no message, and one that fails (the
    provider away) is logged; the holder's next read acknowledges the next messages."""
    try:
        if not await resellers.read_receipts(db, ticket.reseller_id):
            return
        conn = await connections.of_ticket(db, ticket)
        if conn is None or connections.blocked(conn) is not None:
            return
        ids = await unread.message_ids(db, ticket.id, numbers[-RECEIPTS_AT_MOST:])
        found = await asyncio.gather(*(messages.get_internal(db, message_id) for message_id in ids))
        sent_here = [m.provider_message_id for m in found if m and m.connection_id == conn.id]
        provider_ids = [pid for pid in sent_here if pid]
        if provider_ids:
            to = ticket.client_address
            await connections.send_read_receipts(settings, conn, to=to, provider_message_ids=provider_ids)
    except Exception as exc:  # a receipt never fails the read
        log.warning("read receipts failed", ticket_id=ticket.id, error=f"{type(exc).__name__}: {exc}")
