from fastapi import APIRouter

from backend.auth.deps import ResellerActor, ResellerOrAdminActor, StaffActor
from backend.core.deps import Db
from backend.core.errors import ROLE, WITH_BODY, responses
from backend.core.pagination import DEFAULT_LIMIT, Limit
from backend.users import deactivation, service
from backend.users.schemas import UserCreate, UserPage, UserRead, UserUpdate

router = APIRouter(prefix="/users", tags=["users"], responses=ROLE)


@router.post("", status_code=201, operation_id="users-create", responses=WITH_BODY | responses(409))
async def create_user(db: Db, actor: ResellerActor, body: UserCreate) -> UserRead:
    return await service.create_agent(db, actor, data=body)


@router.get("", operation_id="users-list")
async def list_users(
    db: Db,
    actor: StaffActor,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    department_id: str | None = None,
    active: bool | None = None,
) -> UserPage:
    return await service.list_page(db, actor, cursor=cursor, limit=limit, department_id=department_id, active=active)


@router.get("/{user_id}", operation_id="users-get", responses=responses(404))
async def get_user(db: Db, actor: StaffActor, user_id: str) -> UserRead:
    return UserRead.of(await service.get_or_404(db, actor, user_id=user_id))


@router.patch("/{user_id}", operation_id="users-update", responses=WITH_BODY | responses(404, 409))
async def update_user(db: Db, actor: ResellerOrAdminActor, user_id: str, body: UserUpdate) -> UserRead:
    """`{"active": false}` also hands every ticket the person holds in atendendo back to its
    department's queue, as a transfer by the caller; repeating it finishes one cut short."""
    return await deactivation.update(db, actor, user_id=user_id, data=body)
