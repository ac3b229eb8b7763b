"""A ticket's first client message time (reports/repository.py `claim_first_in`): the first
recorded claims it, once; a process remembers the tickets whose claim it has seen taken, so the
later client messages of a ticket send nothing for it, and a process without the hint (another
one, or after a restart) pays one insert that loses — never a different first response."""

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from backend.core import natural_keys
from backend.core.db import Database
from backend.core.ids import new_id
from backend.messages import repository as messages_repo
from backend.messages.models import Message
from backend.reports import aggregates, repository
from backend.reports import service as reports
from tests.factories import Tenant, make_client_ticket, make_open_connection, make_tenant
from tests.monitoring import CommandRecorder, recorded


@pytest.fixture
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, departments=1, agents=1)


@pytest.fixture
async def counted(db: Database, mongo_url: str) -> AsyncIterator[tuple[Database, CommandRecorder]]:
    """Another process on the same database (its own client and runtime: no hints), recorded."""
    async with recorded(db, mongo_url) as found:
        yield found


async def _stored(db: Database, ticket: dict[str, Any], *, direction: str, after_ms: int) -> Message:
    first = await db.messages.find_one({"ticket_id": ticket["_id"], "direction": "in"})
    assert first is not None
    doc = Message.model_validate(
        {
            "_id": new_id(),
            "reseller_id": ticket["reseller_id"],
            "ticket_id": ticket["_id"],
            "direction": direction,
            "sender_type": "client" if direction == "in" else "agent",
            "sender_id": ticket["client_id"] if direction == "in" else ticket["agent_id"],
            "agent_id": ticket.get("agent_id"),
            "department_id": ticket["department_id"],
            "channel": ticket["channel"],
            "body": "mais uma",
            "status": "received" if direction == "in" else "sent",
            "created_at": first["created_at"] + timedelta(milliseconds=after_ms),
        }
    )
    await messages_repo.insert(db, doc)
    return doc


def _first_in_commands(recorder: CommandRecorder) -> list[str]:
    prefix = natural_keys.key_id(repository.FIRST_IN, "")
    out = []
    for name, command in recorder.commands:
        if command.get(name) != natural_keys.COLLECTION:
            continue
        ids = [d["_id"] for d in command.get("documents", [])] + [command.get("filter", {}).get("_id", "")]
        out += [name for i in ids if str(i).startswith(prefix)]
    return out


async def test_later_client_messages_send_nothing_for_the_first_in_where_the_claim_was_seen(
    client: httpx.AsyncClient, db: Database, tenant: Tenant, counted: tuple[Database, CommandRecorder]
) -> None:
    other, recorder = counted
    conn = await make_open_connection(client, tenant, db)
    ticket_read = await make_client_ticket(client, tenant, db, connection=conn)  # recorded by the app's process
    ticket = await db.tickets.find_one({"_id": ticket_read["id"]})
    first = await db.messages.find_one({"ticket_id": ticket["_id"], "direction": "in"})
    first_ms = reports._epoch_ms(first["created_at"])

    second = await _stored(db, ticket, direction="in", after_ms=2_000)
    await reports.record_message(other, second, ticket)  # no hint there: one insert, which loses
    assert _first_in_commands(recorder) == ["insert"]
    assert await repository.first_in(db, ticket["_id"]) == first_ms

    recorder.commands.clear()
    third = await _stored(db, ticket, direction="in", after_ms=3_000)
    await reports.record_message(other, third, ticket)  # the hint: nothing
    await reports.record_message(db, third, ticket)  # the app's process claimed it: nothing either
    assert _first_in_commands(recorder) == []

    # The first response still runs from the first message, whichever process records the reply.
    await client.post(f"/api/v1/tickets/{ticket['_id']}/assume", headers=tenant.agents[0]["headers"])
    ticket = await db.tickets.find_one({"_id": ticket["_id"]})
    reply = await _stored(db, ticket, direction="out", after_ms=9_000)
    await reports.record_message(other, reply, ticket)
    assert _first_in_commands(recorder) == ["find"]  # the reply's look-up, where no claim was won
    states = await repository.months(db, tenant.id, await repository.known_months(db, tenant.id), "all")
    cells = [cell for state in states for _, _, cell in aggregates.month_cells(state)]
    assert [v for cell in cells for v in aggregates.unpack(cell.get("fr"))] == [9_000]
    assert (sum(int(c.get("mi", 0)) for c in cells), sum(int(c.get("mo", 0)) for c in cells)) == (3, 1)
