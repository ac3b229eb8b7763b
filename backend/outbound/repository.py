"""The outbound queue, its attempts, and delivery-status moves on `messages`.

FerretDB pushes down only `_id` equality, so every read here is one:
- `outbox`: entry n is `_id` "q:<n>". Taking n means inserting that `_id` (unique: exactly one
  writer gets it), and a writer only tries n after seeing n-1 stored, so entries are exactly
  1..head — no holes. The worker walks them from a cursor, which is only a hint.
- `outbox_attempts`: attempt k of message m is `_id` "<m>:<k>". Inserting it is the claim that
  lets exactly one worker (of any process) make that attempt.
Entries and attempts are never removed (persistence rule 1); the cursor keeps reads small.
"""

from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from backend.core.db import Database

QUEUE = "outbox"
STATE = "outbox_state"
ATTEMPTS = "outbox_attempts"
MESSAGES = "messages"
CURSOR_ID = "cursor"
MAX_CLAIM_TRIES = 10_000

# Delivery statuses only move forward; `failed` only from before the provider took it.
RANK = {"pending": 0, "sent": 1, "delivered": 2, "read": 3}

_head_hint = 0  # process-local speed hint for the queue tail; always verified by lookups


def entry_id(seq: int) -> str:
    return f"q:{seq}"


def attempt_id(message_id: str, attempt: int) -> str:
    return f"{message_id}:{attempt}"


async def get_entry(db: Database, seq: int) -> dict[str, Any] | None:
    return await db[QUEUE].find_one({"_id": entry_id(seq)})


async def _exists(db: Database, seq: int) -> bool:
    return seq < 1 or await db[QUEUE].find_one({"_id": entry_id(seq)}, projection={"_id": 1}) is not None


async def head(db: Database) -> int:
    """Highest stored entry: galloping search from the hint (entries are 1..head, no holes)."""
    global _head_hint
    lo = _head_hint if await _exists(db, _head_hint) else 0
    step = 1
    hi = lo + step
    while await _exists(db, hi):
        lo, step = hi, step * 2
        hi = lo + step
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if await _exists(db, mid):
            lo = mid
        else:
            hi = mid
    _head_hint = max(_head_hint, lo)
    return lo


async def enqueue(db: Database, body: dict[str, Any]) -> int:
    global _head_hint
    seq = await head(db) + 1
    for _ in range(MAX_CLAIM_TRIES):
        try:
            await db[QUEUE].insert_one({**body, "_id": entry_id(seq), "seq": seq})
        except DuplicateKeyError:
            seq += 1
            continue
        _head_hint = max(_head_hint, seq)
        return seq
    raise RuntimeError("could not claim an outbox entry")


async def get_cursor(db: Database) -> int:
    doc = await db[STATE].find_one({"_id": CURSOR_ID})
    return int(doc["seq"]) if doc else 0


async def advance_cursor(db: Database, seq: int) -> None:
    """A hint: a concurrent worker may move it back a little, which only costs a re-read."""
    try:
        await db[STATE].update_one({"_id": CURSOR_ID}, {"$max": {"seq": seq}}, upsert=True)
    except DuplicateKeyError:  # two first upserts racing: the other one created it
        await db[STATE].update_one({"_id": CURSOR_ID}, {"$max": {"seq": seq}})


async def attempts(db: Database, message_id: str) -> list[dict[str, Any]]:
    """A message's attempts in order (1..k, claimed in order, so the first miss ends them)."""
    found: list[dict[str, Any]] = []
    while True:
        doc = await db[ATTEMPTS].find_one({"_id": attempt_id(message_id, len(found) + 1)})
        if doc is None:
            return found
        found.append(doc)


async def claim_attempt(db: Database, doc: dict[str, Any]) -> bool:
    try:
        await db[ATTEMPTS].insert_one(doc)
    except DuplicateKeyError:
        return False
    return True


async def finish_attempt(db: Database, _id: str, changes: dict[str, Any]) -> None:
    await db[ATTEMPTS].update_one({"_id": _id}, {"$set": changes})


async def get_message(db: Database, message_id: str) -> dict[str, Any] | None:
    return await db[MESSAGES].find_one({"_id": message_id})


async def move_status(
    db: Database, message_id: str, *, to: str, at: datetime, extra: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """Moves a message's delivery status forward only; returns the message when it moved.

    On MongoDB the filtered update is atomic. On FerretDB two different concurrent moves of one
    message (say delivered and read arriving together) can both pass the filter and the slower
    one win; the next status event or a redelivery heals it. Sends are never repeated by it.
    """
    allowed = ["pending", "sent"] if to == "failed" else [s for s, r in RANK.items() if r < RANK[to]]
    changes: dict[str, Any] = {"status": to, f"{to}_at": at, **(extra or {})}
    result = await db[MESSAGES].update_one({"_id": message_id, "status": {"$in": allowed}}, {"$set": changes})
    if result.matched_count == 0:
        return None
    return await get_message(db, message_id)
