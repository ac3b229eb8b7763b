"""What an export row reads of a stored document: projections of tickets, messages and ticket
events, typed like the documents they are cut from (the fields the projection names are the
model's own, so the two cannot drift apart)."""

from datetime import datetime

from backend.core.schemas import StoredModel
from backend.messages.models import MessageMedia


class TicketRow(StoredModel):
    number: int | None = None
    status: str | None = None
    client_name: str | None = None
    client_phone: str | None = None
    department_id: str | None = None
    agent_id: str | None = None
    agent_name: str | None = None
    channel: str | None = None
    created_at: datetime | None = None
    finalized_at: datetime | None = None
    rating: int | None = None


class MessageRow(StoredModel):
    ticket_id: str
    # Optional as stored: a row shows an empty cell rather than refuse an odd old document.
    direction: str | None = None
    sender_type: str | None = None
    sender_name: str | None = None
    type: str | None = None
    body: str | None = None
    status: str | None = None
    created_at: datetime | None = None
    media: MessageMedia | None = None


class AssumeMark(StoredModel):
    """An assume event: when its ticket was taken."""

    ticket_id: str
    at: datetime


def fields_of(model: type[StoredModel]) -> dict[str, int]:
    """The projection that reads `model`'s fields and nothing else."""
    return {name: 1 for name in model.model_fields if name != "id"}
