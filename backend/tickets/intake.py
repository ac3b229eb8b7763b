"""How a conversation enters: the one function the API and inbound WhatsApp ingestion call."""

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from backend.clients import service as clients
from backend.connections import service as connections
from backend.core.db import Database
from backend.core.errors import Conflict, Unauthorized, Unprocessable
from backend.core.tenancy import Actor
from backend.departments import service as departments
from backend.messages import notes
from backend.messages import service as messages
from backend.messages.models import Message
from backend.tickets import presenter, projection
from backend.tickets import service as tickets
from backend.tickets.schemas import TicketCreate, TicketRead
from backend.tickets.visibility import can_see
from backend.unread import service as unread

API_CHANNEL = "api"


class AlreadyStored(Exception):
    """The message (by its deterministic id) is stored already: a redelivery."""

    def __init__(self, message: Message) -> None:
        super().__init__(f"message {message.id} is stored already")
        self.message = message


async def receive_client_message(
    db: Database,
    *,
    reseller_id: str,
    client: clients.User,
    department_id: str,
    channel: str,
    body: str,
    message_id: str | None = None,
    type_: str = "text",
    media: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    from_me: bool = False,
    before_create: Callable[[], Awaitable[None]] | None = None,
    ticket_hint: str | None = None,
    new_client: bool = False,
    opening: tickets.LazyOpening | None = None,
) -> tuple[tickets.Ticket, Message, bool]:
    """Appends an incoming client message to the client's open ticket on `channel`, opening one
    in espera when there is none. Returns (ticket, message, ticket_created), `ticket` being the
    one the message is filed under: when a finalize came between the look-up and the append,
    messages.append moved it on to the client's next ticket (see backend/messages/service.py).

    `from_me`: a message sent from the connection's own phone, outside IAZE (WhatsApp fromMe).
    It is recorded in the client's conversation as outgoing, sender_type "system" (no IAZE agent
    wrote it), status "sent" (it already left the phone).

    Raises AlreadyStored when a message with `message_id` is stored already (nothing is written);
    `before_create` (see tickets.open_for_client) lets a caller with deterministic ids look for it
    before a ticket is opened for it. The ticket is judged by its stored document
    (`projection_only`): append reads the log back after storing the message. `ticket_hint`: the
    ticket the caller last filed this client's message on this channel under; `new_client`: the
    caller has just created the client; `opening`: what a ticket opened for it starts with (all
    three: tickets.open_for_client)."""

    async def opened_by_it() -> tickets.Opening:
        """A ticket this message opens shows it from event v1 (the message then takes the ticket's
        creation time: messages.append writes no activity the ticket already shows)."""
        base = (await opening()) if opening is not None else tickets.Opening()
        preview = projection.Activity.preview_of(body, type_)
        return replace(base, last_message_preview=preview, last_message_direction="in")

    ticket, created = await tickets.open_for_client(
        db,
        reseller_id=reseller_id,
        client=client,
        department_id=department_id,
        channel=channel,
        actor_id=None,  # the client's own message: no staff actor
        actor_role=None,
        projection_only=True,
        before_create=before_create,
        ticket_hint=ticket_hint,
        new_client=new_client,
        opening=opening if from_me else opened_by_it,
    )
    if created:
        unread.starts_empty(db, ticket.id)  # its first client message numbers without a read
    message, stored = await messages.append(
        db,
        ticket,
        **messages.chat_sender(ours=from_me, client_id=client.id, client_name=client.name),
        body=body,
        message_id=message_id,
        type_=type_,
        media=media,
        extra=extra,
        opened=created and not from_me,
    )
    if not stored:
        raise AlreadyStored(message)
    if message.ticket_id != ticket.id:
        filed = await tickets.load(db, message.ticket_id)
        assert filed is not None
        ticket = filed
    elif not created and message_id is not None and ticket.opening_message_id == message_id:
        # An earlier attempt at this delivery opened the ticket for this message and failed
        # before storing it (a store error, a kill), maybe before the ticket's announcement too:
        # announced as it is now, with this message.
        await tickets.announce_created(db, await tickets.load(db, ticket.id) or ticket)
    return ticket, message, created


async def create_from_api(db: Database, actor: Actor, *, data: TicketCreate) -> TicketRead:
    """A ticket staff open. With `connection_id` a conversation the creator starts on WhatsApp:
    the ticket opens atendendo with the creator on that connection's channel — the channel the
    client's answer arrives on, so the answer finds this ticket as the client's open one — and
    the message goes out through the outbox as the creator's, signed like any reply. Without it
    nothing can reach the client: the message is kept as the creator's internal note (never as
    the client's) and the ticket waits in espera.

    Where it ends: a request killed (or a connection lost) between the ticket and its message
    leaves the ticket open with its creator and no message; the request was not acknowledged, and
    a retry gets 409 naming that ticket, where the creator writes again."""
    assert actor.reseller_id
    # A merged client's conversations are the one it was merged into (backend/clients/merge.py):
    # its chat's answer would go there, so the ticket does too.
    client = await clients.followed(db, await clients.get_doc_or_404(db, actor, client_id=data.client_id))
    if not client.active:
        raise Unprocessable("client is inactive")
    dept = await departments.get_or_404(db, actor, department_id=data.department_id)
    if not dept.active:
        raise Unprocessable("department is inactive")
    channel, opening = API_CHANNEL, None
    if data.connection_id is not None:
        conn = await connections.get_doc_or_404(db, actor, connection_id=data.connection_id)
        if not client.phone and not client.whatsapp_lid:  # a LID chat's client is reached by its LID
            raise Unprocessable("the client has no phone number to write to")
        if (blocked := connections.blocked(conn)) is not None:
            raise Conflict({"message": "the connection cannot send now", "reason": blocked})
        channel, opening = conn.id, tickets.Opening(agent_id=actor.id, agent_name=actor.name)
    ticket, created = await tickets.open_for_client(
        db,
        reseller_id=actor.reseller_id,
        client=client,
        department_id=data.department_id,
        channel=channel,
        actor_id=actor.id,
        actor_role=actor.role,
        opening=opening,
    )
    if not created:
        named = {"ticket_id": ticket.id} if can_see(actor, ticket) else {}  # never one it cannot see
        raise Conflict({"message": "client already has an open ticket", **named})
    if opening is not None:
        await messages.send_as_agent(db, actor, ticket, body=data.message)
        if await tickets.hand_back_if_inactive(db, ticket):  # deactivated meanwhile: it waits in the queue
            raise Unauthorized("invalid or expired token")
    else:
        await notes.store(db, actor, ticket, body=data.message, opening=True)
    fresh = await tickets.load(db, ticket.id)
    assert fresh is not None
    # The creator typed the first message itself: it is not news to it.
    await unread.mark_read(db, actor.id, fresh)
    return await presenter.read_one(db, fresh, reader=actor)
