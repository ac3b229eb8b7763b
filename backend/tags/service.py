from pymongo.errors import DuplicateKeyError

from backend.clients import service as clients
from backend.core.clock import utcnow
from backend.core.db import Database
from backend.core.tenancy import Actor
from backend.tags import repository
from backend.tags.schemas import TagList
from backend.tickets import presenter
from backend.tickets import service as tickets
from backend.tickets.schemas import TicketRead


async def set_ticket_tags(db: Database, actor: Actor, *, ticket_id: str, tags: list[str]) -> TicketRead:
    """Anyone who can see the ticket tags it; the set given replaces the ticket's tags."""
    ticket = await tickets.get_visible_or_404(db, actor, ticket_id=ticket_id)
    changes = {"updated_at": utcnow(), "updated_by": actor.id}
    for attempt in range(2):
        try:
            await repository.put(
                db, ticket_id=ticket["_id"], reseller_id=ticket["reseller_id"], tags=tags, changes=changes
            )
            break
        except DuplicateKeyError:  # two first taggings both upserted; the document exists now
            if attempt:
                raise
    return await presenter.read_one(db, ticket, reader=actor)


async def tenant_tags(db: Database, actor: Actor) -> TagList:
    """Every tag in use in the tenant, on clients or tickets, for suggestions and filters."""
    if actor.reseller_id is None:
        return TagList(items=[])
    on_tickets = await repository.distinct_tags(db, actor.scope)
    on_clients = await clients.distinct_tags(db, actor)
    return TagList(items=sorted(set(on_tickets) | set(on_clients)))
