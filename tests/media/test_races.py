"""Interleavings around the media fetch: competitors injected between storing a media message
and its fetch completing (a finalize of its ticket, a second fetcher on the same entry)."""

import asyncio
import hashlib
import os
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.collection import AsyncCollection

from backend.connections.providers.base import FetchedMedia
from backend.core.runtime import runtime_of
from backend.media import worker
from backend.media.models import FetchEntry, MediaRecord
from backend.messages import repository as message_repository
from backend.messages.models import Message
from backend.webhooks.service import message_id_for
from tests.factories import Tenant
from tests.fakes.harness import FakeEvolution, wait_for
from tests.media.helpers import fixture, send_media, until_media


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"MEDIA_FETCH_POLL_SECONDS": 0.1, "MEDIA_FETCH_BACKOFF_BASE_SECONDS": 0.2, "MEDIA_FETCH_LEASE_SECONDS": 30.0}


Competitor = Callable[[worker.MediaFetcher, FetchEntry], Awaitable[None]]


def inject(monkeypatch: pytest.MonkeyPatch, competitor: Competitor) -> list[dict[str, Any]]:
    """Runs `competitor` once, inside the first fetch, after the attempt is claimed and the bytes
    obtained, before they are stored and the message moves to ready."""
    original = worker.MediaFetcher._bytes
    seen: list[FetchEntry] = []

    async def wrapped(self: worker.MediaFetcher, entry: FetchEntry) -> FetchedMedia:
        fetched = await original(self, entry)
        if not seen:
            seen.append(entry)
            await competitor(self, entry)
        return fetched

    monkeypatch.setattr(worker.MediaFetcher, "_bytes", wrapped)
    return seen


