from typing import Annotated, Any, Literal

from pydantic import StringConstraints

from backend.core.pagination import Page
from backend.core.schemas import InputModel, ObjectIdStr, ReadModel, Timestamp
from backend.tickets.schemas import MessageBody

Caption = Annotated[str, StringConstraints(strip_whitespace=True, max_length=4096)]


class MessageCreate(InputModel):
    body: MessageBody
    quoted_message_id: ObjectIdStr | None = None  # a message of the same ticket the reply quotes


class MessageUploadFields(InputModel):
    """The fields of a `multipart/form-data` reply besides its `file` (backend/messages/uploads.py)."""

    body: Caption = ""  # the caption
    quoted_message_id: ObjectIdStr | None = None


class MessageQuote(ReadModel):
    """The message a message quotes: our id when we know it, and what it said when quoted."""

    message_id: str | None = None
    body: str = ""
    type: str = "text"


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
    quoted: MessageQuote | None = None
    status: str
    created_at: Timestamp
    # Set when the message raced a finalize and was moved on from that ticket (messages.service).
    moved_from_ticket_id: str | None = None


MessagePage = Page[MessageRead]
