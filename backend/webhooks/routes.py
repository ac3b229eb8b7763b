from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from pymongo.errors import PyMongoError

from backend.core.deps import AppSettings, Db
from backend.core.errors import API, ServiceUnavailable, responses
from backend.webhooks import service
from backend.webhooks.schemas import WebhookAck

# No body validation (the route reads the raw body): 401 before anything is read, 413 past the
# webhook's limit, 503 when the delivery could not be stored (the provider retries).
router = APIRouter(prefix="/webhooks/whatsapp", tags=["webhooks"], responses=API | responses(401, 413))

Token = Annotated[str | None, Query(alias="t", description="the connection's webhook token")]
TokenHeader = Annotated[str | None, Header(alias="X-Webhook-Token")]


async def _receive(
    db: Db,
    settings: AppSettings,
    request: Request,
    connection_id: str,
    event: str | None,
    t: str | None,
    header: str | None,
) -> WebhookAck:
    try:
        # The token first: an unauthenticated sender never gets its body read.
        conn = await service.authenticate(db, connection_id, header or t)
        body = await request.body()
        outcome, raw_id = await service.store(db, conn, event_hint=event, body=body, lanes=settings.WEBHOOK_LANES)
    except PyMongoError as exc:
        raise ServiceUnavailable("could not store the event; retry") from exc
    return WebhookAck(status=outcome, raw_id=raw_id)


@router.post("/{connection_id}", operation_id="webhooks-whatsapp")
async def whatsapp_webhook(
    db: Db,
    settings: AppSettings,
    request: Request,
    connection_id: str,
    t: Token = None,
    x_webhook_token: TokenHeader = None,
) -> WebhookAck:
    """Evolution posts every event here (webhook_by_events off, as the backend configures it).
    Answers once the delivery is stored; it is processed right after, in order per chat."""
    return await _receive(db, settings, request, connection_id, None, t, x_webhook_token)


@router.post("/{connection_id}/{event}", operation_id="webhooks-whatsapp_event")
async def whatsapp_webhook_event(
    db: Db,
    settings: AppSettings,
    request: Request,
    connection_id: str,
    event: str,
    t: Token = None,
    x_webhook_token: TokenHeader = None,
) -> WebhookAck:
    """The per-event form (`…/messages-upsert`, `…/connection-update`, …) of webhook_by_events."""
    return await _receive(db, settings, request, connection_id, event, t, x_webhook_token)
