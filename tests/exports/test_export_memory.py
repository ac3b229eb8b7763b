"""An export of 100k rows is streamed with flat memory: sent in many chunks as it is read, none of
them large, and the memory the process allocates while serving it stays far below the file's size
(an export that gathered its rows, or its documents, before sending would hold more than the file)."""

import csv
import io
import tracemalloc
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from backend.core.ids import new_id
from tests.exports.streaming import stream_get
from tests.factories import API, Tenant, make_tenant, make_ticket

ROWS = 100_000
SP = ZoneInfo("America/Sao_Paulo")


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=0)


async def test_an_export_of_100k_messages_streams_with_flat_memory(
    app: Any, client: httpx.AsyncClient, db: Any, tenant: Tenant
) -> None:
    ticket = await make_ticket(client, tenant)
    day = datetime.now(SP).date() - timedelta(days=1)
    start = datetime(day.year, day.month, day.day, tzinfo=SP)
    step = timedelta(days=1) / ROWS
    for first in range(0, ROWS, 10_000):
        docs = [
            {
                "_id": new_id(),
                "ticket_id": ticket["id"],
                "reseller_id": tenant.id,
                "direction": "in" if n % 2 else "out",
                "sender_type": "client" if n % 2 else "agent",
                "sender_id": None,
                "sender_name": "Cliente",
                "type": "text",
                "body": f'mensagem número {n} com algum texto; e "aspas"',
                "media": None,
                "status": "received",
                "created_at": start + step * n,
            }
            for n in range(first, first + 10_000)
        ]
        await db.messages.insert_many(docs, ordered=False)

    sizes: list[int] = []
    tail = bytearray()
    rows = 0

    async def on_chunk(chunk: bytes) -> None:
        nonlocal rows, tail
        sizes.append(len(chunk))
        # Count rows without keeping the file: parse whole lines as they come, keep the rest.
        tail += chunk
        text, _, rest = bytes(tail).rpartition(b"\r\n")
        if text:
            rows += len(list(csv.reader(io.StringIO(text.decode("utf-8-sig") + "\r\n", newline=""), delimiter=";")))
        tail = bytearray(rest)

    params = {"from": day.isoformat(), "to": day.isoformat()}
    tracemalloc.start()
    try:
        status, headers = await stream_get(
            app, f"{API}/exports/messages.csv", headers=tenant.headers, params=params, on_chunk=on_chunk
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    total = sum(sizes)
    assert status == 200 and headers["content-type"].startswith("text/csv")
    assert rows == ROWS + 1  # the header and every message
    assert len(sizes) >= ROWS // app.state.settings.EXPORT_BATCH_ROWS
    assert max(sizes) < 256 * 1024
    assert total > 8 * 1024 * 1024
    # What the process allocated at its peak while serving it: a fraction of the file.
    assert peak < total / 2, (peak, total)
