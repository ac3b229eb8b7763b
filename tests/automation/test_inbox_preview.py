"""The inbox preview tells an automatic last message from an agent's (TicketRead
`last_message_automatic`), on the list as on the single ticket's read."""

from typing import Any

import httpx

from tests.automation.helpers import company, open_ticket, write
from tests.factories import API, unique_phone
from tests.fakes.harness import FakeEvolution


async def test_a_ticket_whose_last_message_is_automatic_says_so_until_the_client_writes_again(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn = await company(client, admin_headers, evolution, config={"welcome_message": "Bem-vindo!"})
    phone = unique_phone()
    await write(evolution, db, conn, phone, "oi")
    ticket = await open_ticket(db, tenant, phone)

    async def shown() -> tuple[dict[str, Any], dict[str, Any]]:
        r = await client.get(f"{API}/tickets", params={"status": "espera"}, headers=tenant.headers)
        assert r.status_code == 200, r.text
        listed = next(t for t in r.json()["items"] if t["id"] == ticket["_id"])
        one = await client.get(f"{API}/tickets/{ticket['_id']}", headers=tenant.headers)
        assert one.status_code == 200, one.text
        return listed, one.json()

    for read in await shown():
        assert read["last_message_preview"] == "Bem-vindo!"
        assert read["last_message_direction"] == "out" and read["last_message_automatic"] is True
    await write(evolution, db, conn, phone, "tem alguém aí?")
    for read in await shown():
        assert read["last_message_preview"] == "tem alguém aí?"
        assert read["last_message_direction"] == "in" and read["last_message_automatic"] is False
