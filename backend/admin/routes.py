from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from backend.admin import service
from backend.admin.schemas import AdminOverview
from backend.auth.deps import AdminActor
from backend.core.deps import Db
from backend.core.errors import ROLE

router = APIRouter(prefix="/admin", tags=["admin"], responses=ROLE)


@router.get("/overview", operation_id="admin-overview")
async def admin_overview(
    db: Db,
    actor: AdminActor,
    first: Annotated[date | None, Query(alias="from", description="first day (YYYY-MM-DD)")] = None,
    last: Annotated[date | None, Query(alias="to", description="last day, inclusive")] = None,
) -> AdminOverview:
    """Every reseller: tickets by status now, messages in/out over the period (default: the last 7
    days), and its WhatsApp connections' status."""
    return await service.overview(db, actor, first=first, last=last)
