"""How a conversation enters: the one function the API and inbound WhatsApp ingestion call."""

from typing import Any

from backend.clients import service as clients
from backend.core.db import Database
from backend.core.errors import Conflict, NotFound, Unprocessable
from backend.core.tenancy import Actor
from backend.departments import service as departments
from backend.messages import service as messages
from backend.tickets import service as tickets
from backend.tickets.schemas import TicketCreate, TicketRead

API_CHANNEL = "api"


async def receive_client_message(
    db: Database,
    *,
    reseller_id: str,
    client: dict[str, Any],
    department_id: str,
    channel: str,
    body: str,
    message_id: str | None = None,
    type_: str = "text",
    media: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    actor_id: str | None = None,
    actor_role: str | None = None,
    from_me: bool = False,
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """Appends an incoming client message to the client's open ticket on `channel`, opening one
    in espera when there is none. Returns (ticket, message, ticket_created), `ticket` being the
    one the message is filed under: when a finalize came between the look-up and the append,
    messages.append moved it on to the client's next ticket (see backend/messages/service.py).

    `from_me`: a message sent from the connection's own phone, outside IAZE (WhatsApp fromMe).
    It is recorded in the client's conversation as outgoing, sender_type "system" (no IAZE agent
    wrote it), status "sent" (it already left the phone)."""
    ticket, created = await tickets.open_for_client(
        db,
        reseller_id=reseller_id,
        client=client,
        department_id=department_id,
        channel=channel,
        actor_id=actor_id,
        actor_role=actor_role,
    )
    message, _ = await messages.append(
        db,
        ticket,
        direction="out" if from_me else "in",
        sender_type="system" if from_me else "client",
        sender_id=None if from_me else client["_id"],
        sender_name="WhatsApp" if from_me else client.get("name", ""),
        body=body,
        status="sent" if from_me else "received",
        message_id=message_id,
        type_=type_,
        media=media,
        extra=extra,
    )
    if message["ticket_id"] != ticket["_id"]:
        filed = await tickets.load(db, str(message["ticket_id"]))
        assert filed is not None
        ticket = filed
    return ticket, message, created


async def create_from_api(db: Database, actor: Actor, *, data: TicketCreate) -> TicketRead:
    assert actor.reseller_id
    client = await clients.get_doc_or_404(db, actor, client_id=data.client_id)
    dept = await departments.get_in_tenant(db, actor.reseller_id, data.department_id)
    if dept is None:
        raise NotFound("department not found")
    if not dept.get("active"):
        raise Unprocessable("department is inactive")
    existing, created = await tickets.open_for_client(
        db,
        reseller_id=actor.reseller_id,
        client=client,
        department_id=data.department_id,
        channel=API_CHANNEL,
        actor_id=actor.id,
        actor_role=actor.role,
    )
    if not created:
        raise Conflict({"message": "client already has an open ticket", "ticket_id": existing["_id"]})
    ticket, _, _ = await receive_client_message(
        db,
        reseller_id=actor.reseller_id,
        client=client,
        department_id=data.department_id,
        channel=API_CHANNEL,
        body=data.message,
    )
    fresh = await tickets.load(db, ticket["_id"])
    assert fresh is not None
    return TicketRead.from_doc(fresh)
