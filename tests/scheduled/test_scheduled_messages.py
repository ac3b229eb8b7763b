"""Scheduled messages through the real API, the outbox worker and the fake Evolution as its own
process. The background pass runs (every 0.2 s) but finds nothing due: every schedule here is an
hour or more ahead, and each test runs the pass itself at a later `now` — except the one that
moves a schedule's time into the past to see the background pass send it. The kills and the
competitors (a cancel, a finalize, a second pass) are injected between the pass's claim and its
send, and between its send and its status write; a finalize also between the pass's read of the
ticket and its claim."""

import asyncio
import json
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from backend.core.clock import utcnow
from backend.realtime import hub
from backend.scheduled import repository, service
from tests.factories import make_tenant
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.outbound.helpers import held_ticket, unsigned


class _Killed(BaseException):
    """The process dies here (BaseException: no `except Exception` on the way catches it)."""


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"SCHEDULED_MESSAGES_POLL_SECONDS": 0.2}


def _at(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


LATER = timedelta(hours=2)  # the `now` each test's own pass runs at: past every schedule here


async def _schedule(client: httpx.AsyncClient, ticket_id: str, agent: dict[str, str], body: str) -> dict[str, Any]:
    r = await client.post(
        f"/api/v1/tickets/{ticket_id}/scheduled-messages",
        json={"body": body, "send_at": _at(timedelta(hours=1))},
        headers=agent,
    )
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    assert created["status"] == "scheduled" and created["message_id"] is None
    return created


async def _sent_texts(evolution: FakeEvolution, phone: str) -> Counter[str]:
    return Counter(unsigned(s["text"]) for s in await evolution.sent() if s["number"] == phone)


async def _delivered(db: Any, evolution: FakeEvolution, phone: str, message_id: str, text: str) -> None:
    await wait_for(lambda: db.messages.find_one({"_id": message_id, "status": "sent"}), timeout=30)
    assert (await _sent_texts(evolution, phone))[text] == 1


async def _setup(client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any) -> Any:
    tenant = await make_tenant(client, admin_headers, agents=2)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    return tenant, conn, ticket_id, phone, agent


async def test_a_scheduled_reply_is_sent_into_its_ticket_at_its_time_once(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, _, ticket_id, phone, agent = await _setup(client, admin_headers, evolution, db)
    created = await _schedule(client, ticket_id, agent, "lembrete: o boleto vence amanhã")
    assert await service.run_due(db, utcnow()) == 0  # not yet
    assert await service.run_due(db, utcnow() + LATER) == 1
    message_id = service.message_id_of(created["id"])
    message = await db.messages.find_one({"_id": message_id})
    assert message["ticket_id"] == ticket_id and message["sender_type"] == "agent"
    assert message["sender_id"] == tenant.agents[0]["id"]
    await _delivered(db, evolution, phone, message_id, "lembrete: o boleto vence amanhã")
    assert await service.run_due(db, utcnow() + LATER) == 0  # settled: never again
    r = await client.get(f"/api/v1/tickets/{ticket_id}/scheduled-messages", headers=agent)
    (listed,) = r.json()["items"]
    assert listed["status"] == "sent" and listed["message_id"] == message_id and listed["settled_at"]
    thread = await client.get(f"/api/v1/tickets/{ticket_id}/messages", headers=agent)
    assert [m["id"] for m in thread.json()["items"]].count(message_id) == 1
    assert (await _sent_texts(evolution, phone))["lembrete: o boleto vence amanhã"] == 1


async def test_a_schedule_the_api_refuses_stores_nothing(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant, _, ticket_id, _, agent = await _setup(client, admin_headers, evolution, db)
    other = await make_tenant(client, admin_headers, agents=1)
    url = f"/api/v1/tickets/{ticket_id}/scheduled-messages"
    before = await db.scheduled_messages.count_documents({})
    naive = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    for body, headers, status in [
        ({"body": "cedo demais", "send_at": _at(timedelta(seconds=5))}, agent, 422),
        ({"body": "passado", "send_at": _at(-timedelta(hours=1))}, agent, 422),
        ({"body": "longe demais", "send_at": _at(timedelta(days=400))}, agent, 422),
        ({"body": "sem fuso", "send_at": naive}, agent, 422),
        ({"body": "   ", "send_at": _at(timedelta(hours=1))}, agent, 422),
        ({"body": "x", "send_at": _at(timedelta(hours=1)), "extra": 1}, agent, 422),
        ({"body": "não sou eu", "send_at": _at(timedelta(hours=1))}, tenant.agents[1]["headers"], 404),
        ({"body": "a revenda", "send_at": _at(timedelta(hours=1))}, tenant.headers, 409),
        ({"body": "outra revenda", "send_at": _at(timedelta(hours=1))}, other.headers, 404),
        ({"body": "admin", "send_at": _at(timedelta(hours=1))}, admin_headers, 403),
    ]:
        r = await client.post(url, json=body, headers=headers)
        assert r.status_code == status, (body, r.text)
    assert await db.scheduled_messages.count_documents({}) == before
    assert (await client.get(url, headers=other.headers)).status_code == 404
    # A ticket holds a few reminders, not a mailing: past the cap, 409 and nothing stored.
    monkeypatch.setattr(service, "MAX_WAITING_PER_TICKET", 2)
    first = await _schedule(client, ticket_id, agent, "um")
    second_at = _at(timedelta(hours=1))
    r = await client.post(url, json={"body": "dois", "send_at": second_at}, headers=agent)
    assert r.status_code == 201, r.text
    second = r.json()
    r = await client.post(url, json={"body": "três", "send_at": _at(timedelta(hours=1))}, headers=agent)
    assert r.status_code == 409 and "at most 2" in r.text
    # The second request repeated (its answer lost): at the cap too, the one stored is the answer.
    r = await client.post(url, json={"body": "dois", "send_at": second_at}, headers=agent)
    assert r.status_code == 201 and r.json()["id"] == second["id"], r.text
    assert await db.scheduled_messages.count_documents({}) == before + 2
    assert (await client.post(f"/api/v1/scheduled-messages/{first['id']}/cancel", headers=agent)).status_code == 200
    third = await _schedule(client, ticket_id, agent, "três")  # a canceled one frees its place
    for left in (second, third):  # nothing left waiting for the other tests' passes
        assert (await client.post(f"/api/v1/scheduled-messages/{left['id']}/cancel", headers=agent)).status_code == 200


async def test_a_canceled_schedule_is_never_sent(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, _, ticket_id, phone, agent = await _setup(client, admin_headers, evolution, db)
    other = await make_tenant(client, admin_headers, agents=1)
    created = await _schedule(client, ticket_id, agent, "não vai sair")
    cancel = f"/api/v1/scheduled-messages/{created['id']}/cancel"
    assert (await client.post(cancel, headers=other.headers)).status_code == 404
    assert (await client.post(cancel, headers=tenant.agents[1]["headers"])).status_code == 404  # cannot see it
    # Back to its department's queue: the other agent sees it now, but neither wrote it nor holds it.
    r = await client.post(
        f"/api/v1/tickets/{ticket_id}/transfer", json={"department_id": tenant.departments[0]["id"]}, headers=agent
    )
    assert r.status_code == 200, r.text
    assert (await client.post(cancel, headers=tenant.agents[1]["headers"])).status_code == 403
    r = await client.post(cancel, headers=agent)  # its author
    assert r.status_code == 200 and r.json()["status"] == "canceled" and r.json()["reason"] == "canceled"
    again = await client.post(cancel, headers=tenant.headers)  # a second click: the same answer
    assert again.status_code == 200 and again.json()["status"] == "canceled"
    assert await service.run_due(db, utcnow() + LATER) == 0
    assert await db.messages.find_one({"_id": service.message_id_of(created["id"])}) is None
    assert (await _sent_texts(evolution, phone))["não vai sair"] == 0


@pytest.mark.parametrize("where", ["after the claim", "after the send"])
async def test_a_pass_killed_midway_is_finished_by_the_next_one_and_sends_once(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    _, _, ticket_id, phone, agent = await _setup(client, admin_headers, evolution, db)
    text = f"morre {where}"
    created = await _schedule(client, ticket_id, agent, text)
    if where == "after the claim":
        target, name = service.messages, "send_as_agent"
    else:
        target, name = repository, "settle_internal"
    real = getattr(target, name)

    async def dies(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(target, name, real)
        raise _Killed

    monkeypatch.setattr(target, name, dies)
    with pytest.raises(_Killed):
        await service.run_due(db, utcnow() + LATER)
    stored = await db.scheduled_messages.find_one({"_id": created["id"]})
    assert stored["status"] == "scheduled"  # what a dead process leaves: the next pass takes it
    message_id = service.message_id_of(created["id"])
    assert (await db.messages.find_one({"_id": message_id}) is None) == (where == "after the claim")
    assert await service.run_due(db, utcnow() + LATER) == 1
    await _delivered(db, evolution, phone, message_id, text)
    assert (await db.scheduled_messages.find_one({"_id": created["id"]}))["status"] == "sent"
    assert await db.messages.count_documents({"_id": message_id}) == 1


async def test_a_cancel_between_the_pass_s_claim_and_its_send_is_refused_and_the_message_goes(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, _, ticket_id, phone, agent = await _setup(client, admin_headers, evolution, db)
    created = await _schedule(client, ticket_id, agent, "saiu antes do cancelamento")
    real_send = service._send
    refused: list[int] = []

    async def cancel_first(db_: Any, schedule: Any) -> None:
        r = await client.post(f"/api/v1/scheduled-messages/{schedule.id}/cancel", headers=agent)
        refused.append(r.status_code)
        await real_send(db_, schedule)

    monkeypatch.setattr(service, "_send", cancel_first)
    assert await service.run_due(db, utcnow() + LATER) == 1
    assert refused == [409]
    message_id = service.message_id_of(created["id"])
    await _delivered(db, evolution, phone, message_id, "saiu antes do cancelamento")
    assert (await db.scheduled_messages.find_one({"_id": created["id"]}))["status"] == "sent"


async def test_finalizing_the_ticket_cancels_what_waits_and_keeps_what_a_pass_already_claimed(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, _, ticket_id, phone, agent = await _setup(client, admin_headers, evolution, db)
    waiting = await _schedule(client, ticket_id, agent, "fica para depois")
    claimed = await _schedule(client, ticket_id, agent, "já estava saindo")
    await db.scheduled_messages.update_one({"_id": waiting["id"]}, {"$set": {"send_at": utcnow() + 2 * LATER}})
    real_send = service._send
    finalized: list[int] = []

    async def finalize_first(db_: Any, schedule: Any) -> None:
        # The pass claimed "sent"; the ticket is finalized before its message is stored (the
        # finalize's own hook then finds "sent" claimed and sends it itself: the real send).
        monkeypatch.setattr(service, "_send", real_send)
        r = await client.post(f"/api/v1/tickets/{ticket_id}/finalize", headers=agent)
        finalized.append(r.status_code)
        await real_send(db_, schedule)

    monkeypatch.setattr(service, "_send", finalize_first)
    assert await service.run_due(db, utcnow() + LATER) == 1
    assert finalized == [200]

    async def settled(schedule_id: str) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = await db.scheduled_messages.find_one(
            {"_id": schedule_id, "status": {"$ne": "scheduled"}}
        )
        return doc

    assert (await wait_for(lambda: settled(claimed["id"])))["status"] == "sent"
    later = await wait_for(lambda: settled(waiting["id"]))
    assert later["status"] == "canceled" and later["reason"] == "finalized"
    claimed_id = service.message_id_of(claimed["id"])
    await _delivered(db, evolution, phone, claimed_id, "já estava saindo")
    assert await db.messages.count_documents({"_id": claimed_id}) == 1
    assert await service.run_due(db, utcnow() + 3 * LATER) == 0
    assert await db.messages.find_one({"_id": service.message_id_of(waiting["id"])}) is None
    assert (await _sent_texts(evolution, phone))["fica para depois"] == 0


async def test_a_finalize_between_the_pass_reading_the_ticket_open_and_its_claim_sends_nothing(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, _, ticket_id, phone, agent = await _setup(client, admin_headers, evolution, db)
    due = await _schedule(client, ticket_id, agent, "chegou tarde demais")
    real_read = service.tickets.get_internal
    finalized: list[int] = []

    async def read_then_finalize(db_: Any, wanted: str) -> Any:
        found = await real_read(db_, wanted)
        if sys._getframe(1).f_code.co_name == "deliver" and not finalized:
            # The pass has just seen the ticket open and will claim "sent" next; the finalize
            # (and its hook, which claims "finalized") lands first.
            assert found is not None and found.status != "finalizado"
            r = await client.post(f"/api/v1/tickets/{ticket_id}/finalize", headers=agent)
            finalized.append(r.status_code)
        return found

    monkeypatch.setattr(service.tickets, "get_internal", read_then_finalize)
    assert await service.run_due(db, utcnow() + LATER) == 1
    assert finalized == [200]
    settled = await db.scheduled_messages.find_one({"_id": due["id"]})
    assert settled["status"] == "canceled" and settled["reason"] == "finalized"
    assert await db.messages.find_one({"_id": service.message_id_of(due["id"])}) is None
    assert await db.outbox.find_one({"message_id": service.message_id_of(due["id"])}) is None
    assert await service.run_due(db, utcnow() + 2 * LATER) == 0  # settled: no pass takes it again
    await asyncio.sleep(0.5)  # the outbox worker's turn: it has nothing of this schedule to send
    assert (await _sent_texts(evolution, phone))["chegou tarde demais"] == 0


async def test_a_schedule_due_while_its_connection_is_off_fails_with_the_reason(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn, ticket_id, phone, agent = await _setup(client, admin_headers, evolution, db)
    created = await _schedule(client, ticket_id, agent, "conexão desligada")
    r = await client.patch(f"/api/v1/whatsapp-connections/{conn['id']}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert await service.run_due(db, utcnow() + LATER) == 1
    failed = await db.scheduled_messages.find_one({"_id": created["id"]})
    assert failed["status"] == "failed" and failed["reason"] == "connection_inactive"
    # Told to the screens that see the ticket (the author's): a failure nobody looks for is lost.
    record = await db.tenant_events.find_one({"type": "scheduled.settled", "data.schedule.id": created["id"]})
    assert record is not None and record["ticket"]["id"] == ticket_id
    assert record["data"]["schedule"]["status"] == "failed"
    assert record["data"]["schedule"]["reason"] == "connection_inactive"
    frame = json.loads(hub.frame_of(record))
    assert frame["event"] == "scheduled.settled" and frame["data"]["schedule"]["id"] == created["id"]
    other = await db.tenant_events.find_one({"type": {"$ne": "scheduled.settled"}, "data": {"$ne": None}})
    assert other is not None and "data" not in json.loads(hub.frame_of(other))  # the others' frames unchanged
    assert await db.messages.find_one({"_id": service.message_id_of(created["id"])}) is None
    assert (await _sent_texts(evolution, phone))["conexão desligada"] == 0


async def test_two_passes_at_once_send_one_message(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    _, _, ticket_id, phone, agent = await _setup(client, admin_headers, evolution, db)
    created = await _schedule(client, ticket_id, agent, "dois processos")
    later = utcnow() + LATER
    await asyncio.gather(service.run_due(db, later), service.run_due(db, later))
    message_id = service.message_id_of(created["id"])
    await _delivered(db, evolution, phone, message_id, "dois processos")
    await asyncio.sleep(0.5)  # the worker's next polls: still one send
    assert (await _sent_texts(evolution, phone))["dois processos"] == 1


async def test_the_background_pass_sends_a_schedule_when_its_time_comes(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    _, _, ticket_id, phone, agent = await _setup(client, admin_headers, evolution, db)
    created = await _schedule(client, ticket_id, agent, "na hora certa")
    await db.scheduled_messages.update_one(
        {"_id": created["id"]}, {"$set": {"send_at": utcnow() - timedelta(seconds=1)}}
    )
    message_id = service.message_id_of(created["id"])
    await _delivered(db, evolution, phone, message_id, "na hora certa")
    await wait_for(lambda: db.scheduled_messages.find_one({"_id": created["id"], "status": "sent"}))


async def test_the_tenant_list_shows_the_reseller_everyone_s_and_an_agent_their_own_soonest_first(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, conn, ticket_id, _, agent = await _setup(client, admin_headers, evolution, db)
    other = await make_tenant(client, admin_headers, agents=1)
    # The second agent holds a ticket of their own and schedules in it too.
    second_ticket, _, second = await held_ticket(client, tenant, evolution, conn, db, agent_index=1)
    mine = [await _schedule_at(client, ticket_id, agent, f"meu {n}", timedelta(hours=3 - n)) for n in range(3)]
    theirs = await _schedule_at(client, second_ticket, second, "do colega", timedelta(hours=1, minutes=30))
    r = await client.post(f"/api/v1/scheduled-messages/{mine[0]['id']}/cancel", headers=agent)
    assert r.status_code == 200
    url = "/api/v1/scheduled-messages"

    async def ids(headers: dict[str, str], **params: Any) -> list[str]:
        found: list[str] = []
        cursor = None
        while True:
            page = await client.get(
                url, params={**params, "limit": 1, **({"cursor": cursor} if cursor else {})}, headers=headers
            )
            assert page.status_code == 200, page.text
            found += [s["id"] for s in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return found

    # Soonest first, one page at a time.
    assert await ids(tenant.headers, status="scheduled") == [mine[2]["id"], theirs["id"], mine[1]["id"]]
    assert await ids(tenant.headers) == [mine[2]["id"], theirs["id"], mine[1]["id"], mine[0]["id"]]
    assert await ids(tenant.headers, author_id=tenant.agents[1]["id"]) == [theirs["id"]]
    assert await ids(agent, status="scheduled") == [mine[2]["id"], mine[1]["id"]]
    assert await ids(agent, author_id=tenant.agents[1]["id"]) == [mine[2]["id"], mine[1]["id"], mine[0]["id"]]
    assert await ids(agent, status="canceled") == [mine[0]["id"]]
    assert await ids(other.headers) == []
    listed = (await client.get(url, params={"status": "scheduled"}, headers=agent)).json()["items"][0]
    ticket = await db.tickets.find_one({"_id": ticket_id})
    assert listed["ticket_number"] == ticket["number"] and listed["client_name"] == ticket["client_name"]
    assert (await client.get(url, headers=admin_headers)).status_code == 403
    assert (await client.get(url, params={"status": "lost"}, headers=agent)).status_code == 422
    assert (await client.get(url, params={"cursor": "nonsense"}, headers=agent)).status_code == 422
    for left, by in ((mine[1], agent), (mine[2], agent), (theirs, second)):  # nothing left for later passes
        assert (await client.post(f"/api/v1/scheduled-messages/{left['id']}/cancel", headers=by)).status_code == 200


async def _schedule_at(
    client: httpx.AsyncClient, ticket_id: str, headers: dict[str, str], body: str, ahead: timedelta
) -> dict[str, Any]:
    r = await client.post(
        f"/api/v1/tickets/{ticket_id}/scheduled-messages", json={"body": body, "send_at": _at(ahead)}, headers=headers
    )
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def _edit(schedule_id: str) -> str:
    return f"/api/v1/scheduled-messages/{schedule_id}/replace"


async def test_its_author_edits_a_waiting_schedule_and_only_the_edited_one_is_sent(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    tenant, _, ticket_id, phone, agent = await _setup(client, admin_headers, evolution, db)
    other = await make_tenant(client, admin_headers, agents=1)
    old = await _schedule(client, ticket_id, agent, "texto antigo")
    later = {"body": "texto novo", "send_at": _at(timedelta(hours=1, minutes=30))}
    before = await db.scheduled_messages.count_documents({})
    for headers, body, status in [
        (other.headers, later, 404),  # another tenant
        (tenant.headers, later, 403),  # the reseller sees it, but did not write it
        (agent, {**later, "send_at": _at(timedelta(seconds=5))}, 422),
        (agent, {**later, "body": " "}, 422),
        (admin_headers, later, 403),
    ]:
        r = await client.post(_edit(old["id"]), json=body, headers=headers)
        assert r.status_code == status, (headers, body, r.text)
    assert await db.scheduled_messages.count_documents({}) == before  # refused: nothing stored
    assert (await db.scheduled_messages.find_one({"_id": old["id"]}))["status"] == "scheduled"

    r = await client.post(_edit(old["id"]), json=later, headers=agent)
    assert r.status_code == 201, r.text
    edited = r.json()
    assert edited["id"] != old["id"] and edited["replaces"] == old["id"] and edited["status"] == "scheduled"
    assert edited["body"] == "texto novo" and edited["author_id"] == old["author_id"]
    replaced = await db.scheduled_messages.find_one({"_id": old["id"]})
    assert replaced["status"] == "canceled" and replaced["reason"] == "edited"
    assert replaced["replaced_by"] == edited["id"]
    # The old one is gone for good: a second edit and a cancel of it are refused.
    assert (await client.post(_edit(old["id"]), json=later, headers=agent)).status_code == 409
    assert (await client.post(f"/api/v1/scheduled-messages/{old['id']}/cancel", headers=agent)).status_code == 409
    assert await db.scheduled_messages.count_documents({"replaces": old["id"]}) == 1

    assert await service.run_due(db, utcnow() + LATER) == 1
    message_id = service.message_id_of(edited["id"])
    await _delivered(db, evolution, phone, message_id, "texto novo")
    assert await db.messages.find_one({"_id": service.message_id_of(old["id"])}) is None
    assert (await _sent_texts(evolution, phone))["texto antigo"] == 0
    r = await client.get(f"/api/v1/tickets/{ticket_id}/scheduled-messages", headers=agent)
    shown = {s["id"]: (s["status"], s["reason"]) for s in r.json()["items"]}
    assert shown == {old["id"]: ("canceled", "edited"), edited["id"]: ("sent", None)}


async def test_an_edit_that_comes_after_the_pass_claimed_the_old_one_is_refused_and_the_old_one_goes(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, _, ticket_id, phone, agent = await _setup(client, admin_headers, evolution, db)
    old = await _schedule(client, ticket_id, agent, "já ia sair")
    real_insert = repository.insert
    passes: list[bool] = []

    async def pass_between(db_: Any, schedule: Any) -> None:
        await real_insert(db_, schedule)
        if schedule.replaces == old["id"]:
            # The edit has stored its new schedule and will claim the old one's key next: the
            # due pass delivers the old one first.
            stored = await repository.get_internal(db_, old["id"])
            assert stored is not None
            passes.append((await service.deliver(db_, stored)).status == "sent")

    monkeypatch.setattr(repository, "insert", pass_between)
    r = await client.post(_edit(old["id"]), json={"body": "tarde demais", "send_at": _at(LATER)}, headers=agent)
    assert passes == [True]
    assert r.status_code == 409 and r.json()["detail"]["status"] == "sent", r.text
    refused = await db.scheduled_messages.find_one({"replaces": old["id"]})
    assert refused["status"] == "canceled" and refused["reason"] == "edit_refused"
    assert await service.run_due(db, utcnow() + 2 * LATER) == 0  # neither waits any more
    await _delivered(db, evolution, phone, service.message_id_of(old["id"]), "já ia sair")
    assert await db.messages.find_one({"_id": service.message_id_of(refused["_id"])}) is None
    assert (await _sent_texts(evolution, phone))["tarde demais"] == 0


@pytest.mark.parametrize("met_first", ["the edited one", "the old one"])
async def test_an_edit_killed_between_its_two_writes_leaves_exactly_one_to_be_sent(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
    met_first: str,
) -> None:
    _, _, ticket_id, phone, agent = await _setup(client, admin_headers, evolution, db)
    old = await _schedule(client, ticket_id, agent, f"antigo, {met_first}")
    new_text = f"novo, {met_first}"
    # The pass meets the soonest first: the edit moves the time before or after the old one's.
    send_at = timedelta(minutes=30) if met_first == "the edited one" else timedelta(hours=1, minutes=30)
    real_insert = repository.insert

    async def dies_after(db_: Any, schedule: Any) -> None:
        await real_insert(db_, schedule)
        if schedule.replaces == old["id"]:
            raise _Killed

    monkeypatch.setattr(repository, "insert", dies_after)
    with pytest.raises(_Killed):
        await client.post(_edit(old["id"]), json={"body": new_text, "send_at": _at(send_at)}, headers=agent)
    monkeypatch.setattr(repository, "insert", real_insert)
    edited = await db.scheduled_messages.find_one({"replaces": old["id"]})
    assert edited["status"] == "scheduled"  # both wait: what the dead edit left
    assert (await db.scheduled_messages.find_one({"_id": old["id"]}))["status"] == "scheduled"

    assert await service.run_due(db, utcnow() + LATER) == 2
    statuses = {
        d["_id"]: (d["status"], d.get("reason"))
        for d in await db.scheduled_messages.find({"_id": {"$in": [old["id"], edited["_id"]]}}).to_list(None)
    }
    if met_first == "the edited one":
        assert statuses == {edited["_id"]: ("sent", None), old["id"]: ("canceled", "edited")}
        sent_id, sent_text, unsent_id = edited["_id"], new_text, old["id"]
    else:
        assert statuses == {old["id"]: ("sent", None), edited["_id"]: ("canceled", "edit_refused")}
        sent_id, sent_text, unsent_id = old["id"], f"antigo, {met_first}", edited["_id"]
    await _delivered(db, evolution, phone, service.message_id_of(sent_id), sent_text)
    assert await db.messages.find_one({"_id": service.message_id_of(unsent_id)}) is None
    assert await service.run_due(db, utcnow() + 2 * LATER) == 0
    texts = await _sent_texts(evolution, phone)
    assert texts[new_text] + texts[f"antigo, {met_first}"] == 1


async def test_a_scheduled_reply_whatsapp_refuses_reads_failed_with_its_reason_never_just_sent(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """Its time comes and the pass stores and queues it ("sent" as a schedule: decided once); the
    provider then refuses it for good. What the strip, the "Agendamentos" list and the author's
    screens show must follow the message: queued while queued, failed with WhatsApp's reason once
    failed — a reply the client never got is never shown as sent."""
    tenant, _, ticket_id, _phone, agent = await _setup(client, admin_headers, evolution, db)
    created = await _schedule(client, ticket_id, agent, "lembrete que não vai chegar")
    await evolution.mode("5xx")
    try:
        assert await service.run_due(db, utcnow() + LATER) == 1
        message_id = service.message_id_of(created["id"])
        queued = await client.get(f"/api/v1/tickets/{ticket_id}/scheduled-messages", headers=agent)
        (listed,) = queued.json()["items"]
        assert listed["status"] == "sent" and listed["delivery"] in ("pending", "failed"), listed
        failed = await wait_for(lambda: db.messages.find_one({"_id": message_id, "status": "failed"}), timeout=30)
    finally:
        await evolution.mode("ok")
    assert failed["scheduled_id"] == created["id"]
    strip = await client.get(f"/api/v1/tickets/{ticket_id}/scheduled-messages", headers=agent)
    (listed,) = strip.json()["items"]
    assert (listed["status"], listed["delivery"], listed["failure_reason"]) == (
        "sent",
        "failed",
        failed["failure_reason"],
    )
    page = await client.get("/api/v1/scheduled-messages", headers=tenant.headers)
    (owner_view,) = [s for s in page.json()["items"] if s["id"] == created["id"]]
    assert (owner_view["delivery"], owner_view["failure_reason"]) == ("failed", failed["failure_reason"])
    # The author's screens are told which schedule's reply failed (the alert: frontend alerts.ts).
    told = await db.tenant_events.find({"reseller_id": tenant.id, "type": "message.status"}).to_list(None)
    failures = [e for e in told if e["data"]["message_id"] == message_id and e["data"]["status"] == "failed"]
    assert len(failures) == 1 and failures[0]["message"]["scheduled_id"] == created["id"], failures
