from fastapi import APIRouter

from backend.auth.deps import ResellerActor, StaffActor
from backend.connections import service as connections
from backend.core.deps import Db
from backend.core.errors import ROLE, WITH_BODY, responses
from backend.core.pagination import DEFAULT_LIMIT, Limit
from backend.departments import service
from backend.departments.schemas import DepartmentCreate, DepartmentPage, DepartmentRead, DepartmentUpdate

router = APIRouter(prefix="/departments", tags=["departments"], responses=ROLE)


@router.post("", status_code=201, operation_id="departments-create", responses=WITH_BODY | responses(409))
async def create_department(db: Db, actor: ResellerActor, body: DepartmentCreate) -> DepartmentRead:
    return await service.create(db, actor, data=body)


@router.get("", operation_id="departments-list")
async def list_departments(
    db: Db,
    actor: StaffActor,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    active: bool | None = None,
) -> DepartmentPage:
    return await service.list_page(db, actor, cursor=cursor, limit=limit, active=active)


@router.get("/{department_id}", operation_id="departments-get", responses=responses(404))
async def get_department(db: Db, actor: StaffActor, department_id: str) -> DepartmentRead:
    return DepartmentRead.of(await service.get_or_404(db, actor, department_id=department_id))


@router.patch("/{department_id}", operation_id="departments-update", responses=WITH_BODY | responses(404, 409))
async def update_department(db: Db, actor: ResellerActor, department_id: str, body: DepartmentUpdate) -> DepartmentRead:
    if body.active is False:
        # Not while a connection opens its new conversations here (409 naming them). Asked
        # here, where both domains are known: connections build on departments (their service
        # imports this domain's), so the departments service cannot call theirs without a cycle.
        # Scoped to the actor's tenant: another tenant's id finds nothing, and the update says 404.
        await connections.require_not_a_default(db, actor, department_id=department_id)
    return await service.update(db, actor, department_id=department_id, data=body)
