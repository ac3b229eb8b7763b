from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import StringConstraints, model_validator

from backend.core.pagination import Page
from backend.core.schemas import InputModel, ObjectIdStr, ReadModel, Timestamp

MessageBody = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4096)]


class TicketCreate(InputModel):
    client_id: ObjectIdStr
    department_id: ObjectIdStr
    message: MessageBody
    # A WhatsApp connection: the message is sent to the client on it as the creator's message,
    # and the ticket opens atendendo with the creator. Without it the message is an internal
    # note (nothing can reach the client) and the ticket waits in espera.
    connection_id: ObjectIdStr | None = None


class TicketTransfer(InputModel):
    """Exactly one target: an agent (stays atendendo) or a department queue (back to espera)."""

    agent_id: ObjectIdStr | None = None
    department_id: ObjectIdStr | None = None

    @model_validator(mode="after")
    def _one_target(self) -> "TicketTransfer":
        if (self.agent_id is None) == (self.department_id is None):
            raise ValueError("give exactly one of agent_id or department_id")
        return self


class TicketRead(ReadModel):
    id: str
    number: int
    status: Literal["espera", "atendendo", "finalizado"]
    reseller_id: str
    client_id: str
    client_name: str = ""
    client_phone: str = ""
    department_id: str
    agent_id: str | None = None
    agent_name: str | None = None
    channel: str
    version: int
    last_message_at: Timestamp
    last_message_preview: str = ""
    last_message_direction: str | None = None
    # The last message was sent by the helpdesk itself (greeting, menu, closing...: backend/automation).
    last_message_automatic: bool = False
    created_at: Timestamp
    updated_at: Timestamp
    finalized_at: Timestamp | None = None
    # Who finalized it, as stored (None while open): an agent keeps seeing the tickets it
    # finalized, also one finalized straight from espera (tickets/visibility.py), and the
    # realtime cache applies that same rule to the tickets events carry.
    finalized_by: str | None = None
    tags: list[str] = []
    # "Reabrir" (tickets.service.reopen): the ticket this one reopens, and the one reopening it
    # (the latter only on a single ticket's read).
    reopened_from_ticket_id: str | None = None
    reopened_as_ticket_id: str | None = None
    # Why a reply cannot reach the client now, None when it can (single ticket's read only).
    reply_blocked: Literal["no_connection", "connection_inactive", "connection_disconnected"] | None = None
    # For the user the API answers (client messages since that user last read the ticket,
    # backend/unread); realtime frames carry it only in that user's own `ticket.read`.
    unread_count: int = 0
    # Automatic messages (backend/automation): the client wrote outside business hours when the
    # ticket opened; the connection's department menu awaits the client's answer (the ticket waits
    # in espera of the connection's default department meanwhile); the 1-5 satisfaction rating.
    out_of_hours: bool = False
    menu_pending: bool = False
    rating: int | None = None


TicketPage = Page[TicketRead]


@dataclass(frozen=True)
class TicketFilters:
    """The inbox's filters beyond status and department (GET /tickets)."""

    agent_id: str | None = None
    connection_id: str | None = None
    tag: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    # Calendar days of the company's timezone, both inclusive (service.list_page places them).
    opened_from_day: date | None = None
    opened_to_day: date | None = None


class TicketCounts(ReadModel):
    espera: int
    atendendo: int
    finalizado: int
