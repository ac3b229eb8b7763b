from fastapi import APIRouter

from backend.auth.deps import TenantStaffActor
from backend.core.deps import Db
from backend.core.errors import ROLE, WITH_BODY, responses
from backend.quick_replies import service
from backend.quick_replies.schemas import QuickReplyCreate, QuickReplyPage, QuickReplyRead, QuickReplyUpdate

router = APIRouter(prefix="/quick-replies", tags=["quick-replies"], responses=ROLE)


@router.get("", operation_id="quick_replies-list")
async def list_quick_replies(db: Db, actor: TenantStaffActor, active: bool | None = None) -> QuickReplyPage:
    return await service.list_visible(db, actor, active=active)


@router.post("", status_code=201, operation_id="quick_replies-create", responses=WITH_BODY | responses(409))
async def create_quick_reply(db: Db, actor: TenantStaffActor, body: QuickReplyCreate) -> QuickReplyRead:
    return await service.create(db, actor, data=body)


@router.patch("/{reply_id}", operation_id="quick_replies-update", responses=WITH_BODY | responses(404, 409))
async def update_quick_reply(db: Db, actor: TenantStaffActor, reply_id: str, body: QuickReplyUpdate) -> QuickReplyRead:
    return await service.update(db, actor, reply_id=reply_id, data=body)
