"""Sends to one WhatsApp connection are paced (OUTBOUND_RATE_PER_CONNECTION after a burst of
OUTBOUND_BURST_PER_CONNECTION): replies to many chats at once leave one after another at that
rate, each still once, none dropped; another connection's reply meanwhile does not wait for them."""

import itertools
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.factories import make_tenant
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.outbound.helpers import held_ticket, unsigned

RATE = 2.0  # per second: a send every 0.5 s once the burst of one has gone


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"OUTBOUND_RATE_PER_CONNECTION": RATE, "OUTBOUND_BURST_PER_CONNECTION": 1, "OUTBOUND_POLL_SECONDS": 0.1}


def _at(sent: dict[str, Any]) -> float:
    return datetime.fromisoformat(sent["at"].replace("Z", "+00:00")).timestamp()


async def test_replies_to_many_chats_on_one_connection_leave_at_its_pace_each_once(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    chats = [await held_ticket(client, tenant, evolution, conn, db) for _ in range(6)]
    other = await make_tenant(client, admin_headers, agents=1)
    other_conn = await make_connection(client, other, evolution)
    other_ticket, other_phone, other_agent = await held_ticket(client, other, evolution, other_conn, db)
    texts = {}
    for n, (ticket_id, phone, agent) in enumerate(chats):
        texts[phone] = f"resposta {n}"
        r = await client.post(f"/api/v1/tickets/{ticket_id}/messages", json={"body": texts[phone]}, headers=agent)
        assert r.status_code == 201, r.text
    # Another company's number, meanwhile: its reply leaves at once, not behind the first's turns.
    r = await client.post(f"/api/v1/tickets/{other_ticket}/messages", json={"body": "outra"}, headers=other_agent)
    assert r.status_code == 201, r.text

    async def all_sent() -> bool:
        return await db.messages.count_documents({"body": {"$regex": "resposta [0-5]$"}, "status": "sent"}) == 6

    await wait_for(all_sent, timeout=30)
    sent = [s for s in await evolution.sent() if s["number"] in texts]
    (elsewhere,) = [s for s in await evolution.sent() if s["number"] == other_phone]
    assert _at(elsewhere) < max(_at(s) for s in sent)
    assert sorted(unsigned(s["text"]) for s in sent) == sorted(texts.values())  # each once
    times = sorted(_at(s) for s in sent)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # 0.5 s apart by the bucket; the fake stamps arrival, so allow for a loaded machine's jitter.
    assert min(gaps) >= 0.35, gaps
    assert times[-1] - times[0] >= 5 / RATE - 0.3, gaps
