"""Names for a ticket's timeline: events store ids (who acted, which agent or department a
transfer went to); the thread shows people. Resolved at read time, one `_id` read per distinct
id on the page, so a rename shows everywhere and the append-only log never needs rewriting.
A name only ever comes from the event's own tenant."""

from typing import Any

from backend.audit.schemas import TicketEventRead
from backend.core.db import Database
from backend.departments import service as departments
from backend.users import service as users


async def with_names(db: Database, docs: list[dict[str, Any]]) -> list[TicketEventRead]:
    people: dict[str, str | None] = {}
    queues: dict[str, str | None] = {}

    async def person(reseller_id: str, user_id: str) -> str | None:
        if user_id not in people:
            people[user_id] = await users.name_in_tenant(db, reseller_id, user_id)
        return people[user_id]

    async def queue(reseller_id: str, department_id: str) -> str | None:
        if department_id not in queues:
            queues[department_id] = await departments.name_in_tenant(db, reseller_id, department_id)
        return queues[department_id]

    out: list[TicketEventRead] = []
    for doc in docs:
        tenant, data = doc["reseller_id"], doc.get("data") or {}
        actor_name = await person(tenant, doc["actor_id"]) if doc.get("actor_id") else None
        target_name = None
        if isinstance(data.get("to_agent_id"), str):
            target_name = await person(tenant, data["to_agent_id"])
        elif isinstance(data.get("to_department_id"), str):
            target_name = await queue(tenant, data["to_department_id"])
        out.append(TicketEventRead.from_doc({**doc, "actor_name": actor_name, "target_name": target_name}))
    return out
