"""A check of the connection watch killed between its writes: the catch-up it owes is recorded
before the webhook is set again, so a process killed at the repair, or after it and before the
catch-up, leaves the debt to the processors' sweep, which files what the provider kept. Runs one
check pass directly (the watch's loop is off here), the kill injected; the fake Evolution is its
own process."""

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest

from backend.connections import service as connections
from backend.core import metrics
from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.webhooks import service, watch
from tests.factories import make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.webhooks.evolution_shapes import all_messages


class _Killed(BaseException):
    """The process dying there: nothing after the raise runs, no handler catches it."""


async def _killed(*args: Any, **kwargs: Any) -> Any:
    raise _Killed


@pytest.mark.parametrize("killed_at", ["the repair", "the catch-up"])
async def test_a_check_killed_after_owing_its_catch_up_leaves_it_to_the_sweep(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    killed_at: str,
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    instance = conn["instance_name"]
    await asyncio.sleep(1.1)  # Evolution stamps in whole seconds: after the connection was made
    right_at: dict[str, Any] = {}
    assert (await watch.check_connections(db, settings, right_at=right_at))[conn["id"]] == []

    held = await evolution.control("GET", f"instances/{instance}")
    await evolution.set_webhook(instance, {**_webhook_of(held), "enabled": False})
    phone = unique_phone()
    assert (await evolution.inbound(instance, phone, "ninguém responde?"))["status_code"] is None  # not posted

    if killed_at == "the repair":
        monkeypatch.setattr(connections, "set_webhook_again", _killed)
    else:
        monkeypatch.setattr(service, "pay_catch_up", _killed)
    with pytest.raises(_Killed):
        await watch.check_connections(db, settings, right_at=right_at)
    monkeypatch.undo()
    owed = await db.webhook_waiting.find_one({"connection_id": conn["id"], "reason": "catch_up"})
    assert owed is not None and owed["applied_at"] is None
    assert owed["since"] <= right_at[conn["id"]]  # from before the check that last found it right
    repaired = (await evolution.control("GET", f"instances/{instance}"))["enabled"]
    assert repaired is (killed_at == "the catch-up")
    assert await all_messages(client, tenant) == []  # nobody sees it yet

    # The sweep, once the debt's hold is over (time passing, shortened here).
    await db.webhook_waiting.update_one({"_id": owed["_id"]}, {"$set": {"not_before": utcnow() - timedelta(seconds=1)}})
    assert await service.run_waiting(db, settings, since=utcnow() - timedelta(hours=1), limit=1000) >= 1

    async def filed() -> list[str] | None:
        return [m["body"] for m in await all_messages(client, tenant)] or None

    assert await wait_for(filed) == ["ninguém responde?"]
    assert (await db.webhook_waiting.find_one({"_id": owed["_id"]}))["applied_at"] is not None
    # The next check repairs what the kill left, and owes nothing more the sweep would refile.
    await watch.check_connections(db, settings, right_at=right_at)
    assert (await evolution.control("GET", f"instances/{instance}"))["enabled"] is True
    await asyncio.sleep(0.5)
    assert [m["body"] for m in await all_messages(client, tenant)] == ["ninguém responde?"]


async def test_an_instance_gone_at_the_provider_shows_disconnected_and_its_next_qr_code_makes_it_again(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any, settings: Settings
) -> None:
    """Evolution's store lost: the instance no longer exists there, and IAZE still showed the
    connection open while nothing could arrive. The check records it closed, unbound, with why;
    the owner's next QR code creates the instance again with IAZE's webhook, and once the phone
    scans it the client's messages are filed again."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    instance = conn["instance_name"]
    await evolution.delete_instance(instance)

    assert (await watch.check_connections(db, settings, right_at={}))[conn["id"]] == ["instance"]
    r = await client.get(f"/api/v1/whatsapp-connections/{conn['id']}", headers=tenant.headers)
    assert (r.json()["status"], r.json()["last_error"]) == ("close", connections.INSTANCE_MISSING)
    stored = await db.whatsapp_connections.find_one({"_id": conn["id"]})
    assert stored["provider_created"] is False
    assert await db.webhook_waiting.count_documents({"connection_id": conn["id"]}) == 0  # nothing to catch up there
    # Unbound: later checks leave it alone (nothing to ask the provider about).
    assert conn["id"] not in await watch.check_connections(db, settings, right_at={})

    r = await client.get(f"/api/v1/whatsapp-connections/{conn['id']}/qrcode", headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["qr_code"] is not None) == ("connecting", True)
    made = await evolution.control("GET", f"instances/{instance}")
    assert made["webhook_headers"] == {"X-Webhook-Token": stored["webhook_token"]}
    assert made["webhook_url"].endswith(f"/api/v1/webhooks/whatsapp/{conn['id']}")
    assert (await evolution.control("POST", "state", {"instance": instance, "state": "open"}))["status_code"] == 200

    async def reopened() -> bool:
        got = await client.get(f"/api/v1/whatsapp-connections/{conn['id']}", headers=tenant.headers)
        return got.json()["status"] == "open" and got.json()["last_error"] is None

    await wait_for(reopened)
    await evolution.inbound(instance, unique_phone(), "voltou?")

    async def filed() -> list[str] | None:
        return [m["body"] for m in await all_messages(client, tenant)] or None

    assert await wait_for(filed) == ["voltou?"]


async def test_a_provider_down_ends_the_pass_instead_of_waiting_on_every_connection(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any, settings: Settings
) -> None:
    """Evolution down answers every connection alike, each after its timeout: the pass stops after
    a few in a row (and the next period asks again), rather than spending the timeout on each."""
    tenant = await make_tenant(client, admin_headers, agents=0)
    for _ in range(watch.UNREACHABLE_IN_A_ROW + 2):
        await make_connection(client, tenant, evolution)
    before = await evolution.calls_to("/instance/connectionState/")
    await evolution.mode("5xx")
    try:
        assert await watch.check_connections(db, settings, right_at={}) == {}
    finally:
        await evolution.mode("ok")
    asked = await evolution.calls_to("/instance/connectionState/") - before
    assert asked == watch.UNREACHABLE_IN_A_ROW
    assert len(await watch.check_connections(db, settings, right_at={})) >= watch.UNREACHABLE_IN_A_ROW + 2


async def test_a_deactivated_connection_is_watched_too_as_its_clients_messages_are_still_filed(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any, settings: Settings
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    r = await client.patch(f"/api/v1/whatsapp-connections/{conn['id']}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    await asyncio.sleep(1.1)  # Evolution stamps in whole seconds: after the connection was made
    right_at: dict[str, Any] = {}
    assert (await watch.check_connections(db, settings, right_at=right_at))[conn["id"]] == []
    held = await evolution.control("GET", f"instances/{conn['instance_name']}")
    await evolution.set_webhook(conn["instance_name"], {**_webhook_of(held), "enabled": False})
    await evolution.inbound(conn["instance_name"], unique_phone(), "ainda atendem aqui?")

    assert (await watch.check_connections(db, settings, right_at=right_at))[conn["id"]] == ["disabled"]
    assert (await evolution.control("GET", f"instances/{conn['instance_name']}"))["enabled"] is True

    async def filed() -> list[str] | None:
        return [m["body"] for m in await all_messages(client, tenant)] or None

    assert await wait_for(filed) == ["ainda atendem aqui?"]


def _webhook_of(held: dict[str, Any]) -> dict[str, Any]:
    """The fake's instance as /webhook/set takes it."""
    names = {"enabled": "enabled", "url": "webhook_url", "headers": "webhook_headers", "events": "events"}
    return {field: held[kept] for field, kept in names.items()}


async def test_a_restart_files_what_evolution_dropped_while_no_process_watched(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any, settings: Settings
) -> None:
    """Every process down (a deploy), and Evolution restarted meanwhile: the posts it was retrying
    are gone, though its store keeps the messages. A process's first check of each connection
    catches up from when any process last found the webhook right, with no drift to see; only what
    is missing is filed, and a process that goes on watching asks nothing more."""
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    instance = conn["instance_name"]
    await asyncio.sleep(1.1)  # Evolution stamps in whole seconds: after the connection was made
    live = unique_phone()
    await evolution.inbound(instance, live, "antes da parada")
    watching: dict[str, Any] = {}
    assert (await watch.check_connections(db, settings, right_at=watching))[conn["id"]] == []

    async def deliveries() -> int:
        return int(await db.webhook_events_raw.count_documents({"connection_id": conn["id"]}))

    asked = await evolution.calls_to(f"/chat/findMessages/{instance}")
    # The deploy: IAZE away, Evolution's retries of these lost with its restart.
    dropped = unique_phone()
    for text in ("alguém aí?", "meu pedido sumiu"):
        await evolution.inbound(instance, dropped, text, deliver=False)
    assert (await watch.check_connections(db, settings, right_at=watching))[conn["id"]] == []
    # A process that went on watching saw nothing to catch up.
    assert await evolution.calls_to(f"/chat/findMessages/{instance}") == asked

    before, recovered = await deliveries(), metrics.CAUGHT_UP._value.get()
    assert (await watch.check_connections(db, settings, right_at={}))[conn["id"]] == []  # a new process
    assert metrics.CAUGHT_UP._value.get() == recovered + 2

    async def filed() -> list[str] | None:
        found = sorted(m["body"] for m in await all_messages(client, tenant))
        return found if len(found) == 3 else None

    assert await wait_for(filed) == sorted(["antes da parada", "alguém aí?", "meu pedido sumiu"])
    assert await deliveries() == before + 1  # the missing chat's messages, in one delivery
    # Another restart: the window's messages are all here; nothing is stored to process.
    assert (await watch.check_connections(db, settings, right_at={}))[conn["id"]] == []
    assert await deliveries() == before + 1
    assert metrics.CAUGHT_UP._value.get() == recovered + 2


async def test_a_restart_killed_during_its_catch_up_leaves_it_to_the_next_start(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A restart's catch-up records no debt: the stored right time moves only once the catch-up is
    done. A process killed during it leaves that time where it was, and the next process's first
    check files what the killed one did not."""
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    await asyncio.sleep(1.1)  # Evolution stamps in whole seconds: after the connection was made
    assert (await watch.check_connections(db, settings, right_at={}))[conn["id"]] == []
    right = await db.webhook_state.find_one({"_id": f"watched:{conn['id']}"})
    await evolution.inbound(conn["instance_name"], unique_phone(), "perdida no deploy", deliver=False)

    real = service.catch_up

    async def dies_on_this_one(db_: Any, caught: Any, *args: Any, **kwargs: Any) -> Any:
        if caught.id == conn["id"]:  # the new process dies while catching this connection up
            raise _Killed
        return await real(db_, caught, *args, **kwargs)

    monkeypatch.setattr(service, "catch_up", dies_on_this_one)
    with pytest.raises(_Killed):
        await watch.check_connections(db, settings, right_at={})
    monkeypatch.undo()
    assert await db.webhook_state.find_one({"_id": f"watched:{conn['id']}"}) == right
    assert await all_messages(client, tenant) == []

    assert (await watch.check_connections(db, settings, right_at={}))[conn["id"]] == []  # the next start

    async def filed() -> list[str] | None:
        return [m["body"] for m in await all_messages(client, tenant)] or None

    assert await wait_for(filed) == ["perdida no deploy"]
