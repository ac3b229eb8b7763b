from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from backend.auth.deps import StaffActor, TenantStaffActor
from backend.clients import merge, service
from backend.clients.schemas import (
    ClientCreate,
    ClientImport,
    ClientImportResult,
    ClientMerge,
    ClientPage,
    ClientRead,
    ClientUpdate,
)
from backend.core.deps import Db
from backend.core.errors import ROLE, WITH_BODY, responses
from backend.core.pagination import DEFAULT_LIMIT, Limit

router = APIRouter(prefix="/clients", tags=["clients"], responses=ROLE)


@router.post("", status_code=201, operation_id="clients-create", responses=WITH_BODY | responses(409))
async def create_client(db: Db, actor: TenantStaffActor, body: ClientCreate) -> ClientRead:
    return await service.create(db, actor, data=body)


@router.get("", operation_id="clients-list")
async def list_clients(
    db: Db,
    actor: StaffActor,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    phone: Annotated[str | None, Query(max_length=32)] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=64, description="part of the name or number")] = None,
    tag: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    active: bool | None = None,
) -> ClientPage:
    return await service.list_page(db, actor, cursor=cursor, limit=limit, phone=phone, q=q, tag=tag, active=active)


@router.post("/import", operation_id="clients-import", responses=WITH_BODY)
async def import_clients(db: Db, actor: TenantStaffActor, body: ClientImport) -> ClientImportResult:
    """CSV with a header naming `nome` and `telefone` (optional `email`, `notas`, `tags`), `;` or
    `,` separated. `dry_run` (the default) previews; otherwise any bad line refuses the whole file."""
    return await service.import_csv(db, actor, data=body)


@router.get(
    "/export.csv",
    operation_id="clients-export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "UTF-8 with BOM, `;`"}},
)
async def export_clients(db: Db, actor: TenantStaffActor) -> StreamingResponse:
    return StreamingResponse(
        service.export_csv(db, actor),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="contatos.csv"'},
    )


@router.get("/{client_id}", operation_id="clients-get", responses=responses(404))
async def get_client(db: Db, actor: StaffActor, client_id: str) -> ClientRead:
    return ClientRead.of(await service.get_doc_or_404(db, actor, client_id=client_id))


@router.patch("/{client_id}", operation_id="clients-update", responses=WITH_BODY | responses(404, 409))
async def update_client(db: Db, actor: TenantStaffActor, client_id: str, body: ClientUpdate) -> ClientRead:
    return await service.update(db, actor, client_id=client_id, data=body)


@router.post(
    "/{client_id}/merge",
    operation_id="clients-merge",
    responses=WITH_BODY | responses(404, 409),
)
async def merge_client(db: Db, actor: TenantStaffActor, client_id: str, body: ClientMerge) -> ClientRead:
    """The reseller's owner merges a client into another that is the same person (WhatsApp named
    them by their LID and by their number): the merged client's chats go to the kept one from now
    on, the kept one's history shows both, and the merged one leaves the contacts list; nothing is
    moved or deleted. 409 while the merged client has an open ticket (finalize it first) or once
    it was merged into another client. Returns the kept client."""
    return await merge.merge(db, actor, client_id=client_id, into_client_id=body.into_client_id)
