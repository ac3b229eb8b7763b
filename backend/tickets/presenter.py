"""Tickets as the API answers them: the stored projection plus what lives elsewhere and must read
current — the client's and the agent's names as they are now (a rename shows at once, without
rewriting ticket documents, which on FerretDB would race the projection writers) and the
ticket's tags."""

import asyncio

from backend.connections import service as connections
from backend.core.db import Database
from backend.core.tenancy import Actor, TenantScope
from backend.tags import service as ticket_tags
from backend.tickets import links
from backend.tickets.models import Ticket
from backend.tickets.schemas import TicketRead
from backend.unread import service as unread
from backend.users import service as users


async def _names(db: Database, scope: TenantScope, user_ids: list[str]) -> dict[str, str]:
    """Current names by `_id` look-ups, the one query FerretDB serves from an index."""
    unique = list(dict.fromkeys(user_ids))
    found = await asyncio.gather(*(users.get(db, scope, uid) for uid in unique))
    return {uid: user.name for uid, user in zip(unique, found, strict=True) if user is not None}


async def _unread(db: Database, reader: Actor, ids: list[str], given: dict[str, int] | None) -> dict[str, int]:
    return given if given is not None else await unread.counts(db, reader.id, ids)


async def read_many(
    db: Database, tickets: list[Ticket], *, reader: Actor, unread_counts: dict[str, int] | None = None
) -> list[TicketRead]:
    """`reader`: the user the tickets are shown to (read in their scope, with their unread counts,
    or with `unread_counts` when the caller has read them)."""
    people = [t.client_id for t in tickets] + [t.agent_id for t in tickets if t.agent_id]
    ids = [t.id for t in tickets]
    names, tags, counted = await asyncio.gather(
        _names(db, reader.scope, people),
        ticket_tags.tags_of(db, reader.scope, ids),
        _unread(db, reader, ids, unread_counts),
    )
    return [
        TicketRead.of(t).model_copy(
            update={
                "client_name": names.get(t.client_id, t.client_name),
                "agent_name": names.get(t.agent_id, t.agent_name) if t.agent_id else t.agent_name,
                "tags": tags.get(t.id, []),
                "unread_count": counted.get(t.id, 0),
            }
        )
        for t in tickets
    ]


async def read_one(db: Database, doc: Ticket, *, reader: Actor, unread_count: int | None = None) -> TicketRead:
    """One ticket, as its screen needs it: also why a reply cannot reach the client now, and
    the ticket "Reabrir" opened for it (`_id` reads lists do without; tickets.links completes a
    link a crash left half-written)."""
    given = {doc.id: unread_count} if unread_count is not None else None
    read = (await read_many(db, [doc], reader=reader, unread_counts=given))[0]
    conn, reopened = await asyncio.gather(connections.of_ticket(db, doc), links.reopened_as(db, doc))
    return read.model_copy(update={"reply_blocked": connections.blocked(conn), "reopened_as_ticket_id": reopened})
