from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from backend.auth.deps import StaffActor
from backend.core.deps import Db
from backend.core.errors import ROLE, responses
from backend.reports import service
from backend.reports.schemas import AgentReportList, ReportSummary

router = APIRouter(prefix="/reports", tags=["reports"], responses=ROLE)

OptionalId = Annotated[str | None, Query(pattern=r"^[0-9a-f]{24}$")]
From = Annotated[date | None, Query(alias="from", description="first local day (YYYY-MM-DD), inclusive")]
To = Annotated[date | None, Query(alias="to", description="last local day (YYYY-MM-DD), inclusive")]
ResellerId = Annotated[str | None, Query(pattern=r"^[0-9a-f]{24}$", description="the platform admin's tenant")]


@router.get("/summary", operation_id="reports-summary", responses=responses(404, 422))
async def report_summary(
    db: Db,
    actor: StaffActor,
    from_: From = None,
    to: To = None,
    department_id: OptionalId = None,
    agent_id: OptionalId = None,
    connection_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    reseller_id: ResellerId = None,
) -> ReportSummary:
    return await service.summary(
        db,
        actor,
        start=from_,
        end=to,
        department_id=department_id,
        agent_id=agent_id,
        connection_id=connection_id,
        reseller_id=reseller_id,
    )


@router.get("/agents", operation_id="reports-agents", responses=responses(404, 422))
async def report_agents(
    db: Db, actor: StaffActor, from_: From = None, to: To = None, reseller_id: ResellerId = None
) -> AgentReportList:
    return await service.agents(db, actor, start=from_, end=to, reseller_id=reseller_id)
