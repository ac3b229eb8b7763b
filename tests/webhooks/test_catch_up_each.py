"""A catch-up (webhooks.service.catch_up, scripts/catch_up_messages.py) goes on past what fails on
its own: a stored message that does not read, one connection whose provider fails. The API
process runs no processor and no connection watch here (the watch would catch up by itself): the
tests store, process and catch up themselves."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from backend.connections.models import Connection
from backend.connections.providers import registry
from backend.core.config import Settings
from backend.webhooks import service
from backend.webhooks.processor import WebhookProcessor
from scripts.catch_up_messages import PROVIDER_FAILED, catch_up
from tests.factories import make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"WEBHOOK_PROCESSOR_ENABLED": False, "CONNECTION_WATCH_ENABLED": False}


async def _connection(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> Connection:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution, processed=False)
    return Connection.model_validate(await db.whatsapp_connections.find_one({"_id": conn["id"]}))


async def test_a_stored_message_that_does_not_read_is_passed_over_and_the_rest_of_the_window_is_caught_up(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any, settings: Settings
) -> None:
    conn = await _connection(client, admin_headers, evolution, db)
    await evolution.inbound(conn.instance_name, unique_phone(), "chegou ao vivo")
    await WebhookProcessor(db, settings).run_once()
    stored = await db.messages.find_one({"connection_id": conn.id, "body": "chegou ao vivo"})
    await db.messages.update_one({"_id": stored["_id"]}, {"$set": {"created_at": "yesterday"}})  # no longer reads
    await evolution.inbound(conn.instance_name, unique_phone(), "anyone there", deliver=False)  # its post lost

    async with registry.http_client(settings) as http:
        provider = registry.build(conn.provider, settings, http)
        now = datetime.now(UTC)
        done = await service.catch_up(
            db, conn, provider, since=now - timedelta(days=2), until=now, lanes=settings.WEBHOOK_LANES
        )

    assert (done.found, done.missing, done.chats) == (2, 1, 1), done  # the unreadable one counts as stored
    caught = await db.webhook_events_raw.find({"connection_id": conn.id, "event": "messages.set"}).to_list(None)
    assert len(caught) == 1 and "anyone there" in caught[0]["body"], caught


async def test_the_catch_up_script_goes_on_past_a_connection_whose_provider_fails_and_names_it(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    failing = await _connection(client, admin_headers, evolution, db)
    after = await _connection(client, admin_headers, evolution, db)  # checked after it (`_id` order)
    await evolution.inbound(after.instance_name, unique_phone(), "anyone there", deliver=False)  # its post lost
    await evolution.mode("ok", fail_paths=[f"/chat/findMessages/{failing.instance_name}"])
    try:
        now = datetime.now(UTC)
        code = await catch_up(settings, since=now - timedelta(days=2), until=now, connection_id=None, dry_run=False)
    finally:
        await evolution.mode("ok")

    assert code == PROVIDER_FAILED
    caught = await db.webhook_events_raw.find({"connection_id": after.id, "event": "messages.set"}).to_list(None)
    assert len(caught) == 1 and "anyone there" in caught[0]["body"], caught
    assert failing.id in capsys.readouterr().out  # named, for a run of its own
