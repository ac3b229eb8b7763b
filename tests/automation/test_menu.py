"""The department menu through the real path (fake Evolution process, webhook processor, outbox
worker): valid, invalid and late answers, and a person acting between the client's answer being
filed and the move it asks for."""

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from backend.tickets import service as tickets_service
from backend.tickets.models import Ticket
from tests.automation.helpers import automatic, company, open_ticket, sent_counts, write
from tests.factories import API, Tenant, unique_phone
from tests.fakes.harness import FakeEvolution

MENU_TEXT = "Escolha o departamento:"
MENU = f"{MENU_TEXT}\n1 - Suporte\n2 - Financeiro"


async def _with_menu(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, **menu: Any
) -> tuple[Tenant, dict[str, Any]]:
    tenant, conn = await company(client, admin_headers, evolution, config={})
    ids = [d["id"] for d in tenant.departments]
    body = {"menu_enabled": True, "menu_department_ids": ids, "menu_text": MENU_TEXT, **menu}
    r = await client.patch(f"{API}/whatsapp-connections/{conn['id']}", json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    return tenant, r.json()


async def _events(client: httpx.AsyncClient, tenant: Tenant, ticket_id: str) -> list[dict[str, Any]]:
    r = await client.get(f"{API}/tickets/{ticket_id}/events", headers=tenant.headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def _queue(client: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    r = await client.get(f"{API}/tickets", params={"status": "espera"}, headers=headers)
    return [t["id"] for t in r.json()["items"]]


async def test_a_valid_answer_moves_the_ticket_to_that_departments_espera_as_the_client(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn = await _with_menu(client, admin_headers, evolution)
    suporte, financeiro = tenant.departments
    phone = unique_phone()
    await write(evolution, db, conn, phone, "oi")
    ticket = await open_ticket(db, tenant, phone)
    # It waits in espera of the connection's default department, marked as waiting for the menu.
    r = await client.get(f"{API}/tickets/{ticket['_id']}", headers=tenant.headers)
    assert (r.json()["status"], r.json()["department_id"], r.json()["menu_pending"]) == ("espera", suporte["id"], True)
    assert ticket["_id"] in await _queue(client, tenant.agents[0]["headers"])
    assert [m["body"] for m in await automatic(db, ticket["_id"])] == [MENU]

    raw = await write(evolution, db, conn, phone, " 2 ")
    assert raw["result"][0].endswith("automatic: menu choice 2"), raw["result"]
    r = await client.get(f"{API}/tickets/{ticket['_id']}", headers=tenant.headers)
    assert (r.json()["status"], r.json()["department_id"], r.json()["menu_pending"]) == (
        "espera",
        financeiro["id"],
        False,
    )
    assert ticket["_id"] in await _queue(client, tenant.agents[1]["headers"])
    assert ticket["_id"] not in await _queue(client, tenant.agents[0]["headers"])
    routed = (await _events(client, tenant, ticket["_id"]))[-1]
    assert (routed["type"], routed["actor_role"], routed["actor_id"]) == ("routed", "client", ticket["client_id"])
    assert (routed["from_status"], routed["to_status"], routed["target_name"]) == ("espera", "espera", "Financeiro")
    counts = await client.get(
        f"{API}/tickets/counts", params={"department_id": financeiro["id"]}, headers=tenant.headers
    )
    assert counts.json()["espera"] == 1

    # A later digit is just a message: the menu is over.
    await write(evolution, db, conn, phone, "1")
    r = await client.get(f"{API}/tickets/{ticket['_id']}", headers=tenant.headers)
    assert r.json()["department_id"] == financeiro["id"]
    assert [e["type"] for e in await _events(client, tenant, ticket["_id"])] == ["created", "routed"]
    assert (await sent_counts(evolution, phone, {MENU: 1}))[MENU] == 1


async def test_invalid_answers_repeat_the_menu_at_most_n_times_then_the_default_department_keeps_it(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn = await _with_menu(client, admin_headers, evolution, menu_max_invalid=1)
    phone = unique_phone()
    await write(evolution, db, conn, phone, "oi")
    ticket = await open_ticket(db, tenant, phone)
    await write(evolution, db, conn, phone, "quero falar com alguém")  # invalid 1 of 1: repeated
    repeated = [m["body"] for m in await automatic(db, ticket["_id"])]
    assert repeated == [MENU, f"Não entendi sua resposta.\n{MENU}"]
    await write(evolution, db, conn, phone, "9")  # not on the list: past N, the menu gives up
    r = await client.get(f"{API}/tickets/{ticket['_id']}", headers=tenant.headers)
    assert (r.json()["department_id"], r.json()["menu_pending"]) == (conn["default_department_id"], False)
    routed = (await _events(client, tenant, ticket["_id"]))[-1]
    assert (routed["type"], routed["actor_role"], routed["data"]["fallback"]) == ("routed", "client", True)
    await write(evolution, db, conn, phone, "2")  # late
    r = await client.get(f"{API}/tickets/{ticket['_id']}", headers=tenant.headers)
    assert r.json()["department_id"] == conn["default_department_id"]
    assert len(await automatic(db, ticket["_id"])) == 2
    counts = await sent_counts(evolution, phone, {MENU: 1, repeated[1]: 1})
    assert (counts[MENU], counts[repeated[1]]) == (1, 1)


async def test_an_answer_after_an_agent_assumed_moves_nothing(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn = await _with_menu(client, admin_headers, evolution)
    phone = unique_phone()
    await write(evolution, db, conn, phone, "oi")
    ticket = await open_ticket(db, tenant, phone)
    agent = tenant.agents[0]
    r = await client.post(f"{API}/tickets/{ticket['_id']}/assume", headers=agent["headers"])
    assert r.status_code == 200 and r.json()["menu_pending"] is False
    await write(evolution, db, conn, phone, "2")
    r = await client.get(f"{API}/tickets/{ticket['_id']}", headers=tenant.headers)
    assert (r.json()["status"], r.json()["agent_id"], r.json()["department_id"]) == (
        "atendendo",
        agent["id"],
        conn["default_department_id"],
    )
    assert [e["type"] for e in await _events(client, tenant, ticket["_id"])] == ["created", "assumed"]
    assert len(await automatic(db, ticket["_id"])) == 1  # no repeated menu either


def _competitor_before_choice(monkeypatch: pytest.MonkeyPatch, compete: Callable[[str], Awaitable[None]]) -> list[str]:
    """Runs `compete(ticket id)` after the client's answer is filed, right before the move it asks for."""
    original = tickets_service.choose_department
    raced: list[str] = []

    async def competitor_first(db_: Any, ticket: Ticket, **kwargs: Any) -> Any:
        if not raced:
            raced.append(ticket.id)
            await compete(ticket.id)
        return await original(db_, ticket, **kwargs)

    monkeypatch.setattr(tickets_service, "choose_department", competitor_first)
    return raced


async def test_an_agent_assuming_between_the_answer_and_the_move_wins(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant, conn = await _with_menu(client, admin_headers, evolution)
    phone = unique_phone()
    await write(evolution, db, conn, phone, "oi")
    ticket = await open_ticket(db, tenant, phone)
    agent = tenant.agents[0]

    async def assume(ticket_id: str) -> None:
        r = await client.post(f"{API}/tickets/{ticket_id}/assume", headers=agent["headers"])
        assert r.status_code == 200, r.text

    raced = _competitor_before_choice(monkeypatch, assume)
    await write(evolution, db, conn, phone, "2")
    monkeypatch.undo()
    assert raced == [ticket["_id"]]
    r = await client.get(f"{API}/tickets/{ticket['_id']}", headers=tenant.headers)
    assert (r.json()["status"], r.json()["agent_id"], r.json()["department_id"], r.json()["menu_pending"]) == (
        "atendendo",
        agent["id"],
        conn["default_department_id"],
        False,
    )
    assert [e["type"] for e in await _events(client, tenant, ticket["_id"])] == ["created", "assumed"]
    # The answer is in the conversation the agent now holds.
    r = await client.get(f"{API}/tickets/{ticket['_id']}/messages", headers=agent["headers"])
    assert [m["body"] for m in r.json()["items"]][-1] == "2"


async def test_a_finalize_racing_the_menu_choice_leaves_the_ticket_finalized(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant, conn = await _with_menu(client, admin_headers, evolution)
    phone = unique_phone()
    await write(evolution, db, conn, phone, "oi")
    ticket = await open_ticket(db, tenant, phone)

    async def finalize(ticket_id: str) -> None:
        r = await client.post(f"{API}/tickets/{ticket_id}/finalize", headers=tenant.headers)
        assert r.status_code == 200, r.text

    raced = _competitor_before_choice(monkeypatch, finalize)
    await write(evolution, db, conn, phone, "2")
    monkeypatch.undo()
    assert raced == [ticket["_id"]]
    r = await client.get(f"{API}/tickets/{ticket['_id']}", headers=tenant.headers)
    assert (r.json()["status"], r.json()["department_id"]) == ("finalizado", conn["default_department_id"])
    assert [e["type"] for e in await _events(client, tenant, ticket["_id"])] == ["created", "finalized"]
    # And the other order: a choice stored first, then Finalizar, finalizes the chosen ticket.
    second = unique_phone()
    await write(evolution, db, conn, second, "oi")
    await write(evolution, db, conn, second, "2")
    other = await open_ticket(db, tenant, second)
    r = await client.post(f"{API}/tickets/{other['_id']}/finalize", headers=tenant.headers)
    assert r.status_code == 200 and r.json()["department_id"] == tenant.departments[1]["id"]
    assert [e["type"] for e in await _events(client, tenant, other["_id"])] == ["created", "routed", "finalized"]
