"""Messages whose webhook never arrived (IAZE down past Evolution's retries, or Evolution restarted
meanwhile, dropping them) are still in Evolution's own store: scripts/catch_up_messages.py asks
for them (findMessages) and stores them as history-sync deliveries, which the processors file
like any other. Through the script's own function (start-up gate included), the real processor,
and the fake Evolution as its own process."""

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from backend.core.config import Settings
from scripts.catch_up_messages import catch_up
from tests.factories import make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.webhooks.evolution_shapes import all_messages


async def test_messages_whose_webhook_was_lost_are_filed_once_by_the_catch_up(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any, settings: Settings
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    await asyncio.sleep(1.1)  # stamped in whole seconds after the connection was made
    instance = conn["instance_name"]
    known, lost = unique_phone(), unique_phone()
    await evolution.inbound(instance, known, "chegou ao vivo")  # delivered: stored already

    async def bodies() -> list[str]:
        return sorted(m["body"] for m in await all_messages(client, tenant))

    await wait_for(lambda: bodies())
    # IAZE away: Evolution kept these, and its webhook posts were dropped.
    await evolution.inbound(instance, lost, "alguém aí?", deliver=False)
    await evolution.inbound(instance, lost, "preciso de ajuda", deliver=False)
    await evolution.inbound(instance, known, "e o meu pedido?", deliver=False)
    before_connection = int(time.time()) - 86_400
    await evolution.inbound(instance, unique_phone(), "de ontem", deliver=False, at=before_connection)
    assert await bodies() == ["chegou ao vivo"]  # nobody sees them

    since = datetime.now(UTC) - timedelta(days=2)
    assert await catch_up(settings, since=since, until=datetime.now(UTC), connection_id=None, dry_run=False) == 0
    expected = sorted(["chegou ao vivo", "alguém aí?", "preciso de ajuda", "e o meu pedido?"])

    async def filed() -> list[str] | None:
        found = await bodies()
        return found if found == expected else None

    assert await wait_for(filed) == expected  # the one from before the connection stays out
    # Each shows when the client wrote it (WhatsApp's stamp) beside when it was filed here.
    late = next(m for m in await all_messages(client, tenant) if m["body"] == "alguém aí?")
    written, filed_at = (datetime.fromisoformat(late[k].replace("Z", "+00:00")) for k in ("written_at", "created_at"))
    assert written.replace(microsecond=0) <= filed_at
    # Run again (a generous window, twice): nothing new, nothing twice.
    assert await catch_up(settings, since=since, until=datetime.now(UTC), connection_id=conn["id"], dry_run=False) == 0

    async def settled() -> bool:
        pending = await db.webhook_events_raw.count_documents({"connection_id": conn["id"], "status": "received"})
        return pending == 0

    await wait_for(settled)
    assert await bodies() == expected
    per_client = [
        t["client_phone"]
        for t in (await client.get("/api/v1/tickets?status=espera", headers=tenant.headers)).json()["items"]
    ]
    assert sorted(per_client) == sorted([known, lost])  # one ticket per client, the lost ones in it
