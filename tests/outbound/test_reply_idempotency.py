"""`Idempotency-Key` on an agent's reply: an attempt repeated because its answer never came back
(a timeout, a dropped connection, a second click) stores and sends the reply once — after the
first attempt finished, while it is still in flight, and after it died between queueing the reply
and storing it."""

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from backend.messages import service as messages
from tests.factories import make_tenant
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.media.helpers import fixture
from tests.outbound.helpers import held_ticket, unsigned


async def _post(
    client: httpx.AsyncClient, ticket_id: str, headers: dict[str, str], key: str | None, **kwargs: Any
) -> httpx.Response:
    keyed = {**headers, "Idempotency-Key": key} if key is not None else headers
    return await client.post(f"/api/v1/tickets/{ticket_id}/messages", headers=keyed, **kwargs)


async def _sent(evolution: FakeEvolution, phone: str, text: str) -> list[dict[str, Any]]:
    return [s for s in await evolution.sent() if s["number"] == phone and unsigned(s.get("text") or "") == text]


async def _sent_once(evolution: FakeEvolution, phone: str, text: str, db: Any, message_id: str) -> None:
    """The reply was sent, and once: its message is past pending, and the fake got one send."""

    async def done() -> bool:
        doc = await db.messages.find_one({"_id": message_id})
        return bool(doc and doc["status"] != "pending")

    await wait_for(done)
    assert len(await _sent(evolution, phone, text)) == 1


async def _setup(client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any) -> Any:
    tenant = await make_tenant(client, admin_headers, agents=2)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    return tenant, ticket_id, phone, agent


async def test_a_repeated_attempt_answers_the_first_reply_and_sends_nothing_again(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    _, ticket_id, phone, agent = await _setup(client, admin_headers, evolution, db)
    key = str(uuid.uuid4())
    first = await _post(client, ticket_id, agent, key, json={"body": "Já verifico"})
    assert first.status_code == 201, first.text
    await _sent_once(evolution, phone, "Já verifico", db, first.json()["id"])
    again = await _post(client, ticket_id, agent, key, json={"body": "Já verifico"})
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    # Answered as the reply is now, even once the ticket is finalized (not a 409 for a reply that exists).
    r = await client.post(f"/api/v1/tickets/{ticket_id}/finalize", headers=agent)
    assert r.status_code == 200, r.text
    late = await _post(client, ticket_id, agent, key, json={"body": "Já verifico"})
    assert late.status_code == 201 and late.json()["id"] == first.json()["id"]
    assert await db.messages.count_documents({"ticket_id": ticket_id, "sender_id": first.json()["sender_id"]}) == 1
    assert len(await _sent(evolution, phone, "Já verifico")) == 1
    # Without a key, or with another one, a reply is a new reply (in a ticket still held: 409 here).
    other = await _post(client, ticket_id, agent, str(uuid.uuid4()), json={"body": "Já verifico"})
    assert other.status_code == 409


async def test_keys_are_per_agent_and_per_ticket_and_a_bad_key_is_refused_with_nothing_stored(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, ticket_id, _, agent = await _setup(client, admin_headers, evolution, db)
    key = "tecla-repetida"
    first = await _post(client, ticket_id, agent, key, json={"body": "primeira"})
    assert first.status_code == 201, first.text
    # The same key from another agent is that agent's own attempt, not a replay of the first
    # agent's reply (here refused: that agent, in another department, cannot see the ticket).
    stranger = await _post(client, ticket_id, tenant.agents[1]["headers"], key, json={"body": "outra"})
    assert stranger.status_code == 404, stranger.text
    before = await db.messages.count_documents({"ticket_id": ticket_id})
    for bad in ["", "x" * 101, "com espaco"]:
        r = await _post(client, ticket_id, agent, bad, json={"body": "não deve ficar"})
        assert r.status_code == 422, (bad, r.text)
    assert await db.messages.count_documents({"ticket_id": ticket_id}) == before
    # Without a key every attempt is a reply of its own (as before keys existed).
    plain = [await _post(client, ticket_id, agent, None, json={"body": "sem chave"}) for _ in range(2)]
    assert len({r.json()["id"] for r in plain}) == 2


async def test_two_attempts_at_once_store_and_send_one_reply(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first attempt is held after queueing the reply, before storing it; the second runs
    # through in full meanwhile (a second click while the first request hangs).
    _, ticket_id, phone, agent = await _setup(client, admin_headers, evolution, db)
    key = str(uuid.uuid4())
    queued, release = asyncio.Event(), asyncio.Event()
    original = messages.append

    async def held(db_: Any, ticket: Any, **kwargs: Any) -> Any:
        if kwargs.get("body", "").endswith("Um instante") and not queued.is_set():
            queued.set()
            await release.wait()
        return await original(db_, ticket, **kwargs)

    monkeypatch.setattr(messages, "append", held)
    first = asyncio.create_task(_post(client, ticket_id, agent, key, json={"body": "Um instante"}))
    await asyncio.wait_for(queued.wait(), 30)
    second = await _post(client, ticket_id, agent, key, json={"body": "Um instante"})
    release.set()
    answered = await first
    assert (answered.status_code, second.status_code) == (201, 201), (answered.text, second.text)
    assert answered.json()["id"] == second.json()["id"]
    await _sent_once(evolution, phone, "Um instante", db, second.json()["id"])
    assert await db.outbox.count_documents({"message_id": second.json()["id"]}) == 2  # one send all the same


async def test_an_attempt_that_died_after_queueing_is_completed_by_the_next_one(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, ticket_id, phone, agent = await _setup(client, admin_headers, evolution, db)
    key = str(uuid.uuid4())
    original = messages.append

    async def dies(db_: Any, ticket: Any, **kwargs: Any) -> Any:
        raise ConnectionResetError("request died after queueing the reply")

    monkeypatch.setattr(messages, "append", dies)
    with pytest.raises(ConnectionResetError):
        await _post(client, ticket_id, agent, key, json={"body": "Retomando"})
    monkeypatch.setattr(messages, "append", original)
    retried = await _post(client, ticket_id, agent, key, json={"body": "Retomando"})
    assert retried.status_code == 201, retried.text
    await _sent_once(evolution, phone, "Retomando", db, retried.json()["id"])
    # The reply the dead attempt had queued, completed: its entry and the retry's, one message.
    assert await db.outbox.count_documents({"message_id": retried.json()["id"]}) == 2


async def test_a_repeated_file_reply_is_the_first_one(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    _, ticket_id, phone, agent = await _setup(client, admin_headers, evolution, db)
    key, png = str(uuid.uuid4()), fixture("photo.png")
    files = {"file": ("foto.png", png, "image/png")}
    first = await _post(client, ticket_id, agent, key, files=files, data={"body": "segue a foto"})
    assert first.status_code == 201, first.text
    again = await _post(client, ticket_id, agent, key, files=files, data={"body": "segue a foto"})
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]

    async def sent_files() -> list[dict[str, Any]]:
        return [s for s in await evolution.sent() if s["number"] == phone and s.get("media")]

    await wait_for(sent_files)
    doc = await wait_for(lambda: _past_pending(db, first.json()["id"]))
    assert doc["media"]["name"] == "foto.png"
    assert len(await sent_files()) == 1
    assert await db.messages.count_documents({"ticket_id": ticket_id, "type": "image"}) == 1


async def _past_pending(db: Any, message_id: str) -> dict[str, Any] | None:
    doc: dict[str, Any] | None = await db.messages.find_one({"_id": message_id})
    return doc if doc is not None and doc["status"] != "pending" else None
