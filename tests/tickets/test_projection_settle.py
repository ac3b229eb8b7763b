"""A writer of a ticket document reads it back and repairs it (projection.settle), so a concurrent
whole-document write-back — what FerretDB v1 does for every update — cannot undo a transition.
The sweep is off in this module: what is checked here is repaired by the writers themselves,
right when their call returns, with no reader and no background help."""

from typing import Any

import httpx
import pytest

from backend.core.config import Settings
from backend.messages import service as messages
from backend.messages.models import Message
from backend.outbound import service as outbound
from backend.tickets import service as tickets
from backend.tickets.models import Ticket
from tests.conftest import make_settings
from tests.factories import API, Tenant, assume, make_tenant, make_ticket
from tests.tickets.projection_support import (
    assert_lists_agree,
    divergences,
    log_assume_without_projecting,
    write_back_with,
)


@pytest.fixture(scope="module")
def settings(mongo_url: str, db_name: str) -> Settings:
    return make_settings(mongo_url, db_name, TICKET_SWEEP_ENABLED=False)


@pytest.fixture
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, departments=2, agents=2)


async def _client_message(db: Any, ticket: Ticket, body: str) -> Message:
    message, created = await messages.append(
        db,
        ticket,
        direction="in",
        sender_type="client",
        sender_id=ticket.client_id,
        sender_name=ticket.client_name,
        body=body,
        status="received",
    )
    assert created
    return message


@pytest.mark.parametrize("action", ["finalize", "assume", "transfer"])
async def test_activity_write_back_cannot_undo_a_transition(
    client: httpx.AsyncClient, tenant: Tenant, db: Any, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """A client message's activity update reads the ticket in espera; the agent's move lands;
    then the update writes the whole document back — espera and the old version again."""
    ticket = await make_ticket(client, tenant)
    tid = ticket["id"]
    if action == "transfer":
        await assume(client, tenant.agents[0]["headers"], tid)
    before = await tickets.load(db, tid)
    assert before is not None
    headers = tenant.agents[0]["headers"] if action == "assume" else tenant.headers
    body = {"department_id": tenant.departments[1]["id"]} if action == "transfer" else None

    async def move() -> None:
        r = await client.post(f"{API}/tickets/{tid}/{action}", json=body, headers=headers)
        assert r.status_code == 200, r.text

    fired = write_back_with(monkeypatch, ticket_id=tid, field="last_message_at", competitor=move)
    message = await _client_message(db, before, "espera, mais uma coisa")
    assert fired[0]

    # Right away, with nobody opening the ticket: the stored ticket is what its log says.
    assert await divergences(db, tenant.id) == []
    stored = await db.tickets.find_one({"_id": tid})
    assert stored["status"] == {"finalize": "finalizado", "assume": "atendendo", "transfer": "espera"}[action]
    record = await db.tenant_events.find_one({"type": "message.created", "message.id": message.id})
    assert record is not None
    if action == "finalize":
        # The activity's read-back is also the message's re-check (messages.service): it saw the
        # finalize, so the message moved on to the client's next ticket and is announced there.
        filed = await db.messages.find_one({"_id": message.id})
        assert filed["ticket_id"] != tid and filed["moved_from_ticket_id"] == tid
        assert record["ticket"]["id"] == filed["ticket_id"] and record["ticket"]["status"] == "espera", record
    else:
        # The message's announcement shows the ticket as the log has it, not as it was read.
        assert record["ticket"]["status"] == stored["status"], record
    monkeypatch.undo()
    await assert_lists_agree(client, tenant)


async def test_transition_write_back_cannot_undo_a_later_transition(
    client: httpx.AsyncClient, tenant: Tenant, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An assume's projection write reads the ticket, a finalize (the next event) lands, then the
    assume writes back its whole document: version 2 over version 3."""
    ticket = await make_ticket(client, tenant)
    tid = ticket["id"]

    async def finalize() -> None:
        r = await client.post(f"{API}/tickets/{tid}/finalize", headers=tenant.headers)
        assert r.status_code == 200, r.text

    fired = write_back_with(monkeypatch, ticket_id=tid, field="status", competitor=finalize)
    r = await client.post(f"{API}/tickets/{tid}/assume", headers=tenant.agents[0]["headers"])
    assert r.status_code == 200, r.text
    assert fired[0]

    assert await divergences(db, tenant.id) == []
    stored = await db.tickets.find_one({"_id": tid})
    assert (stored["status"], stored["version"]) == ("finalizado", 3)
    monkeypatch.undo()
    listed = await assert_lists_agree(client, tenant)
    assert listed[tid] == "finalizado"


async def test_a_status_announcement_shows_the_ticket_as_its_log_says(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    """A delivery receipt announces its message with the ticket: as the log has it, even while the
    stored ticket is behind (its last mover died after logging)."""
    ticket = await make_ticket(client, tenant)
    await log_assume_without_projecting(db, ticket["id"], tenant.agents[0])
    message = Message.model_validate(await db.messages.find_one({"ticket_id": ticket["id"]}))
    await outbound.announce_status(db, message)
    record = await db.tenant_events.find_one({"type": "message.status", "message.id": message.id})
    assert record is not None
    assert (record["ticket"]["status"], record["ticket"]["version"]) == ("atendendo", 2), record["ticket"]
