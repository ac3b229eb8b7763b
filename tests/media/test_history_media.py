"""Media in a client's history: whoever reads a history message (backend/history) downloads its
attachment; whoever cannot read it, in this tenant or another, gets 404; the retry action stays
with those who see the ticket itself (the history is read-only)."""

from typing import Any

import httpx
import pytest

from tests.factories import API, Tenant, assume, make_agent, make_department, make_tenant
from tests.fakes.harness import FakeEvolution, make_connection
from tests.media.helpers import fixture, send_media, until_media
from tests.messages.helpers import walk_thread


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"MEDIA_FETCH_POLL_SECONDS": 0.1}


async def test_a_history_reader_downloads_the_media_and_nobody_else_does(
    client: httpx.AsyncClient, db: Any, admin_headers: dict[str, str], evolution: FakeEvolution
) -> None:
    tenant: Tenant = await make_tenant(client, admin_headers, agents=1)
    first_agent = tenant.agents[0]
    conn = await make_connection(client, tenant, evolution)
    message = await send_media(evolution, db, conn, "boleto.pdf", inline=True)
    await until_media(db, message["_id"], "ready")
    earlier = str(message["ticket_id"])
    await assume(client, first_agent["headers"], earlier)
    r = await client.post(f"{API}/tickets/{earlier}/finalize", headers=first_agent["headers"])
    assert r.status_code == 200, r.text
    customer = str((await db.tickets.find_one({"_id": earlier}))["client_id"])

    # The client is back, in another department's queue: its agent never handled the earlier ticket.
    sales = await make_department(client, tenant)
    seller = await make_agent(client, tenant, [sales["id"]])
    r = await client.post(
        f"{API}/tickets",
        json={"client_id": customer, "department_id": sales["id"], "message": "voltei"},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    current = r.json()["id"]
    assert (await client.get(f"{API}/tickets/{earlier}", headers=seller["headers"])).status_code == 404

    # The history shows the message with its media; its url serves the bytes to the same reader.
    thread, _ = await walk_thread(client, seller["headers"], f"{API}/tickets/{current}/history/{earlier}/messages")
    shown = next(m for m in thread if m["id"] == message["_id"])
    assert shown["media"]["status"] == "ready"
    r = await client.get(shown["media"]["url"], headers=seller["headers"])
    assert r.status_code == 200, r.text
    assert r.content == fixture("boleto.pdf")
    assert r.headers["content-disposition"].startswith("attachment")
    ranged = await client.get(shown["media"]["url"], headers={**seller["headers"], "Range": "bytes=0-3"})
    assert ranged.status_code == 206 and ranged.content == fixture("boleto.pdf")[:4]
    # Read-only: the retry action is not the history's (and the media is not failed anyway).
    assert (await client.post(f"{shown['media']['url']}/retry", headers=seller["headers"])).status_code == 404

    # Who cannot read the history cannot download: an agent of a department holding none of this
    # client's tickets, another tenant's owner and agent.
    finance = await make_department(client, tenant)
    stranger = await make_agent(client, tenant, [finance["id"]])
    assert (await client.get(f"{API}/tickets/{current}/history", headers=stranger["headers"])).status_code == 404
    other = await make_tenant(client, admin_headers, agents=1)
    for headers in (stranger["headers"], other.headers, other.agents[0]["headers"]):
        r = await client.get(shown["media"]["url"], headers=headers)
        assert r.status_code == 404, r.text
    # The owner sees every ticket of the tenant, the earlier one included.
    r = await client.get(shown["media"]["url"], headers=tenant.headers)
    assert r.status_code == 200 and r.content == fixture("boleto.pdf")
