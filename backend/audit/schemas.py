from typing import Any

from backend.core.pagination import Page
from backend.core.schemas import ReadModel, Timestamp


class TicketEventRead(ReadModel):
    id: str
    ticket_id: str
    version: int
    type: str
    actor_id: str | None
    actor_role: str | None
    from_status: str | None
    to_status: str
    at: Timestamp
    data: dict[str, Any] = {}


TicketEventPage = Page[TicketEventRead]
