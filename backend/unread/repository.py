"""Queries for unread counts: two kinds of numbered entries, read and written by `_id` only.

- `inbound_seq`: a ticket's client messages numbered 1, 2, 3, ... without holes, entry n being
  `_id` "<ticket>:<n>". Taking n is inserting that `_id`, and a writer only tries n after it saw
  n-1 stored, so "entry n exists" is monotone in n and the ticket's count is found by a galloping
  search of `_id` look-ups (the one query FerretDB pushes down). A unique (ticket, message) key
  makes a message take one number however often its delivery is retried.
- `read_markers`: a user's read position in a ticket as a chain "<user>:<ticket>:<k>", k = 1, 2,
  ..., each entry holding `seq` (read up to that inbound number), strictly increasing along the
  chain: a marker moves by inserting entry k+1 after reading entry k, so two devices marking at
  once race on a unique `_id` insert, which is atomic on every store, and the loser re-reads.
  An update of one marker document would not do on FerretDB, where every update is a
  read-modify-write of the whole document: a slower device could write an older position back.

`unread_hints` keeps where each chain ended when last written (`$max`, a hint only: a lost update
on FerretDB only makes a reader look a few entries further). A ticket's inbound hint is raised at
every INBOUND_HINT_EVERY-th number only (`claim_inbound`): it names a stored entry at most
INBOUND_HINT_EVERY - 1 behind the end, and a reader's galloping read past it finds the rest.
Nothing here is ever removed.
"""

import asyncio
from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from backend.core import group_commit
from backend.core.db import Database
from backend.core.indexes import ASC, declare
from backend.core.seqlog import gallop
from backend.core.tuning import UNREAD_INBOUND_HINT_EVERY as INBOUND_HINT_EVERY
from backend.messages.models import Message
from backend.tickets.models import Ticket

INBOUND = "inbound_seq"
MARKERS = "read_markers"
HINTS = "unread_hints"

declare(
    INBOUND,
    [("ticket_id", ASC), ("message_id", ASC)],
    name="ticket_message_unique",
    unique=True,
    purpose="a client message takes one inbound number per ticket, however often it is recorded",
)


def inbound_id(ticket_id: str, n: int) -> str:
    return f"{ticket_id}:{n}"


def marker_prefix(user_id: str, ticket_id: str) -> str:
    return f"{user_id}:{ticket_id}"


async def _get(db: Database, collection: str, _id: str) -> dict[str, Any] | None:
    return await db[collection].find_one({"_id": _id})


async def _hint(db: Database, hint_id: str) -> dict[str, Any]:
    return await _get(db, HINTS, hint_id) or {}


async def raise_hint(db: Database, hint_id: str, values: dict[str, int]) -> None:
    """Only ever raised to an entry that is stored, so a hint names a stored entry (never removed).
    A marker's hint carries (n, seq) of one entry: both grow together along the chain, so `$max`
    keeps them a pair on MongoDB, and FerretDB's whole-document write-back writes a pair back."""
    # With concurrent raises (a backlog's lanes), in one `update` command (backend/core/group_commit.py).
    try:
        await group_commit.update_by_id(db[HINTS], hint_id, {"$max": values}, upsert=True)
    except DuplicateKeyError:  # two first upserts racing: the other one created it
        await group_commit.update_by_id(db[HINTS], hint_id, {"$max": values})


async def _chain_end(
    db: Database, collection: str, prefix: str, lo: int, lo_doc: dict[str, Any] | None
) -> tuple[int, dict[str, Any] | None]:
    """(n, entry n or the caller's stand-in) for the highest stored entry of a hole-free chain,
    starting from entry `lo`, known stored. Galloping, then bisecting: O(log distance) reads;
    one read when nothing was added past `lo`."""
    seen = {lo: lo_doc}

    async def stored(n: int) -> bool:
        if (doc := await _get(db, collection, f"{prefix}:{n}")) is not None:
            seen[n] = doc
        return doc is not None

    n = await gallop(lo, stored)
    return n, seen[n]


