"""The outbound queue and its attempts (delivery statuses move on `messages`: messages/repository.py).

FerretDB pushes down only `_id` equality, so every read here is one:
- `outbox`: entry n is `_id` "q:<n>" (backend/core/seqlog.py, plain append: a writer only tries
  n after seeing n-1 stored, so entries are exactly 1..head — no holes). The worker walks them
  from a cursor, which is only a hint.
- `outbox_chats`: the replies of one WhatsApp chat (connection + client number) in the order
  they were queued: entry k of chat c is `_id` "c:<c>:<k>", taken like the queue's (plain append,
  1..k with no holes). A queue entry records its chat and k, so a worker of any process finds
  the reply before it in its chat with one `_id` read.
- `outbox_passed`: the queued messages the worker passed as never stored, `_id` "p:<n>" (plain
  append, like the queue, with its own cursor): walked once a lease, each entry for up to
  `OUTBOUND_LATE_STORE_SECONDS` after its pass, so a message that lands after all is queued again
  even when its writer died before looking (backend/outbound/service.py, `pass_unstored`).
- `outbox_attempts`: attempt k of message m is `_id` "<m>:<k>". Inserting it is the claim that
  lets exactly one worker (of any process) make that attempt (backend/core/attempts.py).
- `receipts_parked`: status receipts that arrived before their message was known, `_id`
  "<connection>:<provider message id>", applied by whoever makes the message known.
- `outbox_sending`: per (connection, client number, text), the latest attempt that sends it;
  what a fromMe upsert of that text is checked against before the attempt is answered.
- `outbox_echoes`: fromMe upserts held as the probable echo of an unanswered attempt a, `_id`
  "<a>#<n>" (n = 1, 2, ... in arrival order, no holes), settled by provider id once the
  attempt is answered (backend/outbound/service.py, `from_me_verdict`).
Entries and attempts are never removed (persistence rule 1); the cursor keeps reads small.
"""

import hashlib
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError

from backend.clients.phones import address_key
from backend.core.attempts import AttemptLedger
from backend.core.clock import utcnow
from backend.core.conditional import one_writer
from backend.core.db import Database
from backend.core.logging import get_logger
from backend.core.runtime import runtime_of
from backend.core.seqlog import SeqLog, gallop
from backend.core.tuning import OUTBOUND_CHAT_HINTS as CHAT_HINTS
from backend.outbound.models import (
    ChatEntry,
    HeldEcho,
    ParkedReceipts,
    PassedBody,
    QueueBody,
    QueueEntry,
    Resolution,
    SendAttempt,
    Sending,
)

QUEUE = "outbox"
CHATS = "outbox_chats"
SENDING = "outbox_sending"
PARKED = "receipts_parked"
STATE = "outbox_state"
ATTEMPTS = "outbox_attempts"
ECHOES = "outbox_echoes"
MAX_HELD_PER_ATTEMPT = 100
CURSOR_ID = "cursor"
PASSED = "outbox_passed"
PASSED_CURSOR_ID = "passed-cursor"
MAX_CHAT_CLAIM_TRIES = 1_000

queue = SeqLog(QUEUE, "q:", state_collection=STATE, cursor_id=CURSOR_ID, keeps_appends=True)  # 1..head, no holes
passed_log = SeqLog(PASSED, "p:", state_collection=STATE, cursor_id=PASSED_CURSOR_ID, keeps_appends=True)
log = get_logger("outbound")

attempts = AttemptLedger(ATTEMPTS, what="send", model=SendAttempt)


async def enqueue(db: Database, body: QueueBody) -> int:
    seq, _ = await queue.append(db, body.model_dump())
    return seq


async def log_passed(db: Database, body: PassedBody) -> None:
    await passed_log.append(db, body.model_dump())


async def get_entry(db: Database, seq: int) -> QueueEntry | None:
    return QueueEntry.load(await queue.get(db, seq))


def chat_key(connection_id: str, phone: str) -> str:
    """One WhatsApp chat: the connection's number talking to the client's number, in the form the
    client keys use (backend/clients/phones.py): a ticket's client saved as "55 31 9 8xxx-xxxx"
    and the JID "5531 8xxx-xxxx" its messages and our sends' echoes come from are one chat.
    Where this form is new (a client saved without the ninth digit, before version 2 of the
    migrations), what was stored under the old key is per send and names its own chat: a queue
    entry keeps the chat it took a place in, so replies queued before the change are ordered
    among themselves and those after among themselves (one still unsent at the change does not
    hold back one queued after it); an `outbox_sending` marker lives for one attempt's lease; an
    open survey is copied to the new key by the migration (backend/migrations/phone_keys.py)."""
    return f"{connection_id}:{address_key(phone)}"


