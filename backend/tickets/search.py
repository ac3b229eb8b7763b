"""Inbox search: which tickets a search text and the inbox filters name. Each part is a scan
within one tenant (FerretDB scans any non-`_id` filter anyway) that yields ticket or client ids,
bounded, then joined into the ticket list's query."""

import re
from datetime import datetime
from typing import Any

from backend.clients import service as clients
from backend.core.clock import as_utc
from backend.core.db import Database
from backend.core.tenancy import TenantScope
from backend.messages import public as messages
from backend.tags import service as ticket_tags

# Bounds of the id lists a search builds; past them the newest matches are what the inbox needs.
MAX_MESSAGE_MATCHES = 2000
MAX_TAGGED = 5000
MIN_TEXT_CHARS = 3  # message-text search starts at three characters: one letter matches everything
TICKET_NUMBER = re.compile(r"^#\s*(\d{1,9})$")


async def text_filter(db: Database, scope: TenantScope, q: str) -> dict[str, Any]:
    """`#12`: ticket 12 and nothing else. Otherwise: the client's current name (any case) or part
    of its number, or the text of any message in the ticket. `scope`: the list's (the admin's
    across companies, or the one company it narrowed to)."""
    text = q.strip()
    if number := TICKET_NUMBER.match(text):
        return {"number": int(number.group(1))}
    ors: list[dict[str, Any]] = clients.search_filter(text, name="client_name", phone="client_phone")["$or"]
    client_ids = await clients.ids_matching(db, scope, text)
    if client_ids:
        ors.append({"client_id": {"$in": client_ids}})
    if len(text) >= MIN_TEXT_CHARS:
        ticket_ids = await messages.ticket_ids_with_text(db, scope, text, limit=MAX_MESSAGE_MATCHES)
        if ticket_ids:
            ors.append({"_id": {"$in": ticket_ids}})
    return {"$or": ors}


async def tag_filter(db: Database, scope: TenantScope, tag: str) -> dict[str, Any]:
    """Tickets tagged `tag`, and the tickets of clients tagged so: the filter offers every tag in
    use, on tickets or on clients (tags.tenant_tags), and a client's tag ("vip") is what its
    tickets are looked for by."""
    ors: list[dict[str, Any]] = [{"_id": {"$in": await ticket_tags.ticket_ids_with(db, scope, tag, limit=MAX_TAGGED)}}]
    client_ids = await clients.ids_tagged(db, scope, tag)
    if client_ids:
        ors.append({"client_id": {"$in": client_ids}})
    return {"$or": ors}


def period_filter(created_from: datetime | None, created_to: datetime | None) -> dict[str, Any]:
    """Tickets opened in [created_from, created_to); a time without an offset is UTC."""
    bounds: dict[str, Any] = {}
    if created_from is not None:
        bounds["$gte"] = as_utc(created_from)
    if created_to is not None:
        bounds["$lt"] = as_utc(created_to)
    return {"created_at": bounds} if bounds else {}