async def test_finalize_between_the_message_and_its_bytes(
    client: httpx.AsyncClient,
    db: Any,
    tenant: Tenant,
    conn: dict[str, Any],
    evolution: FakeEvolution,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    finalized: list[int] = []

    async def finalize(fetcher: worker.MediaFetcher, entry: FetchEntry) -> None:
        message = await db.messages.find_one({"_id": entry.message_id})
        r = await client.post(f"/api/v1/tickets/{message['ticket_id']}/finalize", headers=tenant.headers)
        finalized.append(r.status_code)

    seen = inject(monkeypatch, finalize)
    phone = "5511955550001"
    message = await send_media(evolution, db, conn, "photo.png", phone=phone)
    ready = await until_media(db, message["_id"], "ready")
    assert seen and finalized == [200]
    # Stored before the finalize: it stays in its ticket, which stays finalized; no ticket opened.
    assert ready["ticket_id"] == message["ticket_id"]
    ticket = await db.tickets.find_one({"_id": message["ticket_id"]})
    assert ticket["status"] == "finalizado"
    client_id = ticket["client_id"]
    assert await db.tickets.count_documents({"client_id": client_id}) == 1
    r = await client.get(f"/api/v1/messages/{message['_id']}/media", headers=tenant.headers)
    assert r.status_code == 200 and r.content == fixture("photo.png")
    announced = await db.tenant_events.find({"type": "message.status", "message.id": message["_id"]}).to_list(None)
    assert any(a["message"]["media"]["status"] == "ready" for a in announced)


async def test_a_second_fetcher_on_the_same_entry_does_not_fetch_again(
    client: httpx.AsyncClient,
    db: Any,
    tenant: Tenant,
    conn: dict[str, Any],
    evolution: FakeEvolution,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    answers: list[bool] = []

    async def second_fetcher(fetcher: worker.MediaFetcher, entry: FetchEntry) -> None:
        other = worker.MediaFetcher(db, settings, fetcher.http)  # as another process's worker
        answers.append(await other.handle(entry))

    inject(monkeypatch, second_fetcher)
    message = await send_media(evolution, db, conn, "voice.ogg")
    await until_media(db, message["_id"], "ready")
    assert answers == [False]  # it found the attempt claimed, under its lease, and left it
    fetches = await evolution.control("GET", "media_fetches")
    assert [f["body"]["message"]["key"]["id"] for f in fetches].count(message["key_id"]) == 1
    attempts = await db.media_fetch_attempts.find({"message_id": message["_id"]}).to_list(None)
    assert [a["result"] for a in attempts] == ["stored"]


async def test_a_fetcher_that_died_mid_attempt_is_taken_over_after_its_lease(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, conn: dict[str, Any], evolution: FakeEvolution
) -> None:
    # A worker of another process claimed attempt 1 of this message and died: its claim stays
    # unfinished, under a lease that ends shortly.
    key_id = "3EB0DEADWORKER0001"
    message_id = message_id_for(conn["id"], key_id)
    now = datetime.now(UTC)
    await db.media_fetch_attempts.insert_one(
        {
            "_id": f"{message_id}:1",
            "message_id": message_id,
            "attempt": 1,
            "round": 0,
            "worker": "dead",
            "claimed_at": now,
            "lease_until": now + timedelta(seconds=2),
            "result": None,
        }
    )
    message = await send_media(evolution, db, conn, "boleto.pdf", key_id=key_id)
    assert message["_id"] == message_id
    await until_media(db, message_id, "ready")
    attempts = await db.media_fetch_attempts.find({"message_id": message_id}).sort("attempt", 1).to_list(None)
    assert [a["result"] for a in attempts] == [None, "stored"]
    assert attempts[1]["claimed_at"] >= attempts[0]["lease_until"]  # taken over only once the lease ended


def count_record_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The media record reads the fetcher makes (service.get_record), by sha256."""
    original = worker.service.get_record
    reads: list[str] = []

    async def counted(db: Any, *, reseller_id: str, sha256: str) -> MediaRecord | None:
        reads.append(sha256)
        return await original(db, reseller_id=reseller_id, sha256=sha256)

    monkeypatch.setattr(worker.service, "get_record", counted)
    return reads


async def test_a_fetch_moves_its_message_with_the_record_it_stored_without_reading_it_back(
    client: httpx.AsyncClient,
    db: Any,
    tenant: Tenant,
    conn: dict[str, Any],
    evolution: FakeEvolution,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads = count_record_reads(monkeypatch)
    content = os.urandom(300 * 1024)
    message = await send_media(evolution, db, conn, "boleto.pdf", content=content)
    ready = await until_media(db, message["_id"], "ready")
    sha = hashlib.sha256(content).hexdigest()
    assert ready["media"]["sha256"] == sha and ready["media"]["size"] == len(content)
    assert reads == []  # the old code read back the record its own store had just returned
    r = await client.get(f"/api/v1/messages/{message['_id']}/media", headers=tenant.headers)
    assert r.status_code == 200 and r.content == content


async def test_a_fetch_reads_no_message_and_moves_it_with_one_conditional_write(
    client: httpx.AsyncClient,
    db: Any,
    tenant: Tenant,
    conn: dict[str, Any],
    evolution: FakeEvolution,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every `_id` read of a message made by the fetch (core/conditional's included), counted at
    # the driver; the test's own polling is not the worker's.
    reads: list[str] = []
    attempt_reads: list[str] = []
    original = AsyncCollection.find_one

    async def counted(self: AsyncCollection[Any], filter: Any = None, *args: Any, **kwargs: Any) -> Any:
        if self.name == "messages" and any(f.filename.endswith("media/worker.py") for f in traceback.extract_stack()):
            reads.append(str((filter or {}).get("_id")))
        if self.name == "media_fetch_attempts":
            attempt_reads.append(str((filter or {}).get("_id")))
        return await original(self, filter, *args, **kwargs)

    monkeypatch.setattr(AsyncCollection, "find_one", counted)
    message = await send_media(evolution, db, conn, "boleto.pdf", content=os.urandom(100 * 1024))
    ready = await until_media(db, message["_id"], "ready")
    assert ready["media"]["status"] == "ready"
    shown = await client.get(f"/api/v1/messages/{message['_id']}/media", headers=tenant.headers)
    assert shown.status_code == 200
    # None: the fetcher takes the message as the intake stored it (media.service `_hand_over`);
    # the conditional write's check is the filter on MongoDB and that copy on FerretDB. The old
    # code read it four times on FerretDB, then twice, then once.
    assert reads.count(message["_id"]) == 0, reads
    # A message this process's fetcher has not looked at before claims its attempt 1 without
    # reading its attempts (the claim's unique insert decides; test_a_fetcher_that_died_mid_attempt
    # is the case where attempt 1 exists).
    assert [r for r in attempt_reads if r.startswith(message["_id"])] == []


async def finalize_and_refile(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, conn: dict[str, Any], evolution: FakeEvolution, message_id: str
) -> tuple[str, str]:
    """The competitor of the move tests: the message's ticket is finalized, the client's next
    message opens its next ticket, and the message is refiled there (what the finalize's refile
    does to a message stamped after it). Returns (that next ticket, the opening message)."""
    message = await db.messages.find_one({"_id": message_id})
    first = message["ticket_id"]
    phone = (await db.tickets.find_one({"_id": first}))["client_phone"]
    r = await client.post(f"/api/v1/tickets/{first}/finalize", headers=tenant.headers)
    assert r.status_code == 200, r.text
    opener = await send_media(evolution, db, conn, "photo.png", phone=phone)
    second = opener["ticket_id"]
    assert second != first
    assert await message_repository.move_to_ticket(
        db, message_id, from_ticket_id=first, to_ticket_id=second, at=datetime.now(UTC)
    )
    return second, opener["_id"]


async def assert_refiled_and_announced_there(
    db: Any, message: dict[str, Any], moved_to: str, opener_id: str
) -> dict[str, Any]:
    """The status write did not put the message back under the finalized ticket, and its
    announcement names the ticket it is in. Waits for the opener's fetch too: nothing of the test
    is left pending for the next one's hooks."""
    ready = await until_media(db, message["_id"], "ready")
    await until_media(db, opener_id, "ready")
    assert ready["ticket_id"] == moved_to and ready["moved_from_ticket_id"] == message["ticket_id"]
    assert (await db.tickets.find_one({"_id": message["ticket_id"]}))["status"] == "finalizado"

    async def announced_ready() -> list[dict[str, Any]] | None:
        # The announcement follows the status write: looked for until it is stored.
        records = await db.tenant_events.find({"type": "message.status", "message.id": message["_id"]}).to_list(None)
        return [a for a in records if a["message"]["media"]["status"] == "ready"] or None

    shown = await wait_for(announced_ready, timeout=10)
    assert all(a["message"]["ticket_id"] == moved_to for a in shown)
    return ready


async def test_a_move_between_the_fetchers_read_and_its_write_keeps_the_move_and_is_announced_where_it_went(
    client: httpx.AsyncClient,
    db: Any,
    tenant: Tenant,
    conn: dict[str, Any],
    evolution: FakeEvolution,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The competitor runs after the fetcher looked at the message and before its status write.
    refiled: list[tuple[str, str]] = []

    async def competitor(fetcher: worker.MediaFetcher, entry: FetchEntry) -> None:
        refiled.append(await finalize_and_refile(client, db, tenant, conn, evolution, entry.message_id))

    inject(monkeypatch, competitor)
    message = await send_media(evolution, db, conn, "boleto.pdf", phone="5511955550077", content=os.urandom(50 * 1024))
    await until_media(db, message["_id"], "ready")
    assert refiled, "the competitor did not run"
    await assert_refiled_and_announced_there(db, message, *refiled[0])


async def test_a_move_before_the_fetchers_first_look_is_kept_though_it_was_handed_the_older_copy(
    client: httpx.AsyncClient,
    db: Any,
    tenant: Tenant,
    conn: dict[str, Any],
    evolution: FakeEvolution,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fetcher gets the message as the intake stored it, not a read (media.service
    # `_hand_over`). The competitor runs before the fetcher's first look, while that copy waits:
    # the copy then names a ticket the message has left.
    refiled: list[tuple[str, str]] = []
    handed: list[bool] = []
    original = worker.MediaFetcher.handle

    async def competitor_first(self: worker.MediaFetcher, entry: FetchEntry) -> bool:
        if not handed:
            handed.append((db.name, entry.message_id) in runtime_of(db).media_fetch_handed)
            refiled.append(await finalize_and_refile(client, db, tenant, conn, evolution, entry.message_id))
        return await original(self, entry)

    monkeypatch.setattr(worker.MediaFetcher, "handle", competitor_first)
    message = await send_media(evolution, db, conn, "boleto.pdf", phone="5511955550099", content=os.urandom(40 * 1024))
    await until_media(db, message["_id"], "ready")
    assert handed == [True], "the fetcher was not handed the intake's copy"
    await assert_refiled_and_announced_there(db, message, *refiled[0])
    r = await client.get(f"/api/v1/messages/{message['_id']}/media", headers=tenant.headers)
    assert r.status_code == 200 and len(r.content) == 40 * 1024


async def test_a_fetcher_that_dies_between_storing_the_bytes_and_moving_the_message(
    client: httpx.AsyncClient,
    db: Any,
    tenant: Tenant,
    conn: dict[str, Any],
    evolution: FakeEvolution,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first status move raises as a worker killed right there would stop: its attempt says
    # "stored", the message still "pending". The next pass (no record in hand) must find the
    # stored content and move the message, without fetching or storing it again.
    reads = count_record_reads(monkeypatch)
    original = worker.MediaFetcher._ready
    died: list[str] = []

    async def dies_once(self: worker.MediaFetcher, message: Message, record: MediaRecord) -> None:
        if not died:
            pending = await db.messages.find_one({"_id": message.id})
            died.append(pending["media"]["status"])
            raise RuntimeError("worker killed before moving the message")
        await original(self, message, record)

    monkeypatch.setattr(worker.MediaFetcher, "_ready", dies_once)
    content = os.urandom(200 * 1024)
    message = await send_media(evolution, db, conn, "voice.ogg", content=content)
    ready = await until_media(db, message["_id"], "ready")
    sha = hashlib.sha256(content).hexdigest()
    assert died == ["pending"]  # never shown ready before its bytes' record was there
    assert ready["media"]["sha256"] == sha and reads == [sha]  # the takeover read it, once
    attempts = await db.media_fetch_attempts.find({"message_id": message["_id"]}).to_list(None)
    assert [a["result"] for a in attempts] == ["stored"]
    fetches = await evolution.control("GET", "media_fetches")
    assert [f["body"]["message"]["key"]["id"] for f in fetches].count(message["key_id"]) == 1
    files = await db["media.files"].count_documents({"metadata.reseller_id": tenant.id, "metadata.sha256": sha})
    assert files == 1  # one copy
    r = await client.get(f"/api/v1/messages/{message['_id']}/media", headers=tenant.headers)
    assert r.status_code == 200 and r.content == content


async def test_a_move_sent_while_a_media_write_is_in_flight_waits_for_it_and_both_stay(
    db: Any, conn: dict[str, Any], evolution: FakeEvolution, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On FerretDB an update writes back the whole message as it read it: a move sent beside the
    # fetch's media write could be undone by it, filing the message back under the finalized
    # ticket it was leaving. Both are held at the driver: the media write in flight, the move
    # must not be sent until it is done.
    message = await send_media(evolution, db, conn, "photo.png", phone="5511955550088")
    stored = await until_media(db, message["_id"], "ready")
    first = stored["ticket_id"]
    in_flight, release, move_sent = asyncio.Event(), asyncio.Event(), asyncio.Event()
    original = AsyncCollection.find_one_and_update

    async def held(self: AsyncCollection[Any], filter: Any, update: Any, *args: Any, **kwargs: Any) -> Any:
        if self.name == "messages" and filter.get("_id") == message["_id"]:
            if "media.status" in update["$set"]:
                in_flight.set()
                await release.wait()
            elif "ticket_id" in update["$set"]:
                move_sent.set()
        return await original(self, filter, update, *args, **kwargs)

    monkeypatch.setattr(AsyncCollection, "find_one_and_update", held)
    media = asyncio.create_task(message_repository.set_media_internal(db, Message.load(stored), {"status": "ready"}))
    await asyncio.wait_for(in_flight.wait(), 30)
    at = datetime.now(UTC)
    move = asyncio.create_task(
        message_repository.move_to_ticket(db, message["_id"], from_ticket_id=first, to_ticket_id="elsewhere", at=at)
    )
    with pytest.raises(TimeoutError):  # the old code sent it at once, beside the media write
        await asyncio.wait_for(move_sent.wait(), 2.0)
    release.set()
    assert (await media) is not None and await move
    after = await db.messages.find_one({"_id": message["_id"]})
    assert (after["ticket_id"], after["moved_from_ticket_id"]) == ("elsewhere", first)
    assert after["media"]["status"] == "ready"
    assert (db.name, "messages", message["_id"]) not in runtime_of(db).document_writers  # written: out of the map
    monkeypatch.undo()
    assert await message_repository.move_to_ticket(  # filed back where it was, for the tests after this one
        db, message["_id"], from_ticket_id="elsewhere", to_ticket_id=first, at=at
    )
