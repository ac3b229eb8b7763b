from typing import Annotated, Literal

from pydantic import BaseModel, StringConstraints

from backend.connections.providers.base import ConnectionStatus
from backend.core.pagination import Page
from backend.core.schemas import InputModel, Name, ObjectIdStr, ReadModel, Timestamp

# Evolution instance names end up in URL paths: keep them to a safe alphabet.
InstanceName = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class ConnectionCreate(InputModel):
    name: Name
    provider: Literal["evolution"] = "evolution"
    instance_name: InstanceName
    default_department_id: ObjectIdStr


class ConnectionUpdate(InputModel):
    name: Name | None = None
    default_department_id: ObjectIdStr | None = None
    active: bool | None = None


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
    created_at: Timestamp
    updated_at: Timestamp


class QrCodeRead(BaseModel):
    qr_code: str | None
    status: ConnectionStatus


ConnectionPage = Page[ConnectionRead]
