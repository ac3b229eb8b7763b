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
    # Read-time names (backend/audit/names.py): who acted, and the agent or department a
    # transfer went to. None when unknown (a system actor, or a record since removed).
    actor_name: str | None = None
    target_name: str | None = None


TicketEventPage = Page[TicketEventRead]
