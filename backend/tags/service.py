from typing import Any

from pymongo.errors import DuplicateKeyError

from backend.clients import service as clients
from backend.core.clock import utcnow
from backend.core.db import Database
from backend.core.tenancy import Actor
from backend.tags import repository

# Published to other domains (they never import a repository: docs/ARCHITECTURE.md §2): tickets
# presents and filters by its tags.
from backend.tags.repository import tags_of as tags_of
from backend.tags.repository import ticket_ids_with as ticket_ids_with
from backend.tags.schemas import TagList


async def put_ticket_tags(db: Database, ticket: dict[str, Any], *, actor: Actor, tags: list[str]) -> None:
    """The set given replaces the ticket's tags (tickets.service.set_tags checks who may)."""
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


async def tenant_tags(db: Database, actor: Actor) -> TagList:
    """Every tag in use in the tenant, on clients or tickets, for suggestions and filters."""
    if actor.reseller_id is None:
        return TagList(items=[])
    on_tickets = await repository.distinct_tags(db, actor.scope)
    on_clients = await clients.distinct_tags(db, actor)
    return TagList(items=sorted(set(on_tickets) | set(on_clients)))
