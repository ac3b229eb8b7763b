from datetime import date
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import EmailStr, Field, StringConstraints, field_validator, model_validator

from backend.core.pagination import Page
from backend.core.schemas import InputModel, Name, Password, ReadModel, Timestamp
from backend.resellers.models import CSAT_WINDOW_DEFAULT_HOURS as CSAT_WINDOW_DEFAULT_HOURS
from backend.resellers.models import HHMM

LongText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)]
# A year of holidays and then some; each a local calendar day (YYYY-MM-DD) in the reseller's timezone.
MAX_CLOSED_DATES = 400
CSAT_WINDOW_MAX_HOURS = 24 * 30


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
    """A weekday's open range, local. A `close` at or before `open` ends on the next day (a night
    shift "22:00"–"02:00", or "18:00"–"00:00" to midnight); the range belongs to the day it opens."""

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
        if self.close == self.open:
            raise ValueError("a range must not open and close at the same time")
        return self


class ResellerConfigUpdate(InputModel):
    company_name: Name | None = None
    welcome_message: LongText | None = None
    away_message: LongText | None = None
    timezone: Annotated[str, StringConstraints(max_length=64)] | None = None
    business_hours: Annotated[list[BusinessHours], "at most 21 ranges"] | None = None
    signature_enabled: bool | None = None
    # Sent on Finalizar (backend/automation); empty: none.
    closing_message: LongText | None = None
    # Holidays: whole local days closed whatever `business_hours` says.
    closed_dates: list[date] | None = None
    # After Finalizar the client is asked for a 1-5 rating, answered by a lone digit within the window.
    csat_enabled: bool | None = None
    csat_window_hours: Annotated[int, Field(ge=1, le=CSAT_WINDOW_MAX_HOURS)] | None = None
    # The survey question; empty: the built-in one (backend/automation/texts.py).
    csat_message: LongText | None = None
    # The client's phone shows its messages read once the agent holding the ticket reads them.
    read_receipts: bool | None = None

    @field_validator("business_hours")
    @classmethod
    def _few(cls, v: list[BusinessHours] | None) -> list[BusinessHours] | None:
        if v is not None and len(v) > 21:
            raise ValueError("at most 21 ranges")
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("unknown timezone (an IANA name such as America/Sao_Paulo)") from exc
        return v

    @field_validator("closed_dates")
    @classmethod
    def _dates(cls, v: list[date] | None) -> list[date] | None:
        if v is not None and len(v) > MAX_CLOSED_DATES:
            raise ValueError(f"at most {MAX_CLOSED_DATES} closed dates")
        return sorted(set(v)) if v is not None else v


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
    closing_message: str = ""
    closed_dates: list[date] = []
    csat_enabled: bool = False
    csat_window_hours: int = CSAT_WINDOW_DEFAULT_HOURS
    csat_message: str = ""
    read_receipts: bool = True
    updated_at: Timestamp | None = None  # None: never saved, or a stored time that does not read
