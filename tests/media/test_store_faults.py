"""The inbound media fetch when the store loses a write: the attachment still ends `ready`, its bytes
served whole, never `ready` before they are stored, never `pending` for good.

The backend reaches the store through a relay (tests/tcp_relay.py) that stalls the one connection
carrying a chosen write of one fetched (not inline) media message: the command never runs
(`request`) or runs with its answer lost (`reply`); MONGO_SOCKET_TIMEOUT_MS turns the silence into
a NetworkTimeout. The writes, in the order a fetch makes them (backend/media/service.py,
worker.py, core/attempts.py): the fetch's queue entry, the attempt's claim, the GridFS chunks, the
GridFS `files` document, the media record (the per-tenant sha256 dedupe), the attempt's verdict (a
success, or a provider error), the message's move to ready. Each case runs with a second client of
the same tenant sending the same file (same sha256) while the fault is outstanding, or only after
it, and a third one after all. Every state is read past the relay (`direct`), every wait is
bounded."""

import asyncio
import hashlib
import math
import os
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from backend.media import repository
from backend.media import service as media
from backend.messages.service import message_id_for
from tests.factories import Tenant, unique_phone
from tests.fakes.harness import FakeEvolution, wait_for
from tests.media.helpers import fixture, media_of, send_media
from tests.tcp_relay import Lose, StoreProxy, command_marker, relayed, string_element

LEASE_SECONDS = 3.0
READY_WITHIN = 45.0


@pytest.fixture(scope="module")
def settings_overrides(store_relay: StoreProxy) -> dict[str, Any]:
    return {
        **relayed(store_relay),
        "WEBHOOK_BACKOFF_BASE_SECONDS": 0.1,
        "MEDIA_FETCH_POLL_SECONDS": 0.1,
        "MEDIA_FETCH_BACKOFF_BASE_SECONDS": 0.2,
        "MEDIA_FETCH_LEASE_SECONDS": LEASE_SECONDS,
        "MEDIA_FETCH_MAX_ATTEMPTS": 6,
    }


@dataclass(frozen=True)
class Case:
    name: str  # the fixture file (its kind and mime)
    content: bytes  # what the provider holds: unique per case, so nothing is deduplicated by accident
    sha256: str
    key_id: str
    message_id: str
    reseller_id: str

    @property
    def record_id(self) -> str:
        return repository.record_id(self.reseller_id, self.sha256)

    @property
    def first_attempt(self) -> str:
        return f"{self.message_id}:1"


# Which file each step is tried with: images and documents both go through the same store.
STEPS = {
    "entry": "boleto.pdf",
    "claim": "photo.png",
    "chunks": "photo.png",
    "files": "boleto.pdf",
    "record": "photo.png",
    "verdict": "boleto.pdf",
    "error_verdict": "photo.png",
    "ready": "boleto.pdf",
}


def new_case(step: str, tenant: Tenant, conn: dict[str, Any]) -> Case:
    name = STEPS[step]
    # The fixture's own bytes then a random tail: one GridFS chunk, one relay read, unique content.
    content = fixture(name) + os.urandom(16 * 1024)
    key_id = f"3EB0FAULT{uuid.uuid4().hex[:12].upper()}"
    return Case(
        name=name,
        content=content,
        sha256=hashlib.sha256(content).hexdigest(),
        key_id=key_id,
        message_id=message_id_for(conn["id"], key_id),
        reseller_id=tenant.id,
    )


def markers(step: str, case: Case) -> tuple[bytes, ...]:
    """The bytes on the wire of the one write of `case`'s fetch that the store is to lose."""
    if step == "entry":  # the fetch queued by the webhook's processing, after the message
        return command_marker("insert", repository.FETCHES), string_element("message_id", case.message_id)
    if step == "claim":
        return command_marker("insert", repository.FETCH_ATTEMPTS), string_element("_id", case.first_attempt)
    if step == "chunks":  # the chunk carries the content itself; its tail is this case's alone
        return command_marker("insert", repository.CHUNKS), case.content[-64:]
    if step == "files":
        return command_marker("insert", repository.FILES), string_element("sha256", case.sha256)
    if step == "record":
        return command_marker("insert", repository.COLLECTION), string_element("_id", case.record_id)
    if step in ("verdict", "error_verdict"):
        result = "stored" if step == "verdict" else "error"
        return (
            command_marker("update", repository.FETCH_ATTEMPTS),
            string_element("_id", case.first_attempt),
            string_element("result", result),
        )
    assert step == "ready", step
    return (
        command_marker("findAndModify", "messages"),
        string_element("_id", case.message_id),
        string_element("media.status", "ready"),
    )


