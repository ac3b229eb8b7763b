from backend.clients import service as clients
from backend.core.clock import utcnow
from backend.core.db import Database
from backend.core.tenancy import Actor
from backend.tags import repository
from backend.tags.models import TicketTags

# Published to other domains (they never import a repository: docs/ARCHITECTURE.md §2): tickets
# presents and filters by its tags.
from backend.tags.repository import tags_of as tags_of
from backend.tags.repository import ticket_ids_with as ticket_ids_with
from backend.tags.schemas import TagHolder, TagList
from backend.tickets.models import Ticket


async def put_ticket_tags(db: Database, ticket: Ticket, *, actor: Actor, tags: list[str]) -> None:
    """The set given replaces the ticket's tags (tickets.service.set_tags checks who may)."""
    tagged = TicketTags(
        id=ticket.id, reseller_id=ticket.reseller_id, tags=tags, updated_at=utcnow(), updated_by=actor.id
    )
    await repository.put(db, tagged)


async def tenant_tags(db: Database, actor: Actor, *, on: TagHolder | None = None) -> TagList:
    """Every tag in use in the tenant, on clients or tickets (or only on the ones `on` names),
    for suggestions and filters."""
    if actor.reseller_id is None:
        return TagList(items=[])
    on_tickets = await repository.distinct_tags(db, actor.scope) if on != "clients" else []
    on_clients = await clients.distinct_tags(db, actor) if on != "tickets" else []
    return TagList(items=sorted(set(on_tickets) | set(on_clients)))
