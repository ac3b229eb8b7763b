from typing import Annotated

from pydantic import EmailStr, StringConstraints, field_validator, model_validator

from backend.core.pagination import Page
from backend.core.schemas import InputModel, Name, Password, ReadModel, Timestamp

HHMM = Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)]


class ResellerCreate(InputModel):
    """The tenant and its owner user in one request."""

    name: Name
    email: EmailStr
    password: Password
    owner_name: Name | None = None


class ResellerUpdate(InputModel):
    name: Name | None = None
    active: bool | None = None


class ResellerRead(ReadModel):
    id: str
    name: str
    owner_id: str
    owner_email: str
    active: bool
    created_at: Timestamp


ResellerPage = Page[ResellerRead]


class BusinessHours(InputModel):
    weekday: Annotated[int, "0=Monday"]
    open: HHMM
    close: HHMM

    @field_validator("weekday")
    @classmethod
    def _weekday(cls, v: int) -> int:
        if not 0 <= v <= 6:
            raise ValueError("weekday must be 0 (Monday) to 6 (Sunday)")
        return v

    @model_validator(mode="after")
    def _order(self) -> "BusinessHours":
        if self.close <= self.open:
            raise ValueError("close must be after open")
        return self


class ResellerConfigUpdate(InputModel):
    company_name: Name | None = None
    welcome_message: LongText | None = None
    away_message: LongText | None = None
    timezone: Annotated[str, StringConstraints(max_length=64)] | None = None
    business_hours: Annotated[list[BusinessHours], "at most 21 ranges"] | None = None
    signature_enabled: bool | None = None

    @field_validator("business_hours")
    @classmethod
    def _few(cls, v: list[BusinessHours] | None) -> list[BusinessHours] | None:
        if v is not None and len(v) > 21:
            raise ValueError("at most 21 ranges")
        return v


class ResellerConfigRead(ReadModel):
    id: str
    reseller_id: str
    company_name: str
    welcome_message: str = ""
    away_message: str = ""
    timezone: str = "America/Sao_Paulo"
    business_hours: list[dict[str, object]] = []
    # Agents' WhatsApp replies start with "*<agent name>:*" and a line break (messages.service).
    signature_enabled: bool = True
    updated_at: Timestamp
