"""The stored shape of a message (collection `messages`, backend/messages/repository.py): the
conversation's messages and internal notes. A field an older message lacks reads as its default."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from backend.core.schemas import StoredModel
from backend.media.models import Measure


class MessageMedia(BaseModel):
    """A message's attachment: what it showed before its bytes came, then the fetch's outcome
    (backend/media). Messages stored before media were fetched kept the provider's own fields
    (`mimetype`, `fileName`, `fileLength`, `seconds`) and no `status`."""

    status: str | None = None  # pending, ready, failed; None on those older messages
    round: int = 0  # the fetch round (a retry starts a new one)
    mime: str = ""
    name: str = ""
    size: Measure = None
    sha256: str | None = None
    duration: Measure = None
    width: Measure = None
    height: Measure = None
    voice: bool = False  # a voice note (WhatsApp's push-to-talk audio)
    error: str | None = None
    mimetype: str | None = None  # the provider's names, on those older messages
    fileName: str | None = None
    fileLength: Any = None  # a number, a numeric string or a protobuf Long
    seconds: Measure = None


class MessageQuote(BaseModel):
    """The message a message quotes: our id when we know it, and what it said when quoted."""

    message_id: str | None = None
    body: str = ""
    type: str = "text"


class Quoted(MessageQuote):  # as stored; the API's MessageRead.quoted shows the fields above
    provider_message_id: str | None = None  # a client's quote, as the provider named it


class Message(StoredModel):
    ticket_id: str
    reseller_id: str
    # Who the message was for when it came (backend/reports): the ticket's department, holder
    # and connection at its store; none on notes.
    department_id: str | None = None
    agent_id: str | None = None
    channel: str | None = None
    direction: str  # in, out, or note (messages/notes.py)
    sender_type: str
    sender_id: str | None = None
    sender_name: str = ""
    type: str = "text"
    body: str = ""
    media: MessageMedia | None = None
    quoted: Quoted | None = None
    # The provider's shared location and contact cards, kept as it parsed them.
    location: dict[str, Any] | None = None
    contacts: list[dict[str, Any]] | None = None
    # Delivery: pending → sent → delivered → read, or failed; received, internal. Each move also
    # sets `<status>_at` (repository.move_status_internal), as a move sets `moved_at`: unread here.
    status: str
    created_at: datetime
    failure_reason: str | None = None
    # The provider's message (received ones, and a sent one once the provider took it).
    connection_id: str | None = None
    provider_message_id: str | None = None
    provider_sent_at: datetime | None = None
    truncated: list[str] | None = None  # the fields sanitize cut to store it
    # Set when it raced a finalize and was moved on from that ticket (messages.service).
    moved_from_ticket_id: str | None = None
    # Sent by the helpdesk itself (backend/automation).
    automatic: bool = False
    automatic_purpose: str | None = None
    menu_options: list[str] | None = None
    rating: int | None = None  # a client's answer to the survey of its finalized ticket
    # A change made to an earlier message (types "edit", "revoke", "reaction"): that message's id.
    # Filed beside it, in its ticket, whatever state that ticket is in (messages.service.record_change).
    annotates: str | None = None
    # The scheduled message it was sent for (backend/scheduled): its author is told should it fail.
    scheduled_id: str | None = None

    def stored(self) -> dict[str, Any]:
        """Only the fields its writer named: a message keeps the shape it always had (an absent
        field reads as its default)."""
        return self.model_dump(by_alias=True, exclude_unset=True)
