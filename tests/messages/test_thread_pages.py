"""A thread opens at its newest message and pages back to its first (issue 17 item 3)."""

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from backend.core.ids import new_id
from tests.factories import API, Tenant, assume, make_client_ticket, make_tenant, make_ticket
from tests.messages.helpers import walk_thread


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


async def _held_with_replies(client: httpx.AsyncClient, tenant: Tenant, db: Any, replies: int) -> dict[str, Any]:
    agent = tenant.agents[0]
    ticket = await make_client_ticket(client, tenant, db, message="mensagem 0")
    await assume(client, agent["headers"], ticket["id"])
    for i in range(1, replies + 1):
        r = await client.post(
            f"{API}/tickets/{ticket['id']}/messages", json={"body": f"mensagem {i}"}, headers=agent["headers"]
        )
        assert r.status_code == 201, r.text
    return ticket


async def test_250_messages_open_at_the_newest_and_walk_back_to_the_first(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    ticket = await _held_with_replies(client, tenant, db, 249)
    path = f"{API}/tickets/{ticket['id']}/messages"
    first = (await client.get(path, headers=tenant.headers)).json()
    assert [m["body"] for m in first["items"]] == [f"mensagem {i}" for i in range(200, 250)]  # default 50
    assert first["next_cursor"]
    thread, sizes = await walk_thread(client, tenant.headers, path, limit=200)
    assert sizes == [200, 50]
    assert [m["body"] for m in thread] == [f"mensagem {i}" for i in range(250)]
    assert thread[0]["sender_type"] == "client"


async def test_a_message_arriving_mid_walk_is_neither_repeated_nor_lost(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    agent = tenant.agents[0]
    ticket = await _held_with_replies(client, tenant, db, 5)
    path = f"{API}/tickets/{ticket['id']}/messages"
    newest = (await client.get(path, params={"limit": 2}, headers=agent["headers"])).json()
    assert [m["body"] for m in newest["items"]] == ["mensagem 4", "mensagem 5"]
    r = await client.post(path, json={"body": "chegou agora"}, headers=agent["headers"])
    assert r.status_code == 201
    older: list[dict[str, Any]] = []
    cursor = newest["next_cursor"]
    while cursor:
        page = (await client.get(path, params={"limit": 2, "cursor": cursor}, headers=agent["headers"])).json()
        older = page["items"] + older
        cursor = page["next_cursor"]
    assert [m["body"] for m in older] == [f"mensagem {i}" for i in range(4)]
    again = (await client.get(path, params={"limit": 2}, headers=agent["headers"])).json()
    assert [m["body"] for m in again["items"]] == ["mensagem 5", "chegou agora"]


async def test_messages_stamped_at_the_same_instant_page_by_id_without_gaps(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    """Two processes can stamp the same microsecond: the cursor's _id tiebreak keeps every one."""
    ticket = await make_ticket(client, tenant, message="primeira")
    same = datetime(2030, 1, 1, tzinfo=UTC)
    ids = sorted(new_id() for _ in range(5))
    for i, message_id in enumerate(reversed(ids)):  # stored in the opposite order of their ids
        await db.messages.insert_one(
            {
                "_id": message_id,
                "ticket_id": ticket["id"],
                "reseller_id": tenant.id,
                "direction": "in",
                "sender_type": "client",
                "sender_id": ticket["client_id"],
                "sender_name": "",
                "type": "text",
                "body": f"mesmo instante {i}",
                "media": None,
                "status": "received",
                "created_at": same,
            }
        )
    thread, sizes = await walk_thread(client, tenant.headers, f"{API}/tickets/{ticket['id']}/messages", limit=2)
    assert sizes == [2, 2, 2]
    assert thread[0]["body"] == "primeira"
    assert [m["id"] for m in thread[1:]] == ids
