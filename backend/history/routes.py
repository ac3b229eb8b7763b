"""Read-only views of a client's other tickets, authorized through the ticket in the URL."""

from fastapi import APIRouter

from backend.auth.deps import TenantStaffActor
from backend.core.deps import Db
from backend.core.errors import ROLE, responses
from backend.core.pagination import DEFAULT_LIMIT, Limit
from backend.history import service
from backend.messages.schemas import MessagePage
from backend.tickets.schemas import TicketPage, TicketRead

router = APIRouter(prefix="/tickets", tags=["tickets"], responses=ROLE)


@router.get("/{ticket_id}/history", operation_id="tickets-history", responses=responses(404))
async def client_history(
    db: Db, actor: TenantStaffActor, ticket_id: str, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT
) -> TicketPage:
    return await service.other_tickets(db, actor, ticket_id=ticket_id, cursor=cursor, limit=limit)


@router.get("/{ticket_id}/history/{other_id}", operation_id="tickets-history_ticket", responses=responses(404))
async def client_history_ticket(db: Db, actor: TenantStaffActor, ticket_id: str, other_id: str) -> TicketRead:
    return await service.other_ticket(db, actor, ticket_id=ticket_id, other_id=other_id)


@router.get(
    "/{ticket_id}/history/{other_id}/messages", operation_id="tickets-history_messages", responses=responses(404)
)
async def client_history_messages(
    db: Db,
    actor: TenantStaffActor,
    ticket_id: str,
    other_id: str,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> MessagePage:
    return await service.other_messages(db, actor, ticket_id=ticket_id, other_id=other_id, cursor=cursor, limit=limit)
