"""An agent corrects a reply it sent (Evolution's updateMessage), through the real API, the outbox
worker and the fake Evolution as its own process: the edit is recorded beside the reply, sent,
and the provider's report of it (MESSAGES_EDITED) is no second record — whether it comes after
the send is answered or before. An edit made on the phone is still recorded; what cannot be
edited is refused with nothing stored. Also: a phone's reaction held as the probable echo of an
agent's reaction is, once released, recorded as its own."""

import time
from datetime import timedelta
from typing import Any

import httpx

from backend.core.clock import utcnow
from backend.webhooks.service import message_id_for
from tests.factories import API, collection_counts
from tests.fakes.harness import FakeEvolution, wait_for
from tests.webhooks.evolution_shapes import envelope, key_id, pn_key, post, thread, upsert
from tests.webhooks.test_message_changes import _held_ticket, _lines, _sent_reply


async def _edits_sent(evolution: FakeEvolution, provider_id: str) -> list[dict[str, Any]]:
    return [s for s in await evolution.sent() if s.get("edited") == provider_id]


async def _results(db: Any, conn: dict[str, Any], event: str) -> list[Any]:
    raws = await db.webhook_events_raw.find({"connection_id": conn["id"], "event": event}).to_list(None)
    return [r.get("result") for r in raws if r["status"] != "received"]


async def _edited(client: httpx.AsyncClient, ticket_id: str, agent: dict[str, str], target: str, body: str) -> Any:
    return await client.post(f"{API}/tickets/{ticket_id}/messages/{target}/edit", json={"body": body}, headers=agent)


async def test_an_agent_edits_its_sent_reply_and_the_report_of_the_edit_is_no_second_record(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn, phone, _kid, ticket_id, agent = await _held_ticket(client, admin_headers, evolution, db)
    reply, reply_pid = await _sent_reply(client, db, ticket_id, agent, "Chega amanha")
    r = await _edited(client, ticket_id, agent, reply["id"], "Chega amanhã")
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["type"], made["annotates"], made["direction"], made["sender_type"]) == (
        "edit",
        reply["id"],
        "out",
        "agent",
    )
    assert made["body"].endswith("Chega amanhã") and made["body"].startswith("*")  # signed like the reply
    assert made["quoted"]["message_id"] == reply["id"]
    (sent,) = await wait_for(lambda: _edits_sent(evolution, reply_pid))
    assert (sent["text"], sent["number"]) == (made["body"], phone)

    async def echo_known() -> bool:
        return ["echo of an IAZE edit"] in await _results(db, conn, "messages.edited")

    await wait_for(echo_known)
    lines = _lines(await thread(client, tenant, ticket_id))
    assert [line for line in lines if line[1] == "edit"] == [("out", "edit", made["body"], reply["id"])]
    assert lines[1][2].endswith("Chega amanha")  # the reply keeps its first text

    async def edit_sent() -> bool:
        return bool((await db.messages.find_one({"_id": made["id"]}))["status"] == "sent")

    await wait_for(edit_sent)


