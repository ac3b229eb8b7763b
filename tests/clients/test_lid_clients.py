"""The client of a WhatsApp chat named by its LID, its number or both (clients.upsert_for_chat),
against the real store, with a competitor injected between one caller's writes: the caller is
held at a chosen step while the other runs to its end, then released."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from backend.clients import service as clients
from backend.core import natural_keys
from backend.core.ids import new_id
from backend.users import service as users
from tests.factories import unique_phone


def _lid() -> str:
    return "2" + f"{uuid.uuid4().int % 10**14:014d}"


def _held_at_first(
    original: Callable[..., Awaitable[Any]], when: Callable[..., bool]
) -> tuple[Callable[..., Awaitable[Any]], asyncio.Event, asyncio.Event]:
    """`original`, except that its first call `when` accepts waits for `release` (after setting
    `reached`) before it runs."""
    reached, release = asyncio.Event(), asyncio.Event()
    held = False

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal held
        if not held and when(*args, **kwargs):
            held = True
            reached.set()
            await release.wait()
        return await original(*args, **kwargs)

    return wrapper, reached, release


async def test_a_caller_held_between_its_keys_and_the_document_yields_one_client(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A (a delivery without the number) has claimed the LID key and not yet written the client
    when B (the same chat, with its number) runs: B writes the client the key names, with both;
    A's write then loses and reads it. One client, with its number and its LID."""
    reseller, lid, phone = new_id(), _lid(), unique_phone()
    insert, reached, release = _held_at_first(users.insert, lambda *a, **k: True)
    monkeypatch.setattr(users, "insert", insert)
    first = asyncio.create_task(clients.upsert_for_chat(db, reseller_id=reseller, phone="", lid=lid, name="A"))
    await asyncio.wait_for(reached.wait(), 10)
    second, second_created = await clients.upsert_for_chat(db, reseller_id=reseller, phone=phone, lid=lid, name="B")
    release.set()
    made, made_created = await first

    assert made.id == second.id and (made_created, second_created) == (False, True)
    assert [
        (d["_id"], d["phone"], d["whatsapp_lid"]) for d in await db.users.find({"reseller_id": reseller}).to_list(None)
    ] == [(made.id, phone, lid)]
    assert await clients.id_for_chat(db, reseller, phone=phone, lid="") == made.id


async def test_a_known_number_seen_with_its_lid_while_the_lid_alone_makes_a_client(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client Y is known by number. A delivery naming the chat by number and LID looks the LID
    up (unbound) and is held before it claims it for Y; meanwhile a delivery naming the chat by
    its LID alone claims it for a new client Z. The LID key decides: both deliveries are Z's, so
    the chat stays one conversation; the number stays Y's (the documented end: not merged)."""
    reseller, lid, phone = new_id(), _lid(), unique_phone()
    known, created = await clients.upsert_by_phone(db, reseller_id=reseller, phone=phone, name="Y")
    assert created
    claim, reached, release = _held_at_first(natural_keys.claim, lambda _db, kind, *a, **k: kind == clients.LID_KEY)
    monkeypatch.setattr(natural_keys, "claim", claim)
    with_number = asyncio.create_task(clients.upsert_for_chat(db, reseller_id=reseller, phone=phone, lid=lid, name="Y"))
    await asyncio.wait_for(reached.wait(), 10)
    lid_only, _ = await clients.upsert_for_chat(db, reseller_id=reseller, phone="", lid=lid, name="Z")
    release.set()
    resolved, _ = await with_number

    assert resolved.id == lid_only.id != known.id
    assert await clients.id_for_chat(db, reseller, phone=phone, lid=lid) == lid_only.id
    assert await clients.id_for_chat(db, reseller, phone=phone, lid="") == known.id
    stored = {
        d["_id"]: (d.get("phone"), d.get("whatsapp_lid"))
        for d in await db.users.find({"reseller_id": reseller}).to_list(None)
    }
    assert stored == {known.id: (phone, None), lid_only.id: (None, lid)}


async def test_the_lid_is_written_onto_a_client_known_by_number_and_a_redelivery_changes_nothing(db: Any) -> None:
    reseller, lid, phone = new_id(), _lid(), unique_phone()
    known, _ = await clients.upsert_by_phone(db, reseller_id=reseller, phone=phone, name="Y")
    for _ in range(2):
        client, created = await clients.upsert_for_chat(
            db, reseller_id=reseller, phone=phone, lid=lid, name="outro nome"
        )
        assert (client.id, client.name, client.phone, client.whatsapp_lid, created) == (
            known.id,
            "Y",
            phone,
            lid,
            False,
        )
    assert await db.users.count_documents({"reseller_id": reseller}) == 1
