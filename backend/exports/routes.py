from collections.abc import AsyncIterator, Callable
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from backend.auth.deps import StaffActor
from backend.core.deps import AppSettings, Db
from backend.core.errors import ROLE, responses
from backend.exports import service
from backend.reports.deps import Filters

router = APIRouter(prefix="/exports", tags=["exports"], responses=ROLE | responses(404, 429))

From = Annotated[date, Query(alias="from", description="first day (YYYY-MM-DD, the reseller's timezone)")]
To = Annotated[date, Query(alias="to", description="last day, inclusive")]
ResellerId = Annotated[
    str | None, Query(pattern=r"^[0-9a-f]{24}$", description="the reseller to export (platform admin only)")
]
CSV_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "UTF-8 with BOM, `;`"}
}


def _gate(request: Request, settings: AppSettings) -> service.ExportGate:
    gate: service.ExportGate | None = getattr(request.app.state, "export_gate", None)
    if gate is None:
        gate = request.app.state.export_gate = service.ExportGate(settings.EXPORT_MAX_CONCURRENT)
    return gate


Exporter = Callable[[Callable[..., AsyncIterator[str]], str], StreamingResponse]


async def _exporter(
    request: Request,
    db: Db,
    settings: AppSettings,
    actor: StaffActor,
    first: From,
    last: To,
    filters: Filters,
    reseller_id: ResellerId = None,
) -> Exporter:
    """Both files' one path: who, which days and filters (the dashboard's), a free export slot,
    then the rows as they are read."""
    scope, tz = await service.scope_for(db, actor, reseller_id=reseller_id)
    when = service.period(first, last, tz)

    def export(rows: Callable[..., AsyncIterator[str]], name: str) -> StreamingResponse:
        gate = _gate(request, settings)
        gate.admit()
        body = gate.run(rows(db, scope, when, filters=filters, batch=settings.EXPORT_BATCH_ROWS))
        response = StreamingResponse(body, media_type="text/csv; charset=utf-8")
        filename = service.filename(name, (first, last), filters)
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        response.headers["Cache-Control"] = "no-store"
        return response

    return export


Export = Annotated[Exporter, Depends(_exporter)]


@router.get("/tickets.csv", operation_id="exports-tickets", response_class=StreamingResponse, responses=CSV_ANSWER)
async def export_tickets(export: Export) -> StreamingResponse:
    """Tickets opened in the period inside the filters (one row each), streamed as they are read."""
    return export(service.tickets_csv, "tickets")


@router.get("/messages.csv", operation_id="exports-messages", response_class=StreamingResponse, responses=CSV_ANSWER)
async def export_messages(export: Export) -> StreamingResponse:
    """Conversation messages written in the period inside the filters (internal notes left out),
    streamed as they are read."""
    return export(service.messages_csv, "mensagens")
