from fastapi import APIRouter, Request

from backend.auth import service
from backend.auth.address import client_address
from backend.auth.deps import CurrentActor
from backend.auth.schemas import LoginRequest, TokenRead
from backend.core.deps import AppSettings, Db
from backend.core.errors import API, AUTHENTICATED, WITH_BODY, responses
from backend.users import service as users
from backend.users.schemas import PasswordChange, ProfileUpdate, UserRead

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/login", operation_id="auth-login", responses=API | WITH_BODY | responses(401, 429))
async def login(request: Request, db: Db, settings: AppSettings, body: LoginRequest) -> TokenRead:
    address = client_address(request, settings)
    return await service.login(db, settings, email=body.email, password=body.password, address=address)


@router.get("/me", operation_id="auth-me", responses=AUTHENTICATED)
async def me(db: Db, actor: CurrentActor) -> UserRead:
    return UserRead.of(await users.get_or_404(db, actor, user_id=actor.id))


@router.patch("/me", operation_id="auth-update_me", responses=AUTHENTICATED | WITH_BODY)
async def update_me(db: Db, actor: CurrentActor, body: ProfileUpdate) -> UserRead:
    return await users.update_profile(db, actor, data=body)


@router.post("/me/password", operation_id="auth-change_password", responses=AUTHENTICATED | WITH_BODY | responses(429))
async def change_password(
    request: Request, db: Db, settings: AppSettings, actor: CurrentActor, body: PasswordChange
) -> TokenRead:
    """Answers a fresh token: the change ends every session of the old password, this one's too."""
    address = client_address(request, settings)
    return await service.change_password(db, settings, actor, data=body, address=address)
