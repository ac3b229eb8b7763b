"""The dashboard's filters as query parameters: one definition, read by the summary, the agents
table and the CSV exports (backend/exports/routes.py), so each validates and names them alike."""

from typing import Annotated

from fastapi import Depends, Query

from backend.core.pagination import OptionalId
from backend.reports.schemas import ReportFilters

ConnectionId = Annotated[str | None, Query(min_length=1, max_length=64)]


def _filters(
    department_id: OptionalId = None, agent_id: OptionalId = None, connection_id: ConnectionId = None
) -> ReportFilters:
    return ReportFilters(department_id=department_id, agent_id=agent_id, connection_id=connection_id)


Filters = Annotated[ReportFilters, Depends(_filters)]
