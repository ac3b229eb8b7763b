from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator

from backend.connections.models import MENU_MAX_INVALID_DEFAULT
from backend.connections.providers.base import ConnectionStatus
from backend.core.pagination import Page
from backend.core.schemas import InputModel, Name, ObjectIdStr, ReadModel, Timestamp

# Evolution instance names end up in URL paths: keep them to a safe alphabet.
InstanceName = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
# The department menu answers with one digit, 1-9 (backend/automation).
MAX_MENU_OPTIONS = 9
MenuText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)]


class ConnectionCreate(InputModel):
    name: Name
    provider: Literal["evolution"] = "evolution"
    instance_name: InstanceName
    default_department_id: ObjectIdStr


class ConnectionUpdate(InputModel):
    name: Name | None = None
    default_department_id: ObjectIdStr | None = None
    active: bool | None = None
    menu_enabled: bool | None = None  # the menu's fields: backend/connections/models.py
    menu_department_ids: list[ObjectIdStr] | None = None
    menu_text: MenuText | None = None
    menu_max_invalid: Annotated[int, Field(ge=0, le=10)] | None = None

    @field_validator("menu_department_ids")
    @classmethod
    def _options(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(v) > MAX_MENU_OPTIONS:
            raise ValueError(f"at most {MAX_MENU_OPTIONS} departments (answered with one digit)")
        if v is not None and len(set(v)) != len(v):
            raise ValueError("a department appears twice")
        return v


class ConnectionRead(ReadModel):
    """Never carries the webhook token or provider keys: they are not fields here."""

    id: str
    reseller_id: str
    name: str
    provider: str
    instance_name: str
    default_department_id: str
    status: ConnectionStatus
    qr_code: str | None = None
    active: bool
    last_error: str | None = None
    menu_enabled: bool = False
    menu_department_ids: list[str] = []
    menu_text: str = ""
    menu_max_invalid: int = MENU_MAX_INVALID_DEFAULT
    created_at: Timestamp
    updated_at: Timestamp


class QrCodeRead(BaseModel):
    qr_code: str | None
    status: ConnectionStatus


ConnectionPage = Page[ConnectionRead]