async def until_ready(direct: Any, message_id: str) -> dict[str, Any]:
    """The message once its media is ready; a `failed` fails the test at once (the provider had the bytes)."""

    async def ready() -> dict[str, Any] | None:
        doc: dict[str, Any] | None = await direct.messages.find_one({"_id": message_id})
        status = ((doc or {}).get("media") or {}).get("status")
        assert status != "failed", doc
        return doc if status == "ready" else None

    found: dict[str, Any] = await wait_for(ready, timeout=READY_WITHIN)
    return found


async def served_whole(
    client: httpx.AsyncClient, direct: Any, tenant: Tenant, message: dict[str, Any], case: Case
) -> dict[str, Any]:
    """Waits for the message to be ready, then checks that what every reader gets is the provider's bytes."""
    stored = await until_ready(direct, message["_id"])
    assert stored["media"]["sha256"] == case.sha256, stored["media"]
    assert stored["media"]["size"] == len(case.content), stored["media"]
    r = await client.get(f"/api/v1/messages/{message['_id']}/media", headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-length"] == str(len(case.content))
    assert r.content == case.content  # byte for byte what the provider had
    shown = await media_of(client, tenant.headers, stored)  # what an agent's thread shows
    assert shown["media"]["status"] == "ready" and shown["media"]["sha256"] == case.sha256, shown["media"]
    # The record and the GridFS file it names hold every byte (the backup verify's own check).
    checked = await media.check_stored(
        direct, records=[media.MediaRef(reseller_id=case.reseller_id, sha256=case.sha256, size=len(case.content))]
    )
    assert checked.ok, checked.problems
    return stored


async def never_partial(
    client: httpx.AsyncClient, direct: Any, tenant: Tenant, message: dict[str, Any], case: Case
) -> None:
    """At any moment: a download answers the whole content, or 409 while the message is not ready."""
    doc = await direct.messages.find_one({"_id": message["_id"]})
    r = await client.get(f"/api/v1/messages/{message['_id']}/media", headers=tenant.headers)
    if r.status_code == 200:
        assert r.content == case.content
    else:
        assert r.status_code == 409, r.text
        assert r.json()["detail"]["status"] == "pending", r.text
        assert doc["media"]["status"] == "pending", doc["media"]


async def attempt_results(direct: Any, message_id: str) -> list[str | None]:
    found = await direct.media_fetch_attempts.find({"message_id": message_id}).sort("attempt", 1).to_list(None)
    return [a.get("result") for a in found]


async def stored_copies(direct: Any, case: Case) -> tuple[int, int]:
    """(GridFS `files` documents, chunks) holding `case`'s content, named by a record or not."""
    files = await direct[repository.FILES].count_documents({"metadata.sha256": case.sha256})
    chunks = await direct[repository.CHUNKS].count_documents({"data": case.content})
    return files, chunks


# What each lost write leaves behind once the fetch recovered on its own (no second client during
# it): the attempts' results, and the copies of the content the store holds. The evidence that the
# fault hit the write it names, and that the recovery took the way the design describes.
ALONE: dict[tuple[str, Lose], tuple[list[str | None], tuple[int, int]]] = {
    ("entry", "request"): (["stored"], (1, 1)),  # the append is tried again at once
    ("entry", "reply"): (["stored"], (1, 1)),  # ... and meets its own entry, stored once
    ("claim", "request"): (["stored"], (1, 1)),  # the claim never ran: attempt 1 claimed again
    ("claim", "reply"): ([None, "stored"], (1, 1)),  # claimed, never heard: taken over after the lease
    ("chunks", "request"): ([None, "stored"], (1, 1)),
    ("chunks", "reply"): ([None, "stored"], (1, 2)),  # the lost attempt's chunks stay, named by no file
    ("files", "request"): ([None, "stored"], (1, 2)),
    ("files", "reply"): ([None, "stored"], (2, 2)),  # a file no record names
    ("record", "request"): ([None, "stored"], (2, 2)),
    ("record", "reply"): ([None, "stored"], (1, 1)),  # the record was written: the next attempt finds it
    ("verdict", "request"): ([None, "stored"], (1, 1)),
    ("verdict", "reply"): (["stored"], (1, 1)),  # the next pass settles the recorded success
    ("error_verdict", "request"): ([None, "stored"], (1, 1)),
    ("error_verdict", "reply"): (["error", "stored"], (1, 1)),
    ("ready", "request"): (["stored"], (1, 1)),  # the next pass settles the recorded success
    ("ready", "reply"): (["stored"], (1, 1)),
}


async def told_ready(direct: Any, message: dict[str, Any]) -> None:
    """Open screens were told the attachment is ready (a `message.status` record carrying it),
    also when the worker never heard back from its own move to ready."""

    async def announced() -> bool:
        query = {"type": "message.status", "message.id": message["_id"], "message.media.status": "ready"}
        return await direct.tenant_events.count_documents(query) >= 1

    await wait_for(announced, timeout=15)


@pytest.mark.parametrize("companion", ["alone", "during"])
@pytest.mark.parametrize("lose", ["request", "reply"])
@pytest.mark.parametrize("step", list(STEPS))
async def test_a_lost_store_write_never_loses_the_attachment_nor_shows_it_ready_without_its_bytes(
    client: httpx.AsyncClient,
    direct: Any,
    tenant: Tenant,
    conn: dict[str, Any],
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
    step: str,
    lose: Lose,
    companion: str,
) -> None:
    case = new_case(step, tenant, conn)
    if step == "error_verdict":
        await evolution.mode("ok", media_fail_next=1)  # the first download answers 500: retryable
    sprung = store_proxy.stall_next(*markers(step, case), lose=lose)

    first = await send_media(evolution, direct, conn, case.name, content=case.content, key_id=case.key_id)
    assert first["_id"] == case.message_id
    await asyncio.wait_for(sprung.wait(), timeout=30)
    await never_partial(client, direct, tenant, first, case)  # in the middle of the fault

    second: dict[str, Any] | None = None
    if companion == "during":
        # Another client of the tenant sends the same file while the write is lost (its socket
        # still silent, or its attempt still under its lease).
        second = await send_media(evolution, direct, conn, case.name, content=case.content, phone=unique_phone())

    await served_whole(client, direct, tenant, first, case)
    await told_ready(direct, first)
    if second is not None:
        assert second["ticket_id"] != first["ticket_id"]
        await served_whole(client, direct, tenant, second, case)
    else:
        results, copies = ALONE[(step, lose)]
        assert await attempt_results(direct, case.message_id) == results
        assert await stored_copies(direct, case) == copies
        entries = await direct[repository.FETCHES].count_documents({"message_id": case.message_id})
        assert entries == 1

    # Nothing lost or doubled: the message is stored once, in its ticket.
    assert await direct.messages.count_documents({"_id": case.message_id}) == 1
    assert await direct.messages.count_documents({"ticket_id": first["ticket_id"]}) == 1
    # One record for the content, whichever store of it won.
    assert await direct[repository.COLLECTION].count_documents({"_id": case.record_id}) == 1

    # Another client sends the same file once all is settled: the stored copy is its answer.
    before = await stored_copies(direct, case)
    third = await send_media(evolution, direct, conn, case.name, content=case.content, phone=unique_phone())
    await served_whole(client, direct, tenant, third, case)
    assert await stored_copies(direct, case) == before  # deduplicated: no second copy written
    assert await attempt_results(direct, third["_id"]) == ["stored"]


async def test_a_large_file_whose_second_chunk_batch_is_lost_is_never_ready_with_part_of_its_bytes(
    client: httpx.AsyncClient,
    direct: Any,
    tenant: Tenant,
    conn: dict[str, Any],
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
) -> None:
    """A file of several chunk batches (repository.CHUNK_BATCH_BYTES per insert): the first batch is
    stored, the second never is. The first stored chunks must not make it a readable file, nor the
    message ready, and the next attempt stores it whole."""
    base = new_case("chunks", tenant, conn)
    content = fixture("boleto.pdf") + os.urandom(5 * 1024 * 1024)
    case = Case(
        name="boleto.pdf",
        content=content,
        sha256=hashlib.sha256(content).hexdigest(),
        key_id=base.key_id,
        message_id=base.message_id,
        reseller_id=base.reseller_id,
    )
    first_of_second_batch = math.ceil(repository.CHUNK_BATCH_BYTES / repository.CHUNK_SIZE)
    assert first_of_second_batch * repository.CHUNK_SIZE < len(content)  # there is a second batch
    start = first_of_second_batch * repository.CHUNK_SIZE
    sprung = store_proxy.stall_next(
        command_marker("insert", repository.CHUNKS), content[start : start + 64], lose="request"
    )
    first = await send_media(evolution, direct, conn, case.name, content=content, key_id=case.key_id)
    await asyncio.wait_for(sprung.wait(), timeout=30)
    await never_partial(client, direct, tenant, first, case)
    await served_whole(client, direct, tenant, first, case)
    assert await attempt_results(direct, case.message_id) == [None, "stored"]
    # The lost attempt's first batch stays behind, named by no file: one file, its chunk 0 twice.
    assert await direct[repository.FILES].count_documents({"metadata.sha256": case.sha256}) == 1
    assert await direct[repository.CHUNKS].count_documents({"data": content[: repository.CHUNK_SIZE]}) == 2
