"""The stored shapes of a ticket (collection `tickets`) and of the events it is a projection of
(`ticket_events`, tickets/projection.py), each carrying the `TicketState` it moved the ticket to."""

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, field_validator

from backend.clients.phones import whatsapp_address
from backend.core.schemas import StoredModel


class TicketState(BaseModel):
    """What an event moves; `menu_pending` and `rating` are the client's, through the automatic
    messages (backend/automation). An event logged before a field lacks it: read as its default."""

    status: str  # a tickets.states.Status value
    agent_id: str | None = None
    agent_name: str | None = None
    department_id: str
    finalized_at: datetime | None = None
    finalized_by: str | None = None
    menu_pending: bool = False
    rating: int | None = None


STATE_FIELDS = tuple(TicketState.model_fields)
# Set at creation only when known (tickets.service.Opening), or by a later write.
LATER = {"reopened_from_ticket_id", "opening_message_id", "out_of_hours", "last_message_automatic", "client_lid"}


class Ticket(StoredModel):
    # In the order `stored()` writes them: event v1 carries the document, and the API shows it.
    reseller_id: str
    number: int
    status: str  # a tickets.states.Status value
    client_id: str
    client_name: str = ""
    client_phone: str = ""
    department_id: str
    agent_id: str | None = None
    agent_name: str | None = None
    finalized_at: datetime | None = None
    finalized_by: str | None = None
    channel: str  # "api", or the WhatsApp connection's id
    open_slot: int = 0  # the client's slot on the channel (tickets.service.open_for_client)
    version: int
    created_at: datetime
    updated_at: datetime
    last_message_at: datetime
    last_message_preview: str = ""
    last_message_direction: str | None = None
    menu_pending: bool = False
    rating: int | None = None
    # LATER
    reopened_from_ticket_id: str | None = None
    opening_message_id: str | None = None
    out_of_hours: bool = False
    last_message_automatic: bool = False  # the last message was the helpdesk's own (projection.Activity)
    client_lid: str = ""  # the client's WhatsApp LID when known (backend/clients/phones.py)

    @property
    def client_address(self) -> str:
        """Where the ticket's replies go and what names its chat (backend/clients/phones.py)."""
        return whatsapp_address(self.client_phone, self.client_lid)

    @field_validator("menu_pending", "out_of_hours", mode="before")
    @classmethod
    def _unset_is_false(cls, v: object) -> bool:
        # A projection of an event logged before these fields stores them null.
        return bool(v)

    def stored(self) -> dict[str, Any]:
        """The new document, whole but for the LATER fields its creator left unset (absent)."""
        return self.model_dump(by_alias=True, exclude=LATER - self.model_fields_set)

    def state(self) -> TicketState:
        """What its newest event says (an event's `state`)."""
        return TicketState.model_construct(**{k: getattr(self, k) for k in STATE_FIELDS})


class TicketEvent(StoredModel):
    """As tickets.service logs it, under `_id` "<ticket>:<version>" (audit `event_id`: its uniqueness
    decides races). Every event ever logged has these fields; only its `state` grew."""

    ticket_id: str
    reseller_id: str
    version: int
    type: str
    actor_id: str | None
    actor_role: str | None
    from_status: str | None
    to_status: str
    state: TicketState
    at: datetime
    data: dict[str, Any]

    @classmethod
    def trusted(cls, doc: Mapping[str, Any]) -> Self:
        # model_construct would leave the nested state a dict
        return super().trusted({**doc, "state": TicketState.model_construct(**doc["state"])})
