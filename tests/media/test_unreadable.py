"""A media message whose document does not read (damaged, or written by a newer version during a
rolling deploy) is fetched if it reads again within UNREADABLE_GIVE_UP_SECONDS; after that its
fetch is shown failed (retryable once mended) and its entry stops holding the queue's cursor.
The API here runs no fetcher: the tests step an in-process `MediaFetcher`'s passes."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from backend.connections.providers import registry
from backend.core.config import Settings
from backend.core.runtime import runtime_of
from backend.media import repository as media_repository
from backend.media.worker import MediaFetcher
from tests.factories import Tenant
from tests.fakes.harness import FakeEvolution, wait_for
from tests.media.helpers import fixture, send_media

UNREADABLE = {"created_at": "not a time"}  # what no `Message` reads


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"MEDIA_FETCH_ENABLED": False}


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with registry.http_client(settings) as c:
        yield c


async def _media_status(db: Any, message_id: str) -> str:
    doc = await db.messages.find_one({"_id": message_id})
    return str(doc["media"]["status"])


async def test_a_media_message_that_does_not_read_is_failed_after_the_give_up_time_and_the_cursor_moves_on(
    client: httpx.AsyncClient,
    db: Any,
    tenant: Tenant,
    conn: dict[str, Any],
    evolution: FakeEvolution,
    settings: Settings,
    http: httpx.AsyncClient,
) -> None:
    bad = await send_media(evolution, db, conn, "photo.png", phone="5511955550101")
    good = await send_media(evolution, db, conn, "boleto.pdf", phone="5511955550102")
    await db.messages.update_one({"_id": bad["_id"]}, {"$set": UNREADABLE})
    fetcher = MediaFetcher(db, settings.model_copy(update={"UNREADABLE_GIVE_UP_SECONDS": 1.0}), http)
    await fetcher.run_once()
    # Within the give-up time: left pending (a newer process may read it); the other one is fetched.
    assert await _media_status(db, good["_id"]) == "ready"
    assert await _media_status(db, bad["_id"]) == "pending"

    async def given_up() -> bool:
        await fetcher.run_once()
        return await _media_status(db, bad["_id"]) == "failed"

    await wait_for(given_up, timeout=30)
    stored = await db.messages.find_one({"_id": bad["_id"]})
    assert "does not read" in stored["media"]["error"] and stored["created_at"] == "not a time"
    # Its entry needs nothing more: the queue's cursor is past both entries.
    entries = [e async for e in db.media_fetches.find({"message_id": {"$in": [bad["_id"], good["_id"]]}})]
    assert len(entries) == 2
    assert await media_repository.fetches.get_cursor(db) >= max(e["seq"] for e in entries)


async def test_a_media_message_mended_within_the_give_up_time_is_fetched(
    client: httpx.AsyncClient,
    db: Any,
    tenant: Tenant,
    conn: dict[str, Any],
    evolution: FakeEvolution,
    settings: Settings,
    http: httpx.AsyncClient,
) -> None:
    message = await send_media(evolution, db, conn, "photo.png", phone="5511955550103")
    created_at = message["created_at"]
    await db.messages.update_one({"_id": message["_id"]}, {"$set": UNREADABLE})
    fetcher = MediaFetcher(db, settings, http)  # the default give-up time: far longer than this test
    for _ in range(3):
        await fetcher.run_once()
    assert await _media_status(db, message["_id"]) == "pending"

    await db.messages.update_one({"_id": message["_id"]}, {"$set": {"created_at": created_at}})

    async def ready() -> bool:
        await fetcher.run_once()
        return await _media_status(db, message["_id"]) == "ready"

    await wait_for(ready, timeout=30)
    r = await client.get(f"/api/v1/messages/{message['_id']}/media", headers=tenant.headers)
    assert r.status_code == 200 and r.content == fixture("photo.png")


async def test_a_fetch_whose_entry_does_not_read_is_failed_announced_and_counted(
    client: httpx.AsyncClient,
    db: Any,
    tenant: Tenant,
    conn: dict[str, Any],
    evolution: FakeEvolution,
    settings: Settings,
    http: httpx.AsyncClient,
) -> None:
    """The message reads but its fetch entry does not: after the give-up time its open screens
    are told it failed (they would show "carregando…" until reloaded), and the metric counts it."""
    message = await send_media(evolution, db, conn, "photo.png", phone="5511955550104")
    await db.media_fetches.update_one({"message_id": message["_id"]}, {"$set": {"enqueued_at": "not a time"}})
    runtime_of(db).seqlog_kept.clear()  # this process appended the entry: read it from the store
    counted = REGISTRY.get_sample_value("iaze_given_up_total", {"worker": "media"}) or 0.0
    fetcher = MediaFetcher(db, settings.model_copy(update={"UNREADABLE_GIVE_UP_SECONDS": 1.0}), http)

    async def given_up() -> bool:
        await fetcher.run_once()
        return await _media_status(db, message["_id"]) == "failed"

    await wait_for(given_up, timeout=30)
    told = await db.tenant_events.find({"type": "message.status", "data.message_id": message["_id"]}).to_list(None)
    assert [t["message"]["media"]["status"] for t in told][-1:] == ["failed"], told
    assert REGISTRY.get_sample_value("iaze_given_up_total", {"worker": "media"}) == counted + 1
