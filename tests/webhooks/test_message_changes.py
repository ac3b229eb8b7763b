"""Edits, deletions for everyone and reactions, as Evolution API 2.3.6 posts them: MESSAGES_EDITED
(the protocol message itself: {key, type, editedMessage, timestampMs}, its key from the sender's
side), MESSAGES_DELETE (the revoked message's key) and reaction upserts (`reactionMessage`).
Each is recorded beside the message it changes, quoting it; that message keeps what it said.
Through the real webhook and API with the fake Evolution as its own process."""

import time
from typing import Any

import httpx
import pytest

from backend.core.config import Settings
from backend.messages import repository as message_repository
from backend.webhooks import repository as webhook_repository
from backend.webhooks.service import lane_of, message_id_for
from tests.factories import API, Tenant, collection_counts, make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.webhooks.evolution_shapes import OWNER, envelope, key_id, pn_key, post, thread, tickets_of, upsert

HOOK = "/api/v1/webhooks/whatsapp"


def _edit(kid: str, text: str, *, kind: Any = "MESSAGE_EDIT", at_ms: int | None = None) -> dict[str, Any]:
    """A client's edit: the key as its phone sent the protocol message (to our number, fromMe)."""
    protocol = {
        "key": {"remoteJid": f"{OWNER}@s.whatsapp.net", "fromMe": True, "id": kid},
        "type": kind,
        "editedMessage": {"conversation": text},
        "timestampMs": str(at_ms or int(time.time() * 1000)),
    }
    return envelope("messages.edited", protocol)


def _reaction(phone: str, target: str, emoji: str, *, from_me: bool = False) -> dict[str, Any]:
    reaction = {"reactionMessage": {"key": {"remoteJid": f"{phone}@s.whatsapp.net", "id": target}, "text": emoji}}
    return upsert(pn_key(phone, from_me=from_me), reaction, "reactionMessage")


def _lines(messages: list[dict[str, Any]]) -> list[tuple[str, str, str, str | None]]:
    """(direction, type, body, what it annotates) as the thread shows them."""
    return [(m["direction"], m["type"], m["body"], m["annotates"]) for m in messages]


