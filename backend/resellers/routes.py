from fastapi import APIRouter

from backend.auth.deps import AdminActor, ResellerActor
from backend.core.deps import Db
from backend.core.errors import ROLE, WITH_BODY, responses
from backend.core.pagination import DEFAULT_LIMIT, Limit
from backend.resellers import service
from backend.resellers.schemas import (
    ResellerConfigRead,
    ResellerConfigUpdate,
    ResellerCreate,
    ResellerPage,
    ResellerRead,
    ResellerUpdate,
)

router = APIRouter(tags=["resellers"], responses=ROLE)


@router.post("/resellers", status_code=201, operation_id="resellers-create", responses=WITH_BODY | responses(409))
async def create_reseller(db: Db, actor: AdminActor, body: ResellerCreate) -> ResellerRead:
    return await service.create(db, actor, data=body)


@router.get("/resellers", operation_id="resellers-list")
async def list_resellers(
    db: Db,
    actor: AdminActor,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> ResellerPage:
    return await service.list_page(db, cursor=cursor, limit=limit)


@router.get("/resellers/{reseller_id}", operation_id="resellers-get", responses=responses(404))
async def get_reseller(db: Db, actor: AdminActor, reseller_id: str) -> ResellerRead:
    return ResellerRead.of(await service.get_or_404(db, reseller_id=reseller_id))


@router.patch("/resellers/{reseller_id}", operation_id="resellers-update", responses=WITH_BODY | responses(404))
async def update_reseller(db: Db, actor: AdminActor, reseller_id: str, body: ResellerUpdate) -> ResellerRead:
    return await service.update(db, reseller_id=reseller_id, data=body)


@router.get("/reseller-config", operation_id="reseller_config-get", responses=responses(404))
async def get_config(db: Db, actor: ResellerActor) -> ResellerConfigRead:
    return await service.get_config(db, actor)


@router.patch("/reseller-config", operation_id="reseller_config-update", responses=WITH_BODY | responses(404))
async def update_config(db: Db, actor: ResellerActor, body: ResellerConfigUpdate) -> ResellerConfigRead:
    return await service.update_config(db, actor, data=body)
