"""The stored shape of a department (collection `departments`)."""

from datetime import datetime

from backend.core.schemas import StoredModel


class Department(StoredModel):
    reseller_id: str
    name: str
    name_key: str = ""  # casefolded, single-spaced: one department per name in a tenant
    description: str = ""
    active: bool = True
    created_at: datetime
    updated_at: datetime | None = None
