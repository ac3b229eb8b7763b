from fastapi import APIRouter

from backend.auth.deps import ResellerActor, StaffActor
from backend.connections import service as connections
from backend.core.deps import Db
from backend.core.errors import ROLE, WITH_BODY, responses
from backend.core.pagination import DEFAULT_LIMIT, Limit
from backend.core.tenancy import Actor
from backend.departments import service
from backend.departments.schemas import DepartmentCreate, DepartmentPage, DepartmentRead, DepartmentUpdate
from backend.users import service as users

router = APIRouter(prefix="/departments", tags=["departments"], responses=ROLE)


async def _staffed(db: Db, actor: Actor, reads: list[DepartmentRead]) -> list[DepartmentRead]:
    """Each department with its count of active agents. Composed here: users build on departments
    (an agent's departments are checked by this domain's service), so this service cannot ask
    theirs."""
    counts = await users.active_agents_by_department(db, actor.scope)
    return [read.model_copy(update={"active_agents": counts[read.id]}) for read in reads]


@router.post("", status_code=201, operation_id="departments-create", responses=WITH_BODY | responses(409))
async def create_department(db: Db, actor: ResellerActor, body: DepartmentCreate) -> DepartmentRead:
    return await service.create(db, actor, data=body)  # nobody is in it yet


@router.get("", operation_id="departments-list")
async def list_departments(
    db: Db,
    actor: StaffActor,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    active: bool | None = None,
) -> DepartmentPage:
    page = await service.list_page(db, actor, cursor=cursor, limit=limit, active=active)
    return page.model_copy(update={"items": await _staffed(db, actor, page.items)})


@router.get("/{department_id}", operation_id="departments-get", responses=responses(404))
async def get_department(db: Db, actor: StaffActor, department_id: str) -> DepartmentRead:
    read = DepartmentRead.of(await service.get_or_404(db, actor, department_id=department_id))
    return (await _staffed(db, actor, [read]))[0]


@router.patch("/{department_id}", operation_id="departments-update", responses=WITH_BODY | responses(404, 409))
async def update_department(db: Db, actor: ResellerActor, department_id: str, body: DepartmentUpdate) -> DepartmentRead:
    # Not deactivated while a connection opens its new conversations here (409 naming them):
    # connections build on departments, so their service runs this update with its checks.
    # Scoped to the actor's tenant: another tenant's id finds nothing, and the update says 404.
    read = await connections.update_department(db, actor, department_id=department_id, data=body)
    return (await _staffed(db, actor, [read]))[0]
