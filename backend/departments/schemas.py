from typing import Annotated

from pydantic import StringConstraints

from backend.core.pagination import Page
from backend.core.schemas import InputModel, Name, ReadModel, Timestamp

Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]


class DepartmentCreate(InputModel):
    name: Name
    description: Description = ""


class DepartmentUpdate(InputModel):
    name: Name | None = None
    description: Description | None = None
    active: bool | None = None


class DepartmentRead(ReadModel):
    id: str
    reseller_id: str
    name: str
    description: str = ""
    active: bool
    created_at: Timestamp
    # Active agents in the department: 0 means a queue nobody but the owner sees.
    active_agents: int = 0


DepartmentPage = Page[DepartmentRead]
