from collections.abc import Iterable
from typing import Any

from backend.core.clock import utcnow
from backend.core.db import Database, unique_or_conflict
from backend.core.errors import Unprocessable, or_404
from backend.core.ids import is_valid_id, new_id
from backend.core.pagination import decode_id_cursor, next_id_cursor
from backend.core.tenancy import Actor, TenantScope
from backend.departments import repository
from backend.departments.models import Department as Department  # published: the stored shape
from backend.departments.repository import get as get  # published: by id in a tenant's scope
from backend.departments.schemas import DepartmentCreate, DepartmentPage, DepartmentRead, DepartmentUpdate

NAME_TAKEN = "a department with this name already exists"


def _name_key(name: str) -> str:
    return " ".join(name.casefold().split())


async def create(db: Database, actor: Actor, *, data: DepartmentCreate) -> DepartmentRead:
    assert actor.reseller_id
    now = utcnow()
    department = Department(
        id=new_id(),
        reseller_id=actor.reseller_id,
        name=data.name,
        name_key=_name_key(data.name),
        description=data.description,
        created_at=now,
        updated_at=now,
    )
    with unique_or_conflict(NAME_TAKEN):
        await repository.insert(db, department)
    return DepartmentRead.of(department)


async def get_or_404(db: Database, actor: Actor, *, department_id: str) -> Department:
    department = await repository.get(db, actor.scope, department_id) if is_valid_id(department_id) else None
    return or_404(department, "department")


async def list_page(
    db: Database, actor: Actor, *, cursor: str | None, limit: int, active: bool | None
) -> DepartmentPage:
    before = decode_id_cursor(cursor) if cursor else None
    found = await repository.list_page(db, actor.scope, before_id=before, limit=limit + 1, active=active)
    return DepartmentPage(items=[DepartmentRead.of(d) for d in found[:limit]], next_cursor=next_id_cursor(found, limit))


async def update(db: Database, actor: Actor, *, department_id: str, data: DepartmentUpdate) -> DepartmentRead:
    """A deactivation has been checked against the connections by the caller (the route:
    connections.service.require_not_a_default), which this domain cannot import."""
    await get_or_404(db, actor, department_id=department_id)
    changes: dict[str, Any] = data.model_dump(exclude_unset=True, exclude_none=True)
    if "name" in changes:
        changes["name_key"] = _name_key(changes["name"])
    changes["updated_at"] = utcnow()
    with unique_or_conflict(NAME_TAKEN):
        department = await repository.update(db, actor.scope, department_id, changes)
    assert department is not None
    return DepartmentRead.of(department)


async def require_active_ids(db: Database, reseller_id: str, ids: list[str], *, kept: Iterable[str] = ()) -> list[str]:
    """Department ids given in input must all be departments of the tenant, and active unless
    the record held them already (`kept`): a department deactivated since stays where it was
    (an agent's list, a menu, which skips it), so saving the record unchanged is never refused."""
    unique = sorted(set(ids))
    held = set(kept)
    added = [i for i in unique if i not in held]
    scope = TenantScope(reseller_id)
    if added and await repository.count_active_in(db, scope, added) != len(added):
        raise Unprocessable("unknown or inactive department")
    still = [i for i in unique if i in held]
    if still and await repository.count_in(db, scope, still) != len(still):
        raise Unprocessable("unknown or inactive department")
    return unique


async def name_in_tenant(db: Database, reseller_id: str, department_id: str) -> str | None:
    department = await repository.get(db, TenantScope(reseller_id), department_id)
    return department.name if department is not None else None
