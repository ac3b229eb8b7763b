"""The stored shape of a ticket's tags (collection `ticket_tags`; `_id` is the ticket's)."""

from datetime import datetime

from backend.core.schemas import StoredModel


class TicketTags(StoredModel):
    reseller_id: str
    tags: list[str] = []  # normalized (schemas.normalize_tags): sorted, casefolded, unique
    updated_at: datetime | None = None
    updated_by: str | None = None
