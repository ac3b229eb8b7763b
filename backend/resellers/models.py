"""The stored shapes of a tenant (collection `resellers`) and its settings (`reseller_configs`,
one per tenant, keyed by its id). A setting added after a config was written reads as its default."""

from datetime import datetime
from typing import Any

from backend.core.schemas import StoredModel

DEFAULT_TIMEZONE = "America/Sao_Paulo"
CSAT_WINDOW_DEFAULT_HOURS = 24


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


class ResellerConfig(StoredModel):
    reseller_id: str
    company_name: str = ""
    welcome_message: str = ""
    away_message: str = ""
    timezone: str = DEFAULT_TIMEZONE
    business_hours: list[dict[str, Any]] = []  # {"weekday": 0-6, "open": "HH:MM", "close": "HH:MM"}
    # Agents' WhatsApp replies carry their name unless the reseller turned it off.
    signature_enabled: bool = True
    closing_message: str = ""
    closed_dates: list[str] = []  # "YYYY-MM-DD" (BSON has no date-only type)
    csat_enabled: bool = False
    csat_window_hours: int = CSAT_WINDOW_DEFAULT_HOURS
    csat_message: str = ""
    # The client's phone shows its messages read (blue ticks) once the agent holding the ticket reads them.
    read_receipts: bool = True
    created_at: datetime | None = None
    updated_at: datetime | None = None
