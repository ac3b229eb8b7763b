"""Tickets as the API answers them: the stored projection plus what lives elsewhere and must read
current — the client's name as it is now (a rename shows at once, without rewriting ticket
documents, which on FerretDB would race the projection writers) and the ticket's tags."""

import asyncio
from typing import Any

from backend.core.db import Database
from backend.tags import repository as ticket_tags
from backend.tickets.schemas import TicketRead
from backend.users import repository as users


async def read_many(db: Database, docs: list[dict[str, Any]]) -> list[TicketRead]:
    client_ids = list(dict.fromkeys(d["client_id"] for d in docs))
    clients, tags = await asyncio.gather(
        asyncio.gather(*(users.get(db, cid) for cid in client_ids)), ticket_tags.tags_of(db, [d["_id"] for d in docs])
    )
    names = {cid: c["name"] for cid, c in zip(client_ids, clients, strict=True) if c is not None}
    return [
        TicketRead.from_doc(
            {**d, "client_name": names.get(d["client_id"], d.get("client_name", "")), "tags": tags.get(d["_id"], [])}
        )
        for d in docs
    ]


async def read_one(db: Database, doc: dict[str, Any]) -> TicketRead:
    return (await read_many(db, [doc]))[0]
