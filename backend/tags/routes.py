from fastapi import APIRouter

from backend.auth.deps import StaffActor
from backend.core.deps import Db
from backend.core.errors import ROLE, WITH_BODY, responses
from backend.tags import service
from backend.tags.schemas import TagList, TagsUpdate
from backend.tickets import service as tickets
from backend.tickets.schemas import TicketRead

router = APIRouter(tags=["tags"], responses=ROLE)


@router.get("/tags", operation_id="tags-list")
async def list_tags(db: Db, actor: StaffActor) -> TagList:
    return await service.tenant_tags(db, actor)


@router.put("/tickets/{ticket_id}/tags", operation_id="tags-set_ticket_tags", responses=WITH_BODY | responses(404))
async def set_ticket_tags(db: Db, actor: StaffActor, ticket_id: str, body: TagsUpdate) -> TicketRead:
    return await tickets.set_tags(db, actor, ticket_id=ticket_id, tags=body.tags)