def chat_entry_id(chat: str, k: int) -> str:
    return f"c:{chat}:{k}"


async def get_chat_entry(db: Database, chat: str, k: int) -> ChatEntry | None:
    return ChatEntry.load(await db[CHATS].find_one({"_id": chat_entry_id(chat, k)}))


async def _chat_entry_stored(db: Database, chat: str, k: int) -> bool:
    return await get_chat_entry(db, chat, k) is not None


def _remember_chat_head(db: Database, chat: str, k: int) -> None:
    """A bounded, process-local hint: a chat's position seen stored here (entries are never
    removed, so it stays true). Forgotten for the least recent chats past the bound."""
    heads, key = runtime_of(db).outbound_chat_heads, (db.name, chat)
    heads[key] = max(k, heads.pop(key, 0))
    while len(heads) > CHAT_HINTS:
        heads.popitem(last=False)


async def _chat_head(db: Database, chat: str) -> int:
    """The chat's last entry: galloping from the hint past what it missed."""
    hint = runtime_of(db).outbound_chat_heads.get((db.name, chat), 0)
    lo = await gallop(hint, lambda k: _chat_entry_stored(db, chat, k))
    _remember_chat_head(db, chat, lo)
    return lo


async def append_to_chat(db: Database, chat: str, *, message_id: str, enqueued_at: datetime) -> int:
    """Takes the chat's next position (a unique `_id` insert: exactly one writer gets each k)."""
    k = await _chat_head(db, chat) + 1
    for _ in range(MAX_CHAT_CLAIM_TRIES):
        entry = ChatEntry(id=chat_entry_id(chat, k), chat=chat, k=k, message_id=message_id, enqueued_at=enqueued_at)
        try:
            await db[CHATS].insert_one(entry.stored())
            break
        except DuplicateKeyError:  # another reply of the chat took k: move past what is stored
            k = max(k, await _chat_head(db, chat)) + 1
    else:
        raise RuntimeError(f"could not take a position in chat {chat!r}")
    _remember_chat_head(db, chat, k)
    return k


async def mark_chat_again(db: Database, chat: str, k: int) -> None:
    """The place a message was queued again at (`ChatEntry.again`); its one writer sets it, once
    the place's queue entry is stored."""
    await db[CHATS].update_one({"_id": chat_entry_id(chat, k)}, {"$set": {"again": True}})


def sending_id(connection_id: str, phone: str, text: str) -> str:
    """What the provider's echo of a send can be matched on before its id is known."""
    return f"{chat_key(connection_id, phone)}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"


async def mark_sending(
    db: Database, *, connection_id: str, phone: str, text: str, message_id: str, attempt_id: str
) -> None:
    """Records that attempt `attempt_id` of `message_id` is about to send this text to this phone."""
    doc = {"message_id": message_id, "attempt_id": attempt_id, "at": utcnow()}
    _id = sending_id(connection_id, phone, text)
    try:
        await db[SENDING].update_one({"_id": _id}, {"$set": doc}, upsert=True)
    except DuplicateKeyError:  # two first upserts racing: the other one created it
        await db[SENDING].update_one({"_id": _id}, {"$set": doc})


async def get_sending(db: Database, *, connection_id: str, phone: str, text: str) -> Sending | None:
    return Sending.load(await db[SENDING].find_one({"_id": sending_id(connection_id, phone, text)}))


def hold_id(attempt_id: str, n: int) -> str:
    return f"{attempt_id}#{n}"


async def hold_echo(db: Database, *, hold: HeldEcho) -> HeldEcho:
    """Holds a fromMe upsert as a probable echo of its attempt, as the attempt's next free n (its
    `_id`; an upsert held already, e.g. a redelivery, keeps its hold). Returns the hold."""
    for n in range(1, MAX_HELD_PER_ATTEMPT + 1):
        hold = hold.model_copy(update={"id": hold_id(hold.attempt_id, n)})
        try:
            await db[ECHOES].insert_one(hold.stored())
            return hold
        except DuplicateKeyError:
            doc = await db[ECHOES].find_one({"_id": hold.id})
            taken = _settleable(doc, hold.attempt_id, hold.message_id) if doc is not None else None
            if taken is not None and taken.provider_message_id == hold.provider_message_id:
                return taken
    raise RuntimeError(f"more than {MAX_HELD_PER_ATTEMPT} upserts held for attempt {hold.attempt_id}")


