"""The reports API's shapes: figures for a period in the reseller's timezone."""

from dataclasses import dataclass
from datetime import date

from pydantic import BaseModel, Field


@dataclass(frozen=True)
class ReportFilters:
    """What the dashboard narrows its figures to (None: every one). Read from the query by
    reports/deps.py; the summary, the agents table and the exports honour each of them. An id of
    another tenant, or of nothing, matches nothing: an empty answer, never a 404 that would
    confirm which ids exist elsewhere."""

    department_id: str | None = None
    agent_id: str | None = None
    connection_id: str | None = None


class Quantiles(BaseModel):
    """Exact over the period and filters; null when there is no value."""

    median: float | None = None
    p90: float | None = None


class Satisfaction(BaseModel):
    """The clients' 1-5 ratings given in the period (counted on the day the client rated)."""

    average: float | None = Field(None, description="mean grade, 2 decimals; null without ratings")
    count: int = 0
    distribution: dict[str, int] = Field(
        default_factory=lambda: {str(g): 0 for g in range(1, 6)}, description='ratings per grade, keys "1" to "5"'
    )


class ReportFigures(BaseModel):
    opened: int = 0
    assumed: int = 0
    transferred: int = 0
    finalized: int = 0
    waiting_now: int = 0
    oldest_wait_seconds: float | None = Field(None, description="now minus the oldest waiting ticket's queue entry")
    first_response_seconds: Quantiles = Field(default_factory=Quantiles)
    resolution_seconds: Quantiles = Field(default_factory=Quantiles)
    messages_in: int = 0
    messages_out: int = 0
    satisfaction: Satisfaction = Field(default_factory=Satisfaction)


class DayVolume(BaseModel):
    date: date
    opened: int = 0
    finalized: int = 0
    messages_in: int = 0
    messages_out: int = 0


class ReportSummary(ReportFigures):
    period_from: date
    period_to: date
    timezone: str
    per_day: list[DayVolume] = Field(description="every local day of the period, in order")
    per_hour: list[int] = Field(description="tickets opened per local hour of day, 0-23")
    per_hour_messages_in: list[int] = Field(description="client messages per local hour of day, 0-23")


class AgentReport(ReportFigures):
    agent_id: str
    agent_name: str


class AgentReportList(BaseModel):
    items: list[AgentReport]
