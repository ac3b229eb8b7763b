"""A client's history, seen from one of its tickets.

tickets.Ticket visibility is per ticket (an agent sees its department's queue and its own tickets), so
an agent answering a client used to get 404 on that client's earlier tickets. Here the ticket the
user can see is the key: whoever may see ticket T may read, without changing anything, the other
tickets of T's client in T's tenant and their threads (notes included: the reader is staff), and
those of the clients merged into it (backend/clients/merge.py).
A ticket of another client or tenant is a 404, exactly like a ticket that does not exist.
"""

from backend.clients import service as clients
from backend.core.db import Database
from backend.core.errors import NotFound
from backend.core.ids import is_valid_id
from backend.core.pagination import decode_time_cursor, encode_cursor
from backend.core.tenancy import Actor, TenantScope
from backend.messages import service as messages
from backend.messages.schemas import MessagePage
from backend.tickets import presenter
from backend.tickets import service as tickets
from backend.tickets.schemas import TicketPage, TicketRead
from backend.tickets.visibility import can_see


async def other_tickets(db: Database, actor: Actor, *, ticket_id: str, cursor: str | None, limit: int) -> TicketPage:
    """The client's other tickets in the tenant, newest opened first."""
    current = await tickets.get_visible_or_404(db, actor, ticket_id=ticket_id)
    before = decode_time_cursor(cursor) if cursor else None
    scope = TenantScope(current.reseller_id)
    docs = await tickets.client_tickets(
        db,
        scope,
        client_ids=await clients.merged_group(db, scope, current.client_id),
        exclude_id=current.id,
        before=before,
        limit=limit + 1,
    )
    oldest = docs[limit - 1] if len(docs) > limit else None  # of this page, when another follows
    nxt = encode_cursor([oldest.created_at.isoformat(), oldest.id]) if oldest is not None else None
    return TicketPage(items=await presenter.read_many(db, docs[:limit], reader=actor), next_cursor=nxt)


async def _sibling_or_404(db: Database, actor: Actor, *, ticket_id: str, other_id: str) -> tickets.Ticket:
    current = await tickets.get_visible_or_404(db, actor, ticket_id=ticket_id)
    other = await tickets.load(db, other_id) if is_valid_id(other_id) else None
    if other is None or other.reseller_id != current.reseller_id:
        raise NotFound("ticket not found")
    if other.client_id != current.client_id and other.client_id not in await clients.merged_group(
        db, TenantScope(current.reseller_id), current.client_id
    ):
        raise NotFound("ticket not found")
    return other


async def readable(db: Database, actor: Actor, ticket: tickets.Ticket) -> bool:
    """Whether `actor` may read `ticket`'s thread: it sees the ticket, or (staff) it sees another
    ticket of the same client in the same tenant, whose history shows this one."""
    if can_see(actor, ticket):
        return True
    if actor.role == "client":
        return False
    # A ticket of the client it was merged into shows this one in its history too.
    shown_with = await clients.merged_into_chain(db, ticket.client_id)
    return await tickets.sees_a_ticket_of_client(db, actor, reseller_id=ticket.reseller_id, client_ids=shown_with)


async def other_ticket(db: Database, actor: Actor, *, ticket_id: str, other_id: str) -> TicketRead:
    other = await _sibling_or_404(db, actor, ticket_id=ticket_id, other_id=other_id)
    return await presenter.read_one(db, other, reader=actor)


async def other_messages(
    db: Database, actor: Actor, *, ticket_id: str, other_id: str, cursor: str | None, limit: int
) -> MessagePage:
    """The thread of one of the client's tickets, paged like the ticket's own (newest page first)."""
    other = await _sibling_or_404(db, actor, ticket_id=ticket_id, other_id=other_id)
    return await messages.thread_page(db, actor.scope, other.id, cursor=cursor, limit=limit)
