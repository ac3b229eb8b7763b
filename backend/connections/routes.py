from typing import Annotated

from fastapi import APIRouter, Query

from backend.auth.deps import ResellerActor, ResellerOrAdminActor, StaffActor
from backend.connections import service
from backend.connections.schemas import ConnectionCreate, ConnectionPage, ConnectionRead, ConnectionUpdate, QrCodeRead
from backend.core.deps import AppSettings, Db
from backend.core.errors import ROLE, WITH_BODY, responses
from backend.core.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/whatsapp-connections", tags=["whatsapp-connections"], responses=ROLE)


@router.post("", status_code=201, operation_id="whatsapp_connections-create", responses=WITH_BODY | responses(409))
async def create_connection(
    db: Db, settings: AppSettings, actor: ResellerActor, body: ConnectionCreate
) -> ConnectionRead:
    return await service.create(db, actor, settings, data=body)


@router.get("", operation_id="whatsapp_connections-list")
async def list_connections(
    db: Db,
    actor: StaffActor,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> ConnectionPage:
    return await service.list_page(db, actor, cursor=cursor, limit=limit)


@router.get("/{connection_id}", operation_id="whatsapp_connections-get", responses=responses(404))
async def get_connection(db: Db, actor: ResellerOrAdminActor, connection_id: str) -> ConnectionRead:
    return ConnectionRead.of(await service.get_doc_or_404(db, actor, connection_id=connection_id))


@router.patch("/{connection_id}", operation_id="whatsapp_connections-update", responses=WITH_BODY | responses(404))
async def update_connection(db: Db, actor: ResellerActor, connection_id: str, body: ConnectionUpdate) -> ConnectionRead:
    return await service.update(db, actor, connection_id=connection_id, data=body)


@router.get("/{connection_id}/qrcode", operation_id="whatsapp_connections-qrcode", responses=responses(404))
async def connection_qrcode(db: Db, settings: AppSettings, actor: ResellerActor, connection_id: str) -> QrCodeRead:
    return await service.qrcode(db, actor, settings, connection_id=connection_id)