async def held_echoes(db: Database, attempt: SendAttempt) -> list[HeldEcho]:
    """The attempt's holds in arrival order (taken 1..n, so the first miss ends them). A hold
    whose document does not read as a whole is read by what settling it needs (`_settleable`):
    passed over, the phone message it may be would never be stored, and its reply could be sent
    again as though the provider never took it (`echo_of_unanswered`). One without even that is
    logged and passed over: it must not keep its reply from settling."""
    holds, n = [], 1
    while (doc := await db[ECHOES].find_one({"_id": hold_id(attempt.id, n)})) is not None:
        if (hold := _settleable(doc, attempt.id, attempt.message_id)) is not None:
            holds.append(hold)
        n += 1
    return holds


# What a hold must read to be settled: the upsert it stands for, to release or bind, and the record
# it is stored as (derived from the provider id, it would be wrong for a reaction or an edit).
_SETTLES_BY = {"_id", "connection_id", "provider_message_id", "raw_id", "own_message_id"}


def _settleable(doc: dict[str, Any], attempt_id: str, message_id: str) -> HeldEcho | None:
    """The hold as stored; if that does not read, its settling fields with the rest from its
    attempt (whose `_id` it is held under) or unknown: its time, its resolution (then unsettled:
    settling is safe to repeat), its type (None: it is then never taken for the echo of an
    unanswered send, `echo_of_unanswered`, which sends again rather than show sent a reply that
    may not have gone out)."""
    try:
        return HeldEcho.model_validate(doc)
    except ValidationError as exc:
        bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        if bad & _SETTLES_BY:
            log.error("held echo unreadable; passed over", hold_id=str(doc.get("_id")), error=str(exc))
            return None
        log.error("held echo partly unreadable; settled by what reads", hold_id=str(doc["_id"]), fields=sorted(bad))
        kept = {k: v for k, v in doc.items() if k not in bad}
        known = {"attempt_id": attempt_id, "message_id": message_id, "held_at": kept.get("held_at", utcnow())}
        return HeldEcho.model_validate({**kept, **known, "type": None if "type" in bad else kept.get("type", "text")})


async def resolve_hold(db: Database, _id: str, resolution: Resolution) -> None:
    """ "echo" (it was the attempt's echo) or "released" (stored as a message of its own). Both
    sides that may settle a hold reach the same resolution, so the order of writes is moot."""
    await db[ECHOES].update_one({"_id": _id}, {"$set": {"resolution": resolution, "resolved_at": utcnow()}})


def parked_id(connection_id: str, provider_message_id: str) -> str:
    return f"{connection_id}:{provider_message_id}"


async def park_receipt(db: Database, *, connection_id: str, provider_message_id: str, status: str, reason: str) -> None:
    """Keeps a receipt whose message is not known yet. Receipts of one chat are processed in order
    (one webhook lane), so the statuses accumulate in arrival order."""
    _id = parked_id(connection_id, provider_message_id)
    update = {
        "$push": {"receipts": {"status": status, "reason": reason, "at": utcnow()}},
        "$setOnInsert": {"connection_id": connection_id, "provider_message_id": provider_message_id},
        "$set": {"applied_at": None},
    }
    # Takes turns with `mark_parked_applied` (`one_writer`): on FerretDB its write-back of the
    # document as it read it would drop this receipt and mark it applied, and nobody would apply it.
    async with one_writer(db, PARKED, _id):
        try:
            await db[PARKED].update_one({"_id": _id}, update, upsert=True)
        except DuplicateKeyError:  # two first upserts racing: the other one created it
            await db[PARKED].update_one({"_id": _id}, {k: v for k, v in update.items() if k != "$setOnInsert"})


async def get_parked(db: Database, *, connection_id: str, provider_message_id: str) -> ParkedReceipts | None:
    return ParkedReceipts.load(await db[PARKED].find_one({"_id": parked_id(connection_id, provider_message_id)}))


async def mark_parked_applied(db: Database, parked: ParkedReceipts, *, message_id: str) -> None:
    # Kept, not removed (persistence rule 1): what was parked, and when it found its message.
    async with one_writer(db, PARKED, parked.id):
        changes = {"applied_at": utcnow(), "message_id": message_id, "applied_count": len(parked.receipts)}
        await db[PARKED].update_one({"_id": parked.id}, {"$set": changes})
