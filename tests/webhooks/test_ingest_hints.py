"""What a processing process remembers of a chat between its messages (issue 20: fewer commands per
message) — the client its phone key names and the ticket its last message was filed under, ids
only — never files a message wrongly: competitors between two messages (a finalize, an edit of the
client, a store that lost the client) leave every message where the rules put it."""

from typing import Any

import httpx

from backend.core.ids import new_id
from backend.webhooks import service
from backend.webhooks.service import message_id_for
from tests.factories import API, make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection
from tests.webhooks.helpers import settled
from tests.webhooks.helpers import text_upsert as _upsert

HOOK = "/api/v1/webhooks/whatsapp"


class Chat:
    def __init__(self, client: httpx.AsyncClient, db: Any, conn: dict[str, Any], token: str) -> None:
        self.client, self.db, self.conn, self.token = client, db, conn, token
        self.phone = unique_phone()

    async def says(self, key: str, text: str) -> dict[str, Any]:
        """The stored message, once its delivery was processed."""
        r = await self.client.post(
            f"{HOOK}/{self.conn['id']}",
            json=_upsert(self.phone, f"{key}{self.phone}", text),
            headers={"X-Webhook-Token": self.token},
        )
        assert (await settled(self.db, r))["status"] == "processed"
        message: dict[str, Any] = await self.db.messages.find_one(
            {"_id": message_id_for(self.conn["id"], f"{key}{self.phone}")}
        )
        return message


async def _chat(client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any) -> Any:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    token = (await db.whatsapp_connections.find_one({"_id": conn["id"]}))["webhook_token"]
    return tenant, Chat(client, db, conn, token)


async def test_a_remembered_ticket_finalized_between_two_messages_is_not_used(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, chat = await _chat(client, admin_headers, evolution, db)
    first = await chat.says("A", "oi")
    # A client created by its first message: its stored `ticket_slot` is null, and its next
    # message starts the slot walk at 0 without the old per-client look-up (which writes a hint).
    stored = await db.users.find_one({"_id": first["sender_id"]})
    assert stored["ticket_slot"] is None
    second = await chat.says("B", "tudo bem?")
    assert second["ticket_id"] == first["ticket_id"]
    assert not (await db.users.find_one({"_id": first["sender_id"]})).get("ticket_slots")
    # The competitor: Finalizar between the second and the third message. The process still
    # remembers the finalized ticket as the chat's; it re-reads it, sees it closed, and walks on.
    r = await client.post(f"{API}/tickets/{first['ticket_id']}/finalize", headers=tenant.headers)
    assert r.status_code == 200, r.text
    third = await chat.says("C", "voltei")
    assert third["ticket_id"] != first["ticket_id"]
    assert "moved_from_ticket_id" not in third  # found the next ticket itself, not moved there
    fourth = await chat.says("D", "mais uma")
    assert fourth["ticket_id"] == third["ticket_id"]
    r = await client.get(f"{API}/tickets/{first['ticket_id']}/messages", headers=tenant.headers)
    assert [m["id"] for m in r.json()["items"]] == [first["_id"], second["_id"]]


async def test_the_remembered_client_is_read_again_for_each_message(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, chat = await _chat(client, admin_headers, evolution, db)
    first = await chat.says("A", "oi")
    r = await client.patch(f"{API}/clients/{first['sender_id']}", json={"name": "Dona Maria"}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    second = await chat.says("B", "sou eu")
    assert second["sender_id"] == first["sender_id"] and second["sender_name"] == "Dona Maria"


async def test_a_remembered_client_the_store_does_not_have_falls_back_to_the_phone_key(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """As after a restore from a backup older than the remembered client: its id finds no
    document, so the phone key is read, and the ticket remembered with it is not used."""
    _, chat = await _chat(client, admin_headers, evolution, db)
    first = await chat.says("A", "oi")
    service._remember_chat(db, chat.conn["id"], chat.phone, new_id(), new_id())
    second = await chat.says("B", "de novo")
    assert second["sender_id"] == first["sender_id"] and second["ticket_id"] == first["ticket_id"]
