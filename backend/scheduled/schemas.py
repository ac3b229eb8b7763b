from pydantic import AwareDatetime

from backend.core.pagination import Page
from backend.core.schemas import InputModel, ReadModel, Timestamp
from backend.scheduled.models import ScheduleStatus
from backend.tickets.schemas import MessageBody


class ScheduledMessageCreate(InputModel):
    body: MessageBody
    send_at: AwareDatetime  # with its offset: the agent's clock says which instant it means


class ScheduledMessageRead(ReadModel):
    id: str
    ticket_id: str
    ticket_number: int | None = None
    client_id: str
    client_name: str = ""
    body: str
    send_at: Timestamp
    status: ScheduleStatus
    reason: str | None = None
    author_id: str
    author_name: str
    message_id: str | None = None
    replaces: str | None = None
    replaced_by: str | None = None
    created_at: Timestamp
    settled_at: Timestamp | None = None
    # Once sent (stored and queued): how its message's delivery stands — "pending" while queued,
    # "sent", "delivered", "read", or "failed" with `failure_reason` — so "sent" is never shown for
    # a message WhatsApp did not take.
    delivery: str | None = None
    failure_reason: str | None = None


ScheduledMessagePage = Page[ScheduledMessageRead]
