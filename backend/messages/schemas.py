from typing import Any, Literal

from backend.core.pagination import Page
from backend.core.schemas import InputModel, ReadModel, Timestamp
from backend.tickets.schemas import MessageBody


class MessageCreate(InputModel):
    body: MessageBody


class MessageRead(ReadModel):
    id: str
    ticket_id: str
    # "note": an internal note, staff only, never sent (backend/messages/notes.py).
    direction: Literal["in", "out", "note"]
    sender_type: Literal["client", "agent", "system", "reseller"]
    sender_id: str | None = None
    sender_name: str = ""
    type: str = "text"
    body: str = ""
    media: dict[str, Any] | None = None
    status: str
    created_at: Timestamp
    # Set when the message raced a finalize and was moved on from that ticket (messages.service).
    moved_from_ticket_id: str | None = None
    # Why a message to the client was not sent ("failed"), e.g. the number is not on WhatsApp.
    failure_reason: str | None = None


MessagePage = Page[MessageRead]
