"""Names for a ticket's timeline: events store ids (who acted, which agent or department a
transfer went to); the thread shows people. Resolved at read time, one `_id` read per distinct
id on the page, so a rename shows everywhere and the append-only log never needs rewriting.
A name only ever comes from the event's own tenant."""

from collections.abc import Awaitable, Callable

from backend.audit.schemas import TicketEventRead
from backend.core.db import Database
from backend.departments import service as departments
from backend.tickets.models import TicketEvent
from backend.users import service as users

NameOf = Callable[[Database, str, str], Awaitable[str | None]]  # (db, tenant, id) -> its name there


async def with_names(db: Database, events: list[TicketEvent]) -> list[TicketEventRead]:
    found: dict[tuple[NameOf, str], str | None] = {}

    async def name(of: NameOf, reseller_id: str, id_: str) -> str | None:
        if (of, id_) not in found:
            found[of, id_] = await of(db, reseller_id, id_)
        return found[of, id_]

    out: list[TicketEventRead] = []
    for event in events:
        tenant, data = event.reseller_id, event.data
        actor_name = await name(users.name_in_tenant, tenant, event.actor_id) if event.actor_id else None
        target_name = None
        if isinstance(data.get("to_agent_id"), str):
            target_name = await name(users.name_in_tenant, tenant, data["to_agent_id"])
        elif isinstance(data.get("to_department_id"), str):
            target_name = await name(departments.name_in_tenant, tenant, data["to_department_id"])
        out.append(TicketEventRead.of(event).model_copy(update={"actor_name": actor_name, "target_name": target_name}))
    return out
