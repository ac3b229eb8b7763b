from datetime import date

from pydantic import BaseModel, Field

from backend.connections.providers.base import ConnectionStatus


class TicketsByStatus(BaseModel):
    espera: int
    atendendo: int
    finalizado: int


class ConnectionSummary(BaseModel):
    id: str
    name: str
    status: ConnectionStatus
    active: bool
    last_error: str | None = None


class ResellerOverview(BaseModel):
    id: str
    name: str
    active: bool
    timezone: str
    tickets: TicketsByStatus = Field(description="now, per status")
    messages_in: int = Field(description="client messages in the period (the reseller's local days)")
    messages_out: int = Field(description="messages to the client in the period")
    connections: list[ConnectionSummary]


class AdminOverview(BaseModel):
    period_from: date
    period_to: date
    items: list[ResellerOverview]
