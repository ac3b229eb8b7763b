"""The stored shapes of a tenant (collection `resellers`) and its settings (`reseller_configs`,
one per tenant, keyed by its id). A setting added after a config was written reads as its default."""

from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import (
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from typing_extensions import TypedDict

from backend.core.logging import get_logger
from backend.core.schemas import CalendarDay, StoredModel

log = get_logger("resellers")

DEFAULT_TIMEZONE = "America/Sao_Paulo"
CSAT_WINDOW_DEFAULT_HOURS = 24
HHMM = Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]


class Reseller(StoredModel):
    name: str
    owner_id: str
    owner_email: str
    active: bool = True
    # Raised by each deactivation (resellers.repository, in the same write): a token carries it
    # (auth.service), so a session from before a deactivation stays ended after the reactivation.
    token_epoch: int = 0
    created_by: str | None = None
    created_at: datetime
    updated_at: datetime | None = None


class OpenRange(TypedDict):
    """A weekday's open range, local (resellers.schemas.BusinessHours, as stored)."""

    weekday: Annotated[int, Field(ge=0, le=6)]  # 0 = Monday
    open: HHMM
    close: HHMM


def _readable_items(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    """A list's items that read, each one that does not logged and passed over: one bad business
    hour or closed day must not take the others with it (nor, through `ResellerConfig.load`, the
    whole config)."""
    if not isinstance(value, list):
        return handler(value)
    kept: list[Any] = []
    for item in value:
        try:
            kept += handler([item])
        except ValidationError as exc:
            log.error(
                "config item unreadable; passed over",
                reseller_id=info.data.get("id"),
                field=info.field_name,
                error=str(exc),
            )
    return kept


class ResellerConfig(StoredModel):
    reseller_id: str
    company_name: str = ""
    welcome_message: str = ""
    away_message: str = ""
    timezone: str = DEFAULT_TIMEZONE
    business_hours: Annotated[list[OpenRange], WrapValidator(_readable_items)] = []
    # Agents' WhatsApp replies carry their name unless the reseller turned it off.
    signature_enabled: bool = True
    closing_message: str = ""
    # Stored as "YYYY-MM-DD" (BSON has no date-only type).
    closed_dates: Annotated[list[CalendarDay], WrapValidator(_readable_items)] = []
    csat_enabled: bool = False
    csat_window_hours: int = CSAT_WINDOW_DEFAULT_HOURS
    csat_message: str = ""
    # The client's phone shows its messages read (blue ticks) once the agent holding the ticket reads them.
    read_receipts: bool = True
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def load(cls, doc: dict[str, Any] | None) -> Self | None:
        """Read leniently: each setting that does not read (an operator's slip, an older version's
        shape) is logged and read as its default, so neither the tenant's clients' messages
        (automation reads it for each) nor the settings page that would mend it fail on it."""
        try:
            return super().load(doc)
        except ValidationError as exc:
            assert doc is not None
            bad = {e["loc"][0] for e in exc.errors() if e["loc"]}
            log.error("config settings unreadable; read as their defaults", reseller_id=doc.get("_id"), error=str(exc))
            return super().load({k: v for k, v in doc.items() if k not in bad})
