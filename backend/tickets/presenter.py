"""Tickets as the API answers them: the stored projection plus what lives elsewhere and must read
current — the client's and the agent's names as they are now (a rename shows at once, without
rewriting ticket documents, which on FerretDB would race the projection writers) and the
ticket's tags."""

import asyncio
from typing import Any

from backend.connections import service as connections
from backend.core.db import Database
from backend.core.tenancy import Actor, TenantScope
from backend.tags import service as ticket_tags
from backend.tickets import links
from backend.tickets.schemas import TicketRead
from backend.unread import service as unread
from backend.users import service as users


async def _names(db: Database, scope: TenantScope, user_ids: list[str]) -> dict[str, str]:
    """Current names by `_id` look-ups, the one query FerretDB serves from an index."""
    unique = list(dict.fromkeys(user_ids))
    found = await asyncio.gather(*(users.get(db, scope, uid) for uid in unique))
    return {uid: user.name for uid, user in zip(unique, found, strict=True) if user is not None}


async def read_many(db: Database, docs: list[dict[str, Any]], *, reader: Actor) -> list[TicketRead]:
    """`reader`: the user the tickets are shown to (read in their scope, with their unread counts)."""
    people = [d["client_id"] for d in docs] + [d["agent_id"] for d in docs if d.get("agent_id")]
    ids = [d["_id"] for d in docs]
    names, tags, unread_counts = await asyncio.gather(
        _names(db, reader.scope, people), ticket_tags.tags_of(db, reader.scope, ids), unread.counts(db, reader.id, ids)
    )
    out = []
    for d in docs:
        current = {
            "client_name": names.get(d["client_id"], d.get("client_name", "")),
            "tags": tags.get(d["_id"], []),
            "unread_count": unread_counts.get(d["_id"], 0),
        }
        if d.get("agent_id"):
            current["agent_name"] = names.get(d["agent_id"], d.get("agent_name"))
        out.append(TicketRead.from_doc({**d, **current}))
    return out


async def read_one(db: Database, doc: dict[str, Any], *, reader: Actor) -> TicketRead:
    """One ticket, as its screen needs it: also why a reply cannot reach the client now, and
    the ticket "Reabrir" opened for it (`_id` reads lists do without; tickets.links completes a
    link a crash left half-written)."""
    read = (await read_many(db, [doc], reader=reader))[0]
    blocked, reopened = await asyncio.gather(
        connections.reply_blocked(db, doc),
        links.reopened_as(db, doc),
    )
    return read.model_copy(update={"reply_blocked": blocked, "reopened_as_ticket_id": reopened})
