from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, Request

from backend.audit.schemas import TicketEventPage
from backend.auth.deps import StaffActor, TenantStaffActor
from backend.core.deps import AppSettings, Db, IdempotencyKey
from backend.core.errors import ROLE, WITH_BODY, responses
from backend.core.pagination import DEFAULT_LIMIT, Limit, OptionalId
from backend.core.schemas import CalendarDay
from backend.messages import service as messages
from backend.messages import uploads
from backend.messages.schemas import MessageCreate, MessageEdit, MessagePage, MessageRead, ReactionCreate
from backend.tags.schemas import normalize_tag
from backend.tickets import intake, presenter, reads, service
from backend.tickets.schemas import TicketCounts, TicketCreate, TicketFilters, TicketPage, TicketRead, TicketTransfer
from backend.tickets.states import Status

router = APIRouter(prefix="/tickets", tags=["tickets"], responses=ROLE)


@router.post("", status_code=201, operation_id="tickets-create", responses=WITH_BODY | responses(404, 409))
async def create_ticket(db: Db, actor: TenantStaffActor, body: TicketCreate) -> TicketRead:
    return await intake.create_from_api(db, actor, data=body)


@router.get("", operation_id="tickets-list", responses=responses(404))  # 404: `reseller_id` of another company
async def list_tickets(
    db: Db,
    actor: StaffActor,
    status: Status | None = None,
    department_id: OptionalId = None,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    q: Annotated[
        str | None, Query(min_length=1, max_length=64, description="#number, client name or phone, message text")
    ] = None,
    agent_id: OptionalId = None,
    connection_id: OptionalId = None,
    tag: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    created_from: Annotated[datetime | None, Query(description="opened at or after")] = None,
    created_to: Annotated[datetime | None, Query(description="opened before")] = None,
    opened_from_day: Annotated[
        CalendarDay | None, Query(description="opened on this day (YYYY-MM-DD, the company's timezone) or later")
    ] = None,
    opened_to_day: Annotated[
        CalendarDay | None, Query(description="opened on this day (YYYY-MM-DD, the company's timezone) or earlier")
    ] = None,
    reseller_id: OptionalId = None,  # the admin's: one company's tickets
) -> TicketPage:
    filters = TicketFilters(
        agent_id=agent_id,
        connection_id=connection_id,
        tag=normalize_tag(tag) if tag else None,
        created_from=created_from,
        created_to=created_to,
        opened_from_day=opened_from_day,
        opened_to_day=opened_to_day,
    )
    return await service.list_page(
        db,
        actor,
        status=status,
        department_id=department_id,
        cursor=cursor,
        limit=limit,
        q=q,
        filters=filters,
        reseller_id=reseller_id,
    )


@router.get("/counts", operation_id="tickets-counts")
async def ticket_counts(db: Db, actor: StaffActor, department_id: OptionalId = None) -> TicketCounts:
    return await service.counts(db, actor, department_id=department_id)


@router.get("/{ticket_id}", operation_id="tickets-get", responses=responses(404))
async def get_ticket(db: Db, actor: StaffActor, ticket_id: str) -> TicketRead:
    ticket = await service.get_visible_or_404(db, actor, ticket_id=ticket_id)
    return await presenter.read_one(db, ticket, reader=actor)


@router.post("/{ticket_id}/read", operation_id="tickets-mark_read", responses=responses(404))
async def mark_ticket_read(
    db: Db, actor: StaffActor, settings: AppSettings, later: BackgroundTasks, ticket_id: str
) -> TicketRead:
    """The caller has seen the ticket's thread up to now: its `unread_count` for the caller
    clears (the screen calls this when it shows the thread, and when a client message arrives
    in the thread it shows). Announced to the caller's other sockets as `ticket.read`; when the
    caller holds the ticket, the client's phone shows the messages read (`read_receipts`)."""
    return await reads.mark_read(db, actor, ticket_id=ticket_id, settings=settings, later=later)


@router.post("/{ticket_id}/assume", operation_id="tickets-assume", responses=responses(404, 409))
async def assume_ticket(
    db: Db, actor: StaffActor, settings: AppSettings, later: BackgroundTasks, ticket_id: str
) -> TicketRead:
    """The caller takes the ticket; what it read of the thread before (the screen opens a ticket
    before its Assumir) is acknowledged to the client's phone as its holder's (`read_receipts`)."""
    taken = await service.assume(db, actor, ticket_id=ticket_id)
    later.add_task(reads.acknowledge_taken, db, settings, ticket_id=taken.id, holder_id=actor.id)
    return taken


