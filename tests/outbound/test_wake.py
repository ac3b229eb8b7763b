"""The send loop is woken by this process's stored replies and automatic messages: they leave at
once, not at the worker's next poll. The poll here is a minute apart, longer than any wait below,
so a message sent within it was sent because the worker was woken."""

from typing import Any

import httpx
import pytest

from tests.automation.helpers import all_sent, company, open_ticket, write
from tests.factories import make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.outbound.helpers import held_ticket

WITHIN = 20.0  # seconds: a third of the poll


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"OUTBOUND_POLL_SECONDS": 60.0}


async def test_a_reply_leaves_without_waiting_for_the_next_poll(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    for text in ("Bom dia!", "Já verifico."):
        r = await client.post(f"/api/v1/tickets/{ticket_id}/messages", json={"body": text}, headers=agent)
        assert r.status_code == 201, r.text

        async def sent(message_id: str = r.json()["id"]) -> dict[str, Any] | None:
            doc: dict[str, Any] | None = await db.messages.find_one({"_id": message_id, "status": "sent"})
            return doc

        await wait_for(sent, timeout=WITHIN)
    texts = [s["text"] for s in await evolution.sent() if s["number"] == phone]
    assert [t.split("\n")[-1] for t in texts] == ["Bom dia!", "Já verifico."]  # once each, in order


async def test_an_automatic_message_leaves_without_waiting_for_the_next_poll(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn = await company(client, admin_headers, evolution, config={"welcome_message": "Olá {{cliente}}!"})
    phone = unique_phone()
    await write(evolution, db, conn, phone, "oi")
    assert await all_sent(evolution, phone, ["Olá Maria!"], within=WITHIN) == ["Olá Maria!"]
    ticket = await open_ticket(db, tenant, phone)

    async def sent() -> dict[str, Any] | None:
        # The provider has it; the worker records "sent" once the provider's answer is back.
        doc: dict[str, Any] | None = await db.messages.find_one(
            {"ticket_id": ticket["_id"], "automatic_purpose": "greeting", "status": "sent"}
        )
        return doc

    await wait_for(sent, timeout=WITHIN)
