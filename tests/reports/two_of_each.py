"""A tenant with two of each filter's subjects — departments, agents, WhatsApp connections — and one
client ticket on each side (ticket 0: department 0, connection 0, held and answered by agent 0;
ticket 1: the same with 1), plus another tenant's ids: what the per-agent report's and the
exports' filter tests narrow and compare against the summary."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from tests.factories import API, Tenant, assume, make_client_ticket, make_open_connection, make_tenant

SP = ZoneInfo("America/Sao_Paulo")  # the tenants' timezone by default


@dataclass
class TwoOfEach:
    tenant: Tenant
    other: Tenant
    connections: list[str]  # the tenant's two connection ids
    tickets: list[dict[str, Any]]  # ticket i: department i, connection i, agent i
    other_connection: str

    def side(self, i: int) -> dict[str, str]:
        """Each filter pointing at side `i` (0 or 1), by its query name."""
        return {
            "department_id": self.tenant.departments[i]["id"],
            "agent_id": self.tenant.agents[i]["id"],
            "connection_id": self.connections[i],
        }

    def foreign(self) -> dict[str, str]:
        """Each filter pointing at the other tenant's department, agent and connection."""
        return {
            "department_id": self.other.departments[0]["id"],
            "agent_id": self.other.agents[0]["id"],
            "connection_id": self.other_connection,
        }


def around_today() -> dict[str, str]:
    today = datetime.now(SP).date()
    return {"from": (today - timedelta(days=1)).isoformat(), "to": (today + timedelta(days=1)).isoformat()}


async def make_two_of_each(client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any) -> TwoOfEach:
    tenant = await make_tenant(client, admin_headers, departments=2, agents=2)
    other = await make_tenant(client, admin_headers, departments=1, agents=1)
    connections = [await make_open_connection(client, tenant, db) for _ in range(2)]
    tickets = []
    for i in range(2):
        ticket = await make_client_ticket(
            client, tenant, db, department_id=tenant.departments[i]["id"], connection=connections[i], signed=True
        )
        agent = tenant.agents[i]["headers"]
        await assume(client, agent, ticket["id"])
        r = await client.post(f"{API}/tickets/{ticket['id']}/messages", json={"body": f"resposta {i}"}, headers=agent)
        assert r.status_code == 201, r.text
        tickets.append(ticket)
    theirs = await make_open_connection(client, other, db)
    await make_client_ticket(client, other, db, connection=theirs, signed=True)
    return TwoOfEach(tenant, other, [c["_id"] for c in connections], tickets, theirs["_id"])