async def inbound_head(db: Database, ticket_id: str, *, known: int = 0) -> int:
    """How many client messages the ticket has recorded: its hint, and a read past it.
    `known`: a number the caller knows stored (numbers 1..known are: the chain has no holes).
    The hint and the entry past `known` are read together, so when nothing was recorded past
    what the caller knows (and the hint is not ahead of it) one round says so."""
    hint_doc, past = await asyncio.gather(
        _hint(db, f"in:{ticket_id}"), _get(db, INBOUND, inbound_id(ticket_id, known + 1))
    )
    hint = int(hint_doc.get("n", 0))
    if past is None and hint <= known:
        return known
    n, _ = await _chain_end(db, INBOUND, ticket_id, max(hint, known + 1 if past is not None else known), None)
    return n


async def inbound_messages(db: Database, ticket_id: str, numbers: range) -> list[str]:
    """The message ids numbered `numbers` in the ticket: one `_id` read each, side by side (an
    `$in` of `_id`s is a scan on FerretDB)."""
    docs = await asyncio.gather(*(_get(db, INBOUND, inbound_id(ticket_id, n)) for n in numbers))
    return [str(d["message_id"]) for d in docs if d is not None]


async def claim_inbound(db: Database, ticket: Ticket, message: Message, *, n: int) -> int | None:
    """Tries to file the message as inbound number n. Answers the message's number: n now, or the
    one it already had; None when n is taken by another message (try n+1).

    The insert goes out with concurrent callers' (group commit: one command for a backlog's
    lanes; each caller still gets its own DuplicateKeyError). The hint is raised at every
    INBOUND_HINT_EVERY-th number only (module docstring: one write per that many messages; a
    reader in the process that numbered them starts from what it remembers, unread.service)."""
    doc = {
        "_id": inbound_id(ticket.id, n),
        "ticket_id": ticket.id,
        "reseller_id": ticket.reseller_id,
        "message_id": message.id,
        "n": n,
        "created_at": message.created_at,
    }
    try:
        await group_commit.insert_one(db[INBOUND], doc)
    except DuplicateKeyError:
        holder = await _get(db, INBOUND, inbound_id(ticket.id, n))
        if holder is not None:
            return n if holder["message_id"] == message.id else None
        # n is free as far as we can read, so the message key refused us — or n's winner is not
        # visible to us yet (replica set): tell them apart by the message key itself (rare path).
        mine = await db[INBOUND].find_one({"ticket_id": ticket.id, "message_id": message.id}, {"n": 1})
        return int(mine["n"]) if mine is not None else None
    if n % INBOUND_HINT_EVERY == 0:
        await raise_hint(db, f"in:{ticket.id}", {"n": n})
    return n


async def marker_hint(db: Database, user_id: str, ticket_id: str) -> tuple[int, int]:
    """(k, seq) of a stored marker entry at or before the chain's end (one read)."""
    hint = await _hint(db, f"rd:{marker_prefix(user_id, ticket_id)}")
    return int(hint.get("n", 0)), int(hint.get("seq", 0))


async def marker(db: Database, user_id: str, ticket_id: str, *, hint: tuple[int, int] | None = None) -> tuple[int, int]:
    """(k, seq): the user's marker chain ends at entry k, which says "read up to inbound seq"."""
    k, seq = hint if hint is not None else await marker_hint(db, user_id, ticket_id)
    k, doc = await _chain_end(db, MARKERS, marker_prefix(user_id, ticket_id), k, {"seq": seq})
    return k, int(doc["seq"]) if doc else 0


async def insert_marker(db: Database, *, user_id: str, ticket: Ticket, k: int, seq: int, at: datetime) -> bool:
    """Stores marker entry k; False when another device stored it first."""
    prefix = marker_prefix(user_id, ticket.id)
    doc = {
        "_id": f"{prefix}:{k}",
        "user_id": user_id,
        "ticket_id": ticket.id,
        "reseller_id": ticket.reseller_id,
        "k": k,
        "seq": seq,
        "at": at,
    }
    try:
        await db[MARKERS].insert_one(doc)
    except DuplicateKeyError:
        return False
    await raise_hint(db, f"rd:{prefix}", {"n": k, "seq": seq})
    return True
