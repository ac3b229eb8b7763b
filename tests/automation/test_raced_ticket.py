"""A client message that races Finalizar moves on to a ticket opened for it (messages.service):
that ticket is greeted and offered the menu as any ticket a client message opens, whichever side
of the race moved the message — the webhook delivery that stored it, or the finalize's refile."""

from datetime import timedelta
from typing import Any

import httpx
import pytest

from backend.core.clock import utcnow
from backend.messages import service as messages
from backend.tickets.models import Ticket
from backend.webhooks.service import message_id_for
from tests.automation.helpers import automatic, company, open_ticket, sent_counts, tickets_of, write
from tests.factories import API, unique_phone
from tests.fakes.harness import FakeEvolution

MENU_TEXT = "Escolha o departamento:"
MENU = f"{MENU_TEXT}\n1 - Suporte\n2 - Financeiro"
CONFIG = {"welcome_message": "Olá {{cliente}}! Protocolo {{protocolo}}.", "closing_message": "Até logo!"}


@pytest.mark.parametrize("mover", ["the delivery", "the finalize"])
async def test_a_ticket_opened_for_a_message_that_raced_the_finalize_is_greeted_and_offered_the_menu(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
    mover: str,
) -> None:
    tenant, conn = await company(client, admin_headers, evolution, config=CONFIG)
    ids = [d["id"] for d in tenant.departments]
    body = {"menu_enabled": True, "menu_department_ids": ids, "menu_text": MENU_TEXT}
    r = await client.patch(f"{API}/whatsapp-connections/{conn['id']}", json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    phone = unique_phone()
    await write(evolution, db, conn, phone, "oi")
    first = await open_ticket(db, tenant, phone)
    agent = tenant.agents[0]["headers"]  # Suporte's, the connection's default department
    assert (await client.post(f"{API}/tickets/{first['_id']}/assume", headers=agent)).status_code == 200

    async def finalize() -> None:
        r = await client.post(f"{API}/tickets/{first['_id']}/finalize", headers=agent)
        assert r.status_code == 200, r.text

    if mover == "the delivery":
        # The delivery found the ticket open; Finalizar lands before its message is stored: the
        # delivery's own re-check moves the message on.
        original = messages.append

        async def finalize_then_append(db_: Any, ticket: Ticket, **kwargs: Any) -> Any:
            if ticket.id == first["_id"] and kwargs.get("sender_type") == "client":
                await finalize()
            return await original(db_, ticket, **kwargs)

        monkeypatch.setattr(messages, "append", finalize_then_append)
        await write(evolution, db, conn, phone, "mais uma coisa", key_id=f"R{phone}")
        monkeypatch.undo()
    else:
        # Stored and re-checked while the ticket was open, stamped after the finalize to come (a
        # process whose clock runs ahead): only the finalize's refile moves it.
        monkeypatch.setattr(messages, "utcnow", lambda: utcnow() + timedelta(seconds=30))
        await write(evolution, db, conn, phone, "mais uma coisa", key_id=f"R{phone}")
        monkeypatch.undo()
        assert (await db.messages.find_one({"_id": message_id_for(conn["id"], f"R{phone}")}))["ticket_id"] == first[
            "_id"
        ]
        await finalize()

    raced = await db.messages.find_one({"_id": message_id_for(conn["id"], f"R{phone}")})
    second = await open_ticket(db, tenant, phone)
    assert raced["ticket_id"] == second["_id"] != first["_id"]
    assert raced["moved_from_ticket_id"] == first["_id"]
    assert second["opening_message_id"] == raced["_id"] and second["menu_pending"] is True
    assert [m["automatic_purpose"] for m in await automatic(db, first["_id"])] == ["greeting", "menu", "closing"]
    assert [m["automatic_purpose"] for m in await automatic(db, second["_id"])] == ["greeting", "menu"]
    greeting = f"Olá Maria! Protocolo {second['number']}."
    counts = await sent_counts(evolution, phone, {greeting: 1, MENU: 2, "Até logo!": 1})
    assert counts[greeting] == 1 and counts[MENU] == 2

    await write(evolution, db, conn, phone, "2")  # the answer goes to the new ticket's menu
    routed = await open_ticket(db, tenant, phone)
    assert routed["_id"] == second["_id"] and routed["department_id"] == ids[1] and not routed["menu_pending"]
    assert len(await tickets_of(db, tenant, phone)) == 2