async def _started(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> tuple[Tenant, dict[str, Any], str, str, str]:
    """A tenant whose client wrote once: (tenant, connection, phone, provider id, ticket id)."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    phone, kid = unique_phone(), key_id()
    await post(client, db, conn, upsert(pn_key(phone, kid), {"conversation": "quero 2 pizzas"}, "conversation"))
    (ticket,) = await tickets_of(client, tenant)
    return tenant, conn, phone, kid, ticket["id"]


async def test_a_clients_edit_shows_the_new_text_beside_the_original(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn, _phone, kid, ticket_id = await _started(client, admin_headers, evolution, db)
    original = message_id_for(conn["id"], kid)
    raw = await post(client, db, conn, _edit(kid, "quero 3 pizzas", at_ms=1_760_000_060_000))
    assert raw["status"] == "processed", raw["result"]
    shown = await thread(client, tenant, ticket_id)
    assert _lines(shown) == [
        ("in", "text", "quero 2 pizzas", None),  # kept as it was
        ("in", "edit", "quero 3 pizzas", original),
    ]
    assert shown[1]["quoted"] == {"message_id": original, "body": "quero 2 pizzas", "type": "text"}
    assert shown[1]["sender_type"] == "client"
    # The same edit again is the same record; a second edit (numeric type, as protobuf may send it) is another.
    await post(client, db, conn, _edit(kid, "quero 3 pizzas", at_ms=1_760_000_060_000))
    await post(client, db, conn, _edit(kid, "quero 4 pizzas", kind=14, at_ms=1_760_000_090_000))
    assert [b for _, _, b, _ in _lines(await thread(client, tenant, ticket_id))] == [
        "quero 2 pizzas",
        "quero 3 pizzas",
        "quero 4 pizzas",
    ]
    (ticket,) = await tickets_of(client, tenant)
    assert ticket["last_message_preview"] == "quero 4 pizzas"


async def test_a_message_deleted_for_everyone_is_kept_and_marked_in_both_shapes(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn, phone, kid, ticket_id = await _started(client, admin_headers, evolution, db)
    second = key_id()
    await post(client, db, conn, upsert(pn_key(phone, second), {"conversation": "meu cartão 4111"}, "conversation"))
    deleted = envelope("messages.delete", {"remoteJid": f"{phone}@s.whatsapp.net", "fromMe": False, "id": second})
    raw = await post(client, db, conn, deleted)
    assert raw["status"] == "processed", raw["result"]
    revoke = {"key": {"remoteJid": f"{OWNER}@s.whatsapp.net", "fromMe": True, "id": kid}, "type": "REVOKE"}
    raw = await post(client, db, conn, envelope("messages.edited", revoke))
    assert raw["status"] == "processed", raw["result"]
    # Both shapes may come for one deletion: it is recorded once.
    await post(client, db, conn, envelope("messages.edited", {**revoke, "key": {**revoke["key"], "id": second}}))
    assert _lines(await thread(client, tenant, ticket_id)) == [
        ("in", "text", "quero 2 pizzas", None),
        ("in", "text", "meu cartão 4111", None),
        ("in", "revoke", "", message_id_for(conn["id"], second)),
        ("in", "revoke", "", message_id_for(conn["id"], kid)),
    ]


async def test_a_reaction_to_the_agents_reply_and_its_removal_are_shown_and_open_no_ticket(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn, phone, kid, ticket_id = await _started(client, admin_headers, evolution, db)
    agent = tenant.agents[0]
    assert (await client.post(f"{API}/tickets/{ticket_id}/assume", headers=agent["headers"])).status_code == 200
    r = await client.post(f"{API}/tickets/{ticket_id}/messages", json={"body": "Pode sim"}, headers=agent["headers"])
    reply = r.json()

    async def sent_key() -> str | None:
        sent = [s for s in await evolution.sent() if s["number"] == phone]
        status = (await db.messages.find_one({"_id": reply["id"]}))["status"]
        return sent[0]["key_id"] if sent and status == "sent" else None

    provider_id = await wait_for(sent_key)
    r = await client.post(f"{API}/tickets/{ticket_id}/finalize", headers=agent["headers"])
    assert r.status_code == 200, r.text

    for emoji in ("👍", ""):
        raw = await post(client, db, conn, _reaction(phone, provider_id, emoji))
        assert raw["status"] == "processed", raw["result"]
    (ticket,) = await tickets_of(client, tenant)  # no new conversation for a reaction
    assert (ticket["id"], ticket["status"]) == (ticket_id, "finalizado")
    lines = _lines(await thread(client, tenant, ticket_id))
    assert lines[-2:] == [("in", "reaction", "👍", reply["id"]), ("in", "reaction", "", reply["id"])]
    # The finalize's refile, had it run after them, leaves them where they belong.
    stored = await db.tickets.find_one({"_id": ticket_id})
    moved = await message_repository.client_messages_after_internal(db, ticket_id, stored["finalized_at"])
    assert [m.type for m in moved] == []

    # A reaction made on the connection's own phone to the client's message is ours.
    await post(client, db, conn, _reaction(phone, kid, "❤️", from_me=True))
    ours = ("out", "reaction", "❤️", message_id_for(conn["id"], kid))
    assert _lines(await thread(client, tenant, ticket_id))[-1] == ours
    # None of them is a message in or out of the conversation in the reports.
    r = await client.get(f"{API}/reports/summary", headers=tenant.headers)
    assert (r.json()["messages_in"], r.json()["messages_out"]) == (1, 1), r.json()


async def _apart(conn: dict[str, Any], settings: Settings) -> tuple[int, str, str]:
    """Our number's lane (where Evolution posts a client's edit), a client in another lane, and a
    client in the same lane as our number."""
    lanes = settings.WEBHOOK_LANES
    owner_lane = lane_of(conn["id"], f"{OWNER}@s.whatsapp.net", lanes)
    phones = iter(unique_phone, "")
    other = next(p for p in phones if lane_of(conn["id"], f"{p}@s.whatsapp.net", lanes) != owner_lane)
    same = next(p for p in phones if lane_of(conn["id"], f"{p}@s.whatsapp.net", lanes) == owner_lane)
    return owner_lane, other, same


async def test_an_edit_that_comes_before_its_message_is_parked_without_holding_its_lane(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any, settings: Settings
) -> None:
    """Evolution posts a client's edit under our own number, another lane than the client's chat:
    it can be processed before the message it edits (a backlog's lanes catch up at their own
    pace, or the message comes later in a history sync). It is parked at once: its lane goes on
    (a later message there is filed without waiting), and the processor's sweep records it beside
    the message once that is stored. (Posted in one lane, the message is acknowledged, so
    processed, before its edit: lane order.)"""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    kid = key_id()
    _lane, phone, neighbour = await _apart(conn, settings)
    edit_raw = await post(client, db, conn, _edit(kid, "às 20h"))
    assert (edit_raw["status"], edit_raw["result"], edit_raw["attempts"]) == (
        "processed",
        ["parked: the message this edit changes is not stored yet"],
        1,
    )
    # The lane is not held: a client whose chat shares it is filed at once.
    raw = await post(client, db, conn, upsert(pn_key(neighbour), {"conversation": "oi"}, "conversation"))
    assert raw["status"] == "processed" and "message" in raw["result"][0], raw
    await post(client, db, conn, upsert(pn_key(phone, kid), {"conversation": "às 19h"}, "conversation"))
    ticket = next(t for t in await tickets_of(client, tenant) if t["client_phone"] == phone)

    async def recorded() -> list[tuple[str, str]] | None:
        lines = [(t, b) for _, t, b, _ in _lines(await thread(client, tenant, ticket["id"]))]
        return lines if len(lines) == 2 else None

    assert await wait_for(recorded) == [("text", "às 19h"), ("edit", "às 20h")]

    # The sweep records the edit, then the delivery's outcome, then ends the wait: each in turn.
    async def ended() -> dict[str, Any] | None:
        done = {"raw_id": edit_raw["_id"], "applied_at": {"$ne": None}}
        doc: dict[str, Any] | None = await db.webhook_waiting.find_one(done)
        return doc

    await wait_for(ended)
    raw = await db.webhook_events_raw.find_one({"_id": edit_raw["_id"]})
    assert raw["status"] == "processed" and raw["result"][0].startswith("edit of message"), raw
    (parked,) = await db.webhook_waiting.find({"raw_id": edit_raw["_id"]}).to_list(None)
    assert (parked["reason"], parked["applied_at"] is not None) == ("edit", True)


async def test_a_message_stored_while_its_edit_is_being_parked_gets_the_edit_at_once(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The message is stored (its own lane) between the edit's look for it and the parking: the
    edit's look after parking finds it, and records the edit in that same processing (one
    attempt, nothing left for the sweep)."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    kid = key_id()
    _lane, phone, _neighbour = await _apart(conn, settings)
    real_park = webhook_repository.wait

    async def park_then_message_arrives(db_: Any, parked: Any) -> None:
        await real_park(db_, parked)
        await post(client, db, conn, upsert(pn_key(phone, kid), {"conversation": "às 19h"}, "conversation"))

    monkeypatch.setattr(webhook_repository, "wait", park_then_message_arrives)
    edit_raw = await post(client, db, conn, _edit(kid, "às 20h"))
    assert (edit_raw["status"], edit_raw["attempts"]) == ("processed", 1), edit_raw
    assert edit_raw["result"][0].startswith("edit of message"), edit_raw
    (ticket,) = await tickets_of(client, tenant)
    assert [(t, b) for _, t, b, _ in _lines(await thread(client, tenant, ticket["id"]))] == [
        ("text", "às 19h"),
        ("edit", "às 20h"),
    ]
    (parked,) = await db.webhook_waiting.find({"raw_id": edit_raw["_id"]}).to_list(None)
    assert parked["applied_at"] is not None


async def test_protocol_messages_that_change_nothing_and_reactions_to_unknown_messages_are_ignored(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn, phone, kid, ticket_id = await _started(client, admin_headers, evolution, db)
    setting = {"key": {"remoteJid": f"{phone}@s.whatsapp.net", "fromMe": False, "id": kid}, "type": "EPHEMERAL_SETTING"}
    raw = await post(client, db, conn, envelope("messages.edited", setting))
    assert raw["result"] == ["ignored: protocol message that changes no message"], raw
    raw = await post(client, db, conn, _reaction(phone, "3EB0NEVERSEEN", "😂"))
    assert raw["result"] == ["ignored: the message this reaction changes is not stored"], raw
    # A deletion of a message we never had (sent before the connection), in either shape: ignored
    # at once, holding no lane through retries (the message's own chat reports it after the message).
    gone = {"remoteJid": f"{phone}@s.whatsapp.net", "fromMe": False, "id": "3EB0BEFORECONN"}
    raw = await post(client, db, conn, envelope("messages.delete", gone))
    assert (raw["result"], raw.get("attempts")) == (["ignored: the message this revoke changes is not stored"], 1), raw
    revoke = {"key": {**gone, "remoteJid": f"{OWNER}@s.whatsapp.net", "fromMe": True}, "type": "REVOKE"}
    raw = await post(client, db, conn, envelope("messages.edited", revoke))
    assert raw["result"] == ["ignored: the message this revoke changes is not stored"], raw
    raw = await post(client, db, conn, envelope("messages.delete", {"remoteJid": f"{phone}@s.whatsapp.net"}))
    assert raw["status"] == "failed" and "key.id" in raw["error"], raw
    assert [m["type"] for m in await thread(client, tenant, ticket_id)] == ["text"]


async def _held_ticket(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> tuple[Tenant, dict[str, Any], str, str, str, dict[str, str]]:
    """`_started`, the ticket assumed by the tenant's agent: (…, the agent's headers)."""
    tenant, conn, phone, kid, ticket_id = await _started(client, admin_headers, evolution, db)
    agent = tenant.agents[0]["headers"]
    assert (await client.post(f"{API}/tickets/{ticket_id}/assume", headers=agent)).status_code == 200
    return tenant, conn, phone, kid, ticket_id, agent


async def _sent_reply(
    client: httpx.AsyncClient, db: Any, ticket_id: str, agent: dict[str, str], body: str
) -> tuple[dict[str, Any], str]:
    """The agent's reply once the provider took it: (the reply, its provider id)."""
    r = await client.post(f"{API}/tickets/{ticket_id}/messages", json={"body": body}, headers=agent)
    reply: dict[str, Any] = r.json()

    async def sent() -> str | None:
        doc = await db.messages.find_one({"_id": reply["id"]})
        return str(doc["provider_message_id"]) if doc["status"] == "sent" else None

    return reply, await wait_for(sent)


