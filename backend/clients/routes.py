from typing import Annotated

from fastapi import APIRouter, Query

from backend.clients import service
from backend.clients.schemas import ClientCreate, ClientPage, ClientRead, ClientUpdate
from backend.core.deps import Db, StaffActor, TenantStaffActor
from backend.core.errors import ROLE, WITH_BODY, responses
from backend.core.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/clients", tags=["clients"], responses=ROLE)


@router.post("", status_code=201, operation_id="clients-create", responses=WITH_BODY | responses(409))
async def create_client(db: Db, actor: TenantStaffActor, body: ClientCreate) -> ClientRead:
    return await service.create(db, actor, data=body)


@router.get("", operation_id="clients-list")
async def list_clients(
    db: Db,
    actor: StaffActor,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    phone: Annotated[str | None, Query(max_length=32)] = None,
) -> ClientPage:
    return await service.list_page(db, actor, cursor=cursor, limit=limit, phone=phone)


@router.get("/{client_id}", operation_id="clients-get", responses=responses(404))
async def get_client(db: Db, actor: StaffActor, client_id: str) -> ClientRead:
    return ClientRead.from_doc(await service.get_doc_or_404(db, actor, client_id=client_id))


@router.patch("/{client_id}", operation_id="clients-update", responses=WITH_BODY | responses(404, 409))
async def update_client(db: Db, actor: TenantStaffActor, client_id: str, body: ClientUpdate) -> ClientRead:
    return await service.update(db, actor, client_id=client_id, data=body)
