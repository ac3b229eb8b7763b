"""A user reads a ticket: its unread count for that user clears (rules in backend/unread)."""

from backend.core.db import Database
from backend.core.tenancy import Actor
from backend.realtime import feed
from backend.tickets import presenter, service
from backend.tickets.schemas import TicketRead
from backend.unread import service as unread


async def mark_read(db: Database, actor: Actor, *, ticket_id: str) -> TicketRead:
    """Moves the actor's read marker to the ticket's newest client message and answers the ticket
    as the actor now sees it. When the marker moved, the actor's other sockets (other devices,
    other tabs) are told with a `ticket.read` carrying the new count, so their badges clear too."""
    ticket = await service.get_visible_or_404(db, actor, ticket_id=ticket_id)
    moved = await unread.mark_read(db, actor.id, ticket)
    read = await presenter.read_one(db, ticket, reader=actor)
    if moved and not actor.is_admin:  # an admin has no tenant feed to be told on
        await feed.publish(
            db,
            reseller_id=ticket.reseller_id,
            type_="ticket.read",
            ticket=ticket,
            unread_count=read.unread_count,
            reader_id=actor.id,
        )
    return read