async def _sent_reactions(evolution: FakeEvolution, phone: str) -> list[dict[str, Any]]:
    return [s for s in await evolution.sent() if "reaction" in s and s["number"].startswith(phone)]


async def test_an_agent_reacts_to_the_clients_message_and_takes_it_back(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn, phone, kid, ticket_id, agent = await _held_ticket(client, admin_headers, evolution, db)
    original = message_id_for(conn["id"], kid)
    r = await client.post(
        f"{API}/tickets/{ticket_id}/messages/{original}/reaction", json={"emoji": "👍"}, headers=agent
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["type"], made["body"], made["annotates"], made["direction"], made["sender_type"]) == (
        "reaction",
        "👍",
        original,
        "out",
        "agent",
    )
    assert made["quoted"] == {"message_id": original, "body": "quero 2 pizzas", "type": "text"}
    (sent,) = await wait_for(lambda: _sent_reactions(evolution, phone))
    assert (sent["reaction"], sent["reacted_to"], sent["reacted_from_me"]) == ("👍", kid, False)

    async def settled_sent() -> bool:
        return bool((await db.messages.find_one({"_id": made["id"]}))["status"] == "sent")

    await wait_for(settled_sent)

    async def echo_settled() -> list[dict[str, Any]] | None:
        raws = await db.webhook_events_raw.find(
            {"connection_id": conn["id"], "chat": f"{phone}@s.whatsapp.net"}
        ).to_list(None)
        echoes = [r for r in raws if r.get("result") == ["echo of an IAZE reaction"]]
        return echoes or None

    await wait_for(echo_settled)  # the fake's fromMe upsert of our own reaction, known as ours
    r = await client.post(f"{API}/tickets/{ticket_id}/messages/{original}/reaction", json={"emoji": ""}, headers=agent)
    assert r.status_code == 201, r.text
    await wait_for(lambda: _sent_reactions(evolution, phone), timeout=15)
    lines = _lines(await thread(client, tenant, ticket_id))
    assert lines == [
        ("in", "text", "quero 2 pizzas", None),
        ("out", "reaction", "👍", original),
        ("out", "reaction", "", original),
    ]


async def test_an_agent_reacts_to_its_own_sent_reply_and_the_echo_before_the_answer_is_no_second_reaction(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn, phone, _kid, ticket_id, agent = await _held_ticket(client, admin_headers, evolution, db)
    reply, reply_pid = await _sent_reply(client, db, ticket_id, agent, "Pode sim")
    await evolution.mode("ok", echo_first_seconds=0.5)  # the echo is posted before the send is answered
    try:
        url = f"{API}/tickets/{ticket_id}/messages/{reply['id']}/reaction"
        r = await client.post(url, json={"emoji": "❤️"}, headers=agent)
        assert r.status_code == 201, r.text
        (sent,) = await wait_for(lambda: _sent_reactions(evolution, phone))
    finally:
        await evolution.mode("ok", echo_first_seconds=0.0)
    assert (sent["reacted_to"], sent["reacted_from_me"]) == (reply_pid, True)

    async def echo_known() -> bool:
        raws = await db.webhook_events_raw.find(
            {"connection_id": conn["id"], "chat": f"{phone}@s.whatsapp.net"}
        ).to_list(None)
        return any(r.get("result") == ["echo of an IAZE reaction"] for r in raws)

    await wait_for(echo_known)
    reactions = [line for line in _lines(await thread(client, tenant, ticket_id)) if line[1] == "reaction"]
    assert reactions == [("out", "reaction", "❤️", reply["id"])]


async def test_what_an_agent_cannot_react_to_and_who_cannot_react(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn, _phone, kid, ticket_id, agent = await _held_ticket(client, admin_headers, evolution, db)
    original = message_id_for(conn["id"], kid)
    url = f"{API}/tickets/{ticket_id}/messages/{{}}/reaction"
    note = await client.post(f"{API}/tickets/{ticket_id}/notes", json={"body": "interno"}, headers=agent)
    before = await collection_counts(db)
    assert (await client.post(url.format(note.json()["id"]), json={"emoji": "👍"}, headers=agent)).status_code == 404
    assert (await client.post(url.format("f" * 24), json={"emoji": "👍"}, headers=agent)).status_code == 404
    for bad in ({"emoji": "dois emojis"}, {"emoji": "x" * 17}, {}):
        assert (await client.post(url.format(original), json=bad, headers=agent)).status_code == 422, bad
    # Only the holder reacts, like it replies: the owner watching is refused, and nothing is stored.
    r = await client.post(url.format(original), json={"emoji": "👍"}, headers=tenant.headers)
    assert (r.status_code, r.json()["detail"]["message"]) == (409, "assume the ticket before replying"), r.text
    assert await collection_counts(db) == before


async def test_an_agent_deletes_its_sent_reply_for_everyone_and_the_report_is_no_second_record(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn, phone, kid, ticket_id, agent = await _held_ticket(client, admin_headers, evolution, db)
    reply, reply_pid = await _sent_reply(client, db, ticket_id, agent, "Cliente errado")
    url = f"{API}/tickets/{ticket_id}/messages/{{}}/revoke"
    # Only what the connection sent: not the client's message.
    r = await client.post(url.format(message_id_for(conn["id"], kid)), headers=agent)
    assert (r.status_code, r.json()["detail"]) == (
        409,
        "only a message the connection sent can be deleted for everyone",
    )
    r = await client.post(url.format(reply["id"]), headers=agent)
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["type"], made["annotates"], made["direction"], made["sender_type"]) == (
        "revoke",
        reply["id"],
        "out",
        "agent",
    )
    again = await client.post(url.format(reply["id"]), headers=agent)  # a second click: the same record
    assert (again.status_code, again.json()["id"]) == (201, made["id"])

    async def deleted() -> list[dict[str, Any]]:
        return [s for s in await evolution.sent() if s.get("deleted") == reply_pid]

    (sent,) = await wait_for(deleted)
    assert sent["number"] == f"{phone}@s.whatsapp.net"

    async def reported() -> bool:
        raws = await db.webhook_events_raw.find({"connection_id": conn["id"], "event": "messages.delete"}).to_list(None)
        return any(r["status"] != "received" for r in raws)

    await wait_for(reported)  # Evolution's MESSAGES_DELETE for it: filed under the same record
    lines = _lines(await thread(client, tenant, ticket_id))
    assert [line for line in lines if line[1] == "revoke"] == [("out", "revoke", "", reply["id"])]
    assert lines[1][:2] == ("out", "text") and lines[1][2].endswith("Cliente errado")  # the reply is kept

    async def revoke_sent() -> bool:
        return bool((await db.messages.find_one({"_id": made["id"]}))["status"] == "sent")

    await wait_for(revoke_sent)
