"""Thread routes that are not plain messages: internal notes (backend/messages/notes.py)."""

from fastapi import APIRouter

from backend.auth.deps import TenantStaffActor
from backend.core.deps import Db, IdempotencyKey
from backend.core.errors import ROLE, WITH_BODY, responses
from backend.messages import notes
from backend.messages.schemas import MessageCreate, MessageRead

router = APIRouter(prefix="/tickets", tags=["tickets"], responses=ROLE)


@router.post(
    "/{ticket_id}/notes", status_code=201, operation_id="tickets-post_note", responses=WITH_BODY | responses(404)
)
async def post_note(
    db: Db, actor: TenantStaffActor, ticket_id: str, body: MessageCreate, idempotency_key: IdempotencyKey = None
) -> MessageRead:
    """`Idempotency-Key`: an attempt repeated with the same key answers the note the first one
    stored, and stores no second one."""
    return await notes.add(db, actor, ticket_id=ticket_id, body=body.body, idempotency_key=idempotency_key)
