"""The stored shape of a scheduled message (collection `scheduled_messages`)."""

from datetime import datetime
from typing import Literal

from backend.core.schemas import StoredModel

# scheduled: waiting for its time; sent: stored in its ticket and queued for WhatsApp (the
# message then shows its own ticks, and the API's `delivery` carries them); canceled: by a
# person, or because its ticket was finalized first; failed: its time came while nothing could
# reach the client (the reason says why).
ScheduleStatus = Literal["scheduled", "sent", "canceled", "failed"]


class ScheduledMessage(StoredModel):
    reseller_id: str
    ticket_id: str
    ticket_number: int | None = None  # as the ticket read when scheduled: the lists show it
    client_id: str
    client_name: str = ""
    author_id: str
    author_name: str
    body: str
    send_at: datetime
    status: ScheduleStatus
    # Why it was canceled or failed: "canceled", "finalized", "edited" (replaced by its edit),
    # "edit_refused" (an edit that came after it stopped waiting), or the connection's block.
    reason: str | None = None
    message_id: str | None = None  # the message it became, once sent
    replaces: str | None = None  # the schedule this one's author edited into it (service.replace)
    replaced_by: str | None = None  # once edited: the schedule that took its place
    created_at: datetime
    updated_at: datetime
    settled_at: datetime | None = None  # when it stopped being scheduled
