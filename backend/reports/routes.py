from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from backend.auth.deps import StaffActor
from backend.core.deps import Db
from backend.core.errors import ROLE, responses
from backend.reports import service
from backend.reports.deps import Filters
from backend.reports.schemas import AgentReportList, ReportSummary

router = APIRouter(prefix="/reports", tags=["reports"], responses=ROLE)

From = Annotated[date | None, Query(alias="from", description="first local day (YYYY-MM-DD), inclusive")]
To = Annotated[date | None, Query(alias="to", description="last local day (YYYY-MM-DD), inclusive")]
ResellerId = Annotated[str | None, Query(pattern=r"^[0-9a-f]{24}$", description="the platform admin's tenant")]


@router.get("/summary", operation_id="reports-summary", responses=responses(404, 422))
async def report_summary(
    db: Db, actor: StaffActor, filters: Filters, from_: From = None, to: To = None, reseller_id: ResellerId = None
) -> ReportSummary:
    return await service.summary(db, actor, start=from_, end=to, filters=filters, reseller_id=reseller_id)


@router.get("/agents", operation_id="reports-agents", responses=responses(404, 422))
async def report_agents(
    db: Db, actor: StaffActor, filters: Filters, from_: From = None, to: To = None, reseller_id: ResellerId = None
) -> AgentReportList:
    """One row per agent with activity in the period, narrowed by the same filters as the summary."""
    return await service.agents(db, actor, start=from_, end=to, filters=filters, reseller_id=reseller_id)
