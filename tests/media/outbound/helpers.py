"""Helpers for the tests of files agents send (tests/media/test_outbound_*.py)."""

from pathlib import Path
from typing import Any

import httpx

from tests.factories import make_tenant
from tests.fakes.harness import FakeEvolution, make_connection
from tests.outbound.helpers import held_ticket

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "media"
# Every collection an upload may write to: none of them may change when one is refused.
UPLOAD_COLLECTIONS = ("messages", "media", "media.files", "media.chunks", "outbox", "outbox_chats")


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


async def post_file(
    client: httpx.AsyncClient,
    ticket_id: str,
    headers: dict[str, str],
    *,
    name: str,
    data: bytes,
    mime: str,
    **fields: str,
) -> httpx.Response:
    return await client.post(
        f"/api/v1/tickets/{ticket_id}/messages", files={"file": (name, data, mime)}, data=fields, headers=headers
    )


async def counts(db: Any) -> dict[str, int]:
    return {name: await db[name].count_documents({}) for name in UPLOAD_COLLECTIONS}


async def sent_to(evolution: FakeEvolution, phone: str) -> list[dict[str, Any]]:
    return [s for s in await evolution.sent() if s["number"] == phone]


async def media_bytes(evolution: FakeEvolution, key_id: str) -> bytes:
    """The bytes the fake provider decoded from the send with this key id."""
    async with httpx.AsyncClient(base_url=evolution.url, timeout=30) as c:
        r = await c.get(f"/_control/sent_media/{key_id}")
        r.raise_for_status()
        return r.content


async def agent_holding_a_ticket(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> tuple[dict[str, Any], str, str, dict[str, str]]:
    """A new tenant with a connection and a ticket its agent holds: (connection, ticket id, the
    client's phone, the agent's headers)."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    return conn, ticket_id, phone, agent


async def media_sent_to(evolution: FakeEvolution, phone: str, n: int) -> list[dict[str, Any]] | None:
    """The media sends to `phone` once there are `n` of them (for `wait_for`)."""
    sent = [s for s in await sent_to(evolution, phone) if "media" in s]
    return sent if len(sent) == n else None


async def in_status(db: Any, message_id: str, wanted: str) -> dict[str, Any] | None:
    doc: dict[str, Any] | None = await db.messages.find_one({"_id": message_id})
    return doc if doc is not None and doc["status"] == wanted else None
