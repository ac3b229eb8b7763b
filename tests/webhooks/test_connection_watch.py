"""The connection watch (backend/webhooks/watch.py) running in the backend, every half second
here: an instance's webhook changed at Evolution (turned off, a stale token, an event left out)
loses every client message posted meanwhile; the watch sets the webhook again and files what
Evolution kept (findMessages), once. A disconnection whose CONNECTION_UPDATE never came is seen.
The fake Evolution is its own process; the webhook is changed through its /webhook/set as an
operator in Evolution's manager would, and the watch's reads are held (500) while the test
breaks the webhook and the client writes, so what it repairs is certain to have lost posts."""

import asyncio
from typing import Any

import httpx
import pytest

from backend.connections.providers.evolution import WEBHOOK_EVENTS
from backend.core import metrics
from backend.core.config import Settings
from tests.factories import make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.webhooks.evolution_shapes import all_messages


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"CONNECTION_WATCH_ENABLED": True, "CONNECTION_WATCH_SECONDS": 0.5}


async def _watched(evolution: FakeEvolution, instance: str) -> None:
    """Until the watch has read the instance's webhook (again) from now on."""
    seen = await evolution.calls_to(f"/webhook/find/{instance}")

    async def read_again() -> bool:
        return await evolution.calls_to(f"/webhook/find/{instance}") > seen

    await wait_for(read_again)


DRIFTS = {
    "turned off": lambda url, token: {"enabled": False, "url": url, "headers": {"X-Webhook-Token": token}},
    "stale token": lambda url, token: {
        "enabled": True,
        "url": url,
        "headers": {"X-Webhook-Token": "token-of-a-restored-backup"},
        "events": WEBHOOK_EVENTS,
    },
    "event left out": lambda url, token: {
        "enabled": True,
        "url": url,
        "headers": {"X-Webhook-Token": token},
        "events": [e for e in WEBHOOK_EVENTS if e != "MESSAGES_UPSERT"],
    },
}


@pytest.mark.parametrize("drift", list(DRIFTS))
async def test_a_webhook_changed_at_the_provider_is_set_again_and_what_it_lost_is_filed_once(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    drift: str,
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    instance = conn["instance_name"]
    await asyncio.sleep(1.1)  # Evolution stamps in whole seconds: after the connection was made
    known, lost = unique_phone(), unique_phone()
    await evolution.inbound(instance, known, "chegou ao vivo")

    async def bodies() -> list[str]:
        return sorted(m["body"] for m in await all_messages(client, tenant))

    await wait_for(lambda: bodies())
    await _watched(evolution, instance)  # found right once: the catch-up starts from there
    repaired = metrics.CONNECTION_WEBHOOK_REPAIRED._value.get()

    await evolution.mode("ok", fail_paths=[f"/webhook/find/{instance}"])  # the watch's reads held
    stored = await db.whatsapp_connections.find_one({"_id": conn["id"]})
    held = await evolution.control("GET", f"instances/{instance}")
    await evolution.set_webhook(instance, DRIFTS[drift](held["webhook_url"], stored["webhook_token"]))
    for text in ("alguém aí?", "preciso de ajuda"):
        result = await evolution.inbound(instance, lost, text)
        assert result["status_code"] in (None, 401), result  # not posted, or refused: lost
    await evolution.inbound(instance, known, "e o meu pedido?")
    await asyncio.sleep(1.5)  # three periods of the watch, its reads failing
    assert await bodies() == ["chegou ao vivo"]  # nobody sees them

    await evolution.mode("ok")
    expected = sorted(["chegou ao vivo", "alguém aí?", "preciso de ajuda", "e o meu pedido?"])

    async def filed() -> list[str] | None:
        found = await bodies()
        return found if found == expected else None

    assert await wait_for(filed, timeout=30) == expected
    held = await evolution.control("GET", f"instances/{instance}")
    assert (held["enabled"], held["events"], held["by_events"]) == (True, WEBHOOK_EVENTS, False)
    assert held["webhook_headers"] == {"X-Webhook-Token": stored["webhook_token"]}
    assert held["webhook_url"].endswith(f"/api/v1/webhooks/whatsapp/{conn['id']}")
    assert metrics.CONNECTION_WEBHOOK_REPAIRED._value.get() > repaired
    owed = await db.webhook_waiting.find({"connection_id": conn["id"], "reason": "catch_up"}).to_list(None)
    assert owed and all(o["applied_at"] is not None for o in owed), owed  # paid, nothing left owed

    # Posts reach IAZE again; later checks find it right and file nothing twice.
    await evolution.inbound(instance, lost, "obrigado")
    expected = sorted([*expected, "obrigado"])
    assert await wait_for(filed) == expected
    await _watched(evolution, instance)
    await _watched(evolution, instance)
    assert await bodies() == expected
    per_client = sorted(
        t["client_phone"]
        for t in (await client.get("/api/v1/tickets?status=espera", headers=tenant.headers)).json()["items"]
    )
    assert per_client == sorted([known, lost])  # one ticket per client


async def test_a_disconnection_whose_update_never_came_is_seen_by_the_owner(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    # The phone logs out; Evolution's CONNECTION_UPDATE is lost on the way.
    lost = {"instance": conn["instance_name"], "state": "close", "post": False}
    result = await evolution.control("POST", "state", lost)
    assert result["posted"] is False

    async def closed() -> bool:
        r = await client.get(f"/api/v1/whatsapp-connections/{conn['id']}", headers=tenant.headers)
        return r.json()["status"] == "close"

    await wait_for(closed)