async def test_the_report_of_an_agents_edit_before_its_send_is_answered_is_no_second_record(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn, _phone, _kid, ticket_id, agent = await _held_ticket(client, admin_headers, evolution, db)
    reply, reply_pid = await _sent_reply(client, db, ticket_id, agent, "Segue o boleto")
    await evolution.mode("ok", echo_first_seconds=0.5)  # MESSAGES_EDITED posted before the answer
    try:
        r = await _edited(client, ticket_id, agent, reply["id"], "Segue o boleto atualizado")
        assert r.status_code == 201, r.text
        await wait_for(lambda: _edits_sent(evolution, reply_pid))
    finally:
        await evolution.mode("ok", echo_first_seconds=0.0)

    async def edit_sent() -> bool:
        return bool((await db.messages.find_one({"_id": r.json()["id"]}))["status"] == "sent")

    await wait_for(edit_sent)

    async def reported() -> list[Any] | None:
        return await _results(db, conn, "messages.edited") or None

    assert await wait_for(reported) == [["echo of an IAZE edit"]]
    edits = [line for line in _lines(await thread(client, tenant, ticket_id)) if line[1] == "edit"]
    assert edits == [("out", "edit", r.json()["body"], reply["id"])]


async def test_an_edit_of_the_agents_reply_made_on_the_phone_is_recorded(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn, phone, _kid, ticket_id, agent = await _held_ticket(client, admin_headers, evolution, db)
    reply, reply_pid = await _sent_reply(client, db, ticket_id, agent, "Ate logo")
    protocol = {
        "key": {"remoteJid": f"{phone}@s.whatsapp.net", "fromMe": True, "id": reply_pid},
        "type": "MESSAGE_EDIT",
        "editedMessage": {"conversation": "Até logo!"},
        "timestampMs": int(time.time() * 1000),
    }
    await post(client, db, conn, envelope("messages.edited", protocol))
    edits = [line for line in _lines(await thread(client, tenant, ticket_id)) if line[1] == "edit"]
    assert edits == [("out", "edit", "Até logo!", reply["id"])]
    (record,) = await db.messages.find({"annotates": reply["id"], "type": "edit"}).to_list(None)
    assert record["sender_type"] == "system"  # typed on the connection's phone, not by an agent


async def test_what_cannot_be_edited_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn, _phone, kid, ticket_id, agent = await _held_ticket(client, admin_headers, evolution, db)
    reply, _pid = await _sent_reply(client, db, ticket_id, agent, "Oi")
    note = await client.post(f"{API}/tickets/{ticket_id}/notes", json={"body": "interno"}, headers=agent)
    old, _ = await _sent_reply(client, db, ticket_id, agent, "Faz tempo")
    await db.messages.update_one({"_id": old["id"]}, {"$set": {"created_at": utcnow() - timedelta(minutes=16)}})
    before = await collection_counts(db)
    mine_only = "only a text message you sent can be edited"
    for target, status, detail in (
        (message_id_for(conn["id"], kid), 409, mine_only),  # the client's message
        (old["id"], 409, "WhatsApp lets a message be edited only within 15 minutes of sending it"),
        (note.json()["id"], 404, "message not found in this ticket"),
        ("f" * 24, 404, "message not found in this ticket"),
    ):
        r = await _edited(client, ticket_id, agent, target, "novo texto")
        assert (r.status_code, r.json()["detail"]) == (status, detail), (target, r.text)
    assert (await _edited(client, ticket_id, agent, reply["id"], "   ")).status_code == 422
    # Only the holder edits, as it replies: the owner watching is refused.
    r = await _edited(client, ticket_id, tenant.headers, reply["id"], "novo texto")
    assert (r.status_code, r.json()["detail"]["message"]) == (409, "assume the ticket before replying")
    assert await collection_counts(db) == before


async def test_a_phone_reaction_held_as_an_agents_echo_is_recorded_once_released(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """The agent's reaction's echo is posted and its answer held back; meanwhile the same emoji,
    put on the same message from the phone, arrives: both are held. Once the answer comes, the
    phone's is released and recorded as a reaction of its own (before, its release bound it to
    the wrong record and it was taken for an echo: shown nowhere)."""
    tenant, conn, phone, kid, ticket_id, agent = await _held_ticket(client, admin_headers, evolution, db)
    original = message_id_for(conn["id"], kid)
    await evolution.mode("ok", hold_answer_next=1)
    try:
        r = await client.post(
            f"{API}/tickets/{ticket_id}/messages/{original}/reaction", json={"emoji": "👍"}, headers=agent
        )
        assert r.status_code == 201, r.text

        async def holds(n: int) -> bool:
            return await db.outbox_echoes.count_documents({"message_id": r.json()["id"]}) == n

        await wait_for(lambda: holds(1))  # the fake's echo, held while the answer is held back
        phone_reaction = {"reactionMessage": {"key": {"remoteJid": f"{phone}@s.whatsapp.net", "id": kid}, "text": "👍"}}
        await post(client, db, conn, upsert(pn_key(phone, key_id(), from_me=True), phone_reaction, "reactionMessage"))
        assert await holds(2)
    finally:
        await evolution.control("POST", "release")
        await evolution.mode("ok", hold_answer_next=0)

    async def both() -> list[Any] | None:
        found = [line for line in _lines(await thread(client, tenant, ticket_id)) if line[1] == "reaction"]
        return found if len(found) == 2 else None

    assert await wait_for(both) == [("out", "reaction", "👍", original)] * 2
