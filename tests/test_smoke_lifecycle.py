import asyncio

import httpx

from tests.factories import make_tenant, make_ticket


async def test_fifty_concurrent_assumes_have_exactly_one_winner(client: httpx.AsyncClient, admin_headers, db) -> None:
    tenant = await make_tenant(client, admin_headers, agents=5)
    ticket = await make_ticket(client, tenant)
    heads = [tenant.agents[i % 5]["headers"] for i in range(50)]
    results = await asyncio.gather(*(client.post(f"/api/v1/tickets/{ticket['id']}/assume", headers=h) for h in heads))
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 1 and codes.count(409) == 49, codes
    assumed = await db.ticket_events.count_documents({"ticket_id": ticket["id"], "type": "assumed"})
    assert assumed == 1
