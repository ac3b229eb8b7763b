from fastapi import APIRouter

from backend.auth.deps import StaffActor
from backend.core.deps import Db
from backend.core.errors import ROLE, WITH_BODY, responses
from backend.tags import service
from backend.tags.schemas import TagHolder, TagList, TagsUpdate
from backend.tickets import service as tickets
from backend.tickets.schemas import TicketRead

router = APIRouter(tags=["tags"], responses=ROLE)


@router.get("/tags", operation_id="tags-list")
async def list_tags(db: Db, actor: StaffActor, on: TagHolder | None = None) -> TagList:
    """Every tag in use in the tenant; `on`: only those on clients (the contact list's filter,
    which matches client tags) or only those on tickets."""
    return await service.tenant_tags(db, actor, on=on)


@router.put("/tickets/{ticket_id}/tags", operation_id="tags-set_ticket_tags", responses=WITH_BODY | responses(404))
async def set_ticket_tags(db: Db, actor: StaffActor, ticket_id: str, body: TagsUpdate) -> TicketRead:
    return await tickets.set_tags(db, actor, ticket_id=ticket_id, tags=body.tags)