@router.post("/{ticket_id}/transfer", operation_id="tickets-transfer", responses=WITH_BODY | responses(404, 409))
async def transfer_ticket(
    db: Db, actor: TenantStaffActor, settings: AppSettings, later: BackgroundTasks, ticket_id: str, body: TicketTransfer
) -> TicketRead:
    moved = await service.transfer(
        db, actor, ticket_id=ticket_id, agent_id=body.agent_id, department_id=body.department_id
    )
    if moved.agent_id is not None:  # to a person: what it read of the thread is acknowledged as its holder's
        later.add_task(reads.acknowledge_taken, db, settings, ticket_id=moved.id, holder_id=moved.agent_id)
    return moved


@router.post("/{ticket_id}/finalize", operation_id="tickets-finalize", responses=responses(404, 409))
async def finalize_ticket(db: Db, actor: StaffActor, ticket_id: str) -> TicketRead:
    return await service.finalize(db, actor, ticket_id=ticket_id)


@router.post("/{ticket_id}/reopen", status_code=201, operation_id="tickets-reopen", responses=responses(404, 409))
async def reopen_ticket(db: Db, actor: TenantStaffActor, ticket_id: str) -> TicketRead:
    """ "Reabrir" a finalized ticket: a new ticket for the same client and channel, atendendo
    with the caller, linked both ways (`reopened_from_ticket_id` / `reopened_as_ticket_id`).
    409 when the ticket is open, was reopened already, or the client has an open ticket on the
    channel (`detail.ticket_id` names it)."""
    return await service.reopen(db, actor, ticket_id=ticket_id)


@router.get("/{ticket_id}/messages", operation_id="tickets-list_messages", responses=responses(404))
async def list_messages(
    db: Db, actor: StaffActor, ticket_id: str, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT
) -> MessagePage:
    return await messages.list_page(db, actor, ticket_id=ticket_id, cursor=cursor, limit=limit)


@router.post(
    "/{ticket_id}/messages",
    status_code=201,
    operation_id="tickets-post_message",
    responses=WITH_BODY | responses(404, 409),
    openapi_extra={"requestBody": uploads.REPLY_REQUEST_BODY},
)
async def post_message(
    db: Db, actor: StaffActor, ticket_id: str, request: Request, idempotency_key: IdempotencyKey = None
) -> MessageRead:
    """A text reply (JSON `{"body", "quoted_message_id"?}`), or a file with an optional caption
    (`multipart/form-data`: `file`, `body`, `quoted_message_id`; 413 past WhatsApp's limit).
    `Idempotency-Key`: an attempt repeated with the same key answers the reply the first one
    stored, and nothing is stored or sent again (`messages.keyed_reply_id`)."""
    if uploads.is_multipart(request):
        return await uploads.reply_with_file(
            db, actor, ticket_id=ticket_id, request=request, idempotency_key=idempotency_key
        )
    body = await uploads.json_body(request, MessageCreate)
    return await messages.reply(
        db,
        actor,
        ticket_id=ticket_id,
        body=body.body,
        quoted_message_id=body.quoted_message_id,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/{ticket_id}/messages/{message_id}/reaction",
    status_code=201,
    operation_id="tickets-react",
    responses=WITH_BODY | responses(404, 409),
)
async def react(db: Db, actor: StaffActor, ticket_id: str, message_id: str, body: ReactionCreate) -> MessageRead:
    """The holder reacts to a WhatsApp message of the ticket (`{"emoji": "👍"}`; `""` takes the
    reaction back): the reaction is recorded in the thread and sent like a reply."""
    return await messages.react(db, actor, ticket_id=ticket_id, message_id=message_id, emoji=body.emoji)


@router.post(
    "/{ticket_id}/messages/{message_id}/revoke",
    status_code=201,
    operation_id="tickets-revoke",
    responses=responses(404, 409),
)
async def revoke(db: Db, actor: StaffActor, ticket_id: str, message_id: str) -> MessageRead:
    """The holder deletes for everyone a message the connection sent: recorded in the thread (the
    message itself is kept) and sent like a reply."""
    return await messages.revoke(db, actor, ticket_id=ticket_id, message_id=message_id)


@router.post(
    "/{ticket_id}/messages/{message_id}/edit",
    status_code=201,
    operation_id="tickets-edit_message",
    responses=WITH_BODY | responses(404, 409),
)
async def edit_message(db: Db, actor: StaffActor, ticket_id: str, message_id: str, body: MessageEdit) -> MessageRead:
    """The holder corrects the text of a message the connection sent, within WhatsApp's 15 minutes:
    the edit is recorded in the thread beside the message (which keeps its first text) and sent
    like a reply; the client's WhatsApp shows the new text."""
    return await messages.edit(db, actor, ticket_id=ticket_id, message_id=message_id, body=body.body)


@router.get("/{ticket_id}/events", operation_id="tickets-list_events", responses=responses(404))
async def list_events(
    db: Db, actor: StaffActor, ticket_id: str, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT
) -> TicketEventPage:
    return await service.list_events(db, actor, ticket_id=ticket_id, cursor=cursor, limit=limit)
