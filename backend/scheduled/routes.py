from fastapi import APIRouter

from backend.auth.deps import StaffActor, TenantStaffActor
from backend.core.deps import Db
from backend.core.errors import ROLE, WITH_BODY, responses
from backend.core.pagination import DEFAULT_LIMIT, Limit, OptionalId
from backend.scheduled import service
from backend.scheduled.models import ScheduleStatus
from backend.scheduled.schemas import ScheduledMessageCreate, ScheduledMessagePage, ScheduledMessageRead

router = APIRouter(tags=["scheduled-messages"], responses=ROLE)


@router.post(
    "/tickets/{ticket_id}/scheduled-messages",
    status_code=201,
    operation_id="scheduled_messages-create",
    responses=WITH_BODY | responses(404, 409),
)
async def schedule_message(
    db: Db, actor: TenantStaffActor, ticket_id: str, body: ScheduledMessageCreate
) -> ScheduledMessageRead:
    """The person holding the ticket schedules a reply: sent into this ticket at `send_at` (at
    least 30 s and at most a year ahead) as their message, unless canceled or the ticket is
    finalized first."""
    return await service.schedule(db, actor, ticket_id=ticket_id, data=body)


@router.get("/tickets/{ticket_id}/scheduled-messages", operation_id="scheduled_messages-list", responses=responses(404))
async def list_scheduled_messages(db: Db, actor: StaffActor, ticket_id: str) -> ScheduledMessagePage:
    """The ticket's scheduled messages, whatever became of them, soonest first."""
    return await service.list_for_ticket(db, actor, ticket_id=ticket_id)


@router.get("/scheduled-messages", operation_id="scheduled_messages-list_all")
async def list_all_scheduled_messages(
    db: Db,
    actor: TenantStaffActor,
    status: ScheduleStatus | None = None,
    author_id: OptionalId = None,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> ScheduledMessagePage:
    """The tenant's scheduled messages, soonest first: the reseller sees everyone's (`author_id`
    narrows it to one person's), an agent the ones they wrote."""
    return await service.list_page(db, actor, status=status, author_id=author_id, cursor=cursor, limit=limit)


@router.post(
    "/scheduled-messages/{schedule_id}/cancel",
    operation_id="scheduled_messages-cancel",
    responses=responses(404, 409),
)
async def cancel_scheduled_message(db: Db, actor: TenantStaffActor, schedule_id: str) -> ScheduledMessageRead:
    """Its author, the ticket's holder or the reseller cancels it while it waits (409 once it was
    sent or failed; canceled again, it answers as it is)."""
    return await service.cancel(db, actor, schedule_id=schedule_id)


@router.post(
    "/scheduled-messages/{schedule_id}/replace",
    status_code=201,
    operation_id="scheduled_messages-replace",
    responses=WITH_BODY | responses(404, 409),
)
async def replace_scheduled_message(
    db: Db, actor: TenantStaffActor, schedule_id: str, body: ScheduledMessageCreate
) -> ScheduledMessageRead:
    """Its author edits a scheduled message still waiting: a new one (`replaces` names the old)
    takes its place, with the same checks as scheduling now, and the old one is canceled
    ("edited", `replaced_by` names the new). 409 once it was sent, canceled or failed: exactly one
    of the two is ever sent."""
    return await service.replace(db, actor, schedule_id=schedule_id, data=body)
