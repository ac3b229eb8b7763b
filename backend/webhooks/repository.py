"""`webhook_events_raw`: every authenticated delivery, exactly as it arrived, with its outcome.
Appended before processing and never removed; only the outcome fields change.

Deliveries are entries of ordered lanes (backend/core/seqlog.py): entry n of lane L is `_id`
"w:<L>:<n>", so the processor finds pending work by `_id` reads alone (the one query FerretDB
pushes down), however much history is stored. `webhook_attempts` "<raw id>:<k>" is the claim
(unique `_id` insert) that lets exactly one processor, of any process, make attempt k.
`webhook_waiting` "<raw id>:<reason>": deliveries to be run again out of their lane: an edit that
came before the message it edits, or one that failed on errors that may pass (`wait`);
`webhook_state` "given_up:<waiting id>": the claim (unique `_id` insert) that lets one sweep, of
any process, report an entry it ends as failed for good (`claim_give_up`).
`webhook_bodies` "<body id>:<i>": the parts of a delivery too large for one document (a big
history sync), kept whole (`store_body`). `webhook_state` "watched:<connection id>": when the
connection watch last found the connection's webhook right (backend/webhooks/watch.py).
"""

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError

from backend.core import group_commit, metrics
from backend.core.clock import as_utc, utcnow
from backend.core.conditional import update_if
from backend.core.db import Database
from backend.core.ids import new_id
from backend.core.indexes import ASC, declare
from backend.core.logging import get_logger
from backend.core.runtime import runtime_of
from backend.core.schemas import readable
from backend.core.seqlog import SeqLog
from backend.webhooks.models import Attempt, RawEvent, Waiting

COLLECTION = "webhook_events_raw"
STATE = "webhook_state"
ATTEMPTS = "webhook_attempts"
WAITING = "webhook_waiting"
BODIES = "webhook_bodies"
# A part of a large delivery: one document well under MongoDB's 16 MB limit.
BODY_PART_BYTES = 8 * 1024 * 1024
# Unreadable waiting entries this process remembers having reported (`_first_sighting`): one
# forgotten past it is reported again, once.
UNREADABLE_KEPT = 1024

declare(
    COLLECTION,
    [("status", ASC), ("_id", ASC)],
    name="status_id",
    purpose="failed events for scripts/reprocess_webhooks.py",
)
declare(
    WAITING,
    [("applied_at", ASC), ("parked_at", ASC)],
    name="waiting",
    purpose="deliveries waiting to be run again (the processors' sweep)",
)


log = get_logger("webhooks")

# Every lane's block openings, in the order their markers were won (core/seqlog `announce`):
# how a processor learns that another process opened a block in a lane it is idle in.
opened = SeqLog(STATE, "opened:", state_collection=STATE, cursor_id="cursor:opened")


def lane(n: int) -> SeqLog:
    return SeqLog(COLLECTION, f"w:{n}:", state_collection=STATE, cursor_id=f"cursor:{n}", announce=opened)


def lane_of_prefix(prefix: str) -> int | None:
    """The lane whose entries are "<prefix><n>" (`lane`), or None for another log's."""
    head, sep, rest = prefix.partition(":")
    number = rest.rstrip(":")
    return int(number) if head == "w" and sep and number.isdigit() else None


def attempt_id(raw_id: str, attempt: int) -> str:
    return f"{raw_id}:{attempt}"


async def get(db: Database, raw_id: str) -> RawEvent | None:
    return RawEvent.load(await db[COLLECTION].find_one({"_id": raw_id}))


async def store_body(db: Database, body: bytes) -> tuple[str, int]:
    """Keeps a delivery too large for one document in parts, before the delivery itself is
    stored (its acknowledgement waits for both): (body id, number of parts). A crash between
    leaves parts nobody names, never a delivery without its parts."""
    body_id = new_id()
    parts = [body[i : i + BODY_PART_BYTES] for i in range(0, len(body), BODY_PART_BYTES)] or [b""]
    await db[BODIES].insert_many([{"_id": f"{body_id}:{i}", "data": part} for i, part in enumerate(parts)])
    return body_id, len(parts)


async def body_of(db: Database, raw: RawEvent) -> str:
    """The delivery as received: its `body`, or its parts put back together (`store_body`)."""
    if raw.body_id is None:
        return raw.body
    ids = [f"{raw.body_id}:{i}" for i in range(raw.body_parts)]
    found = await asyncio.gather(*(db[BODIES].find_one({"_id": part_id}) for part_id in ids))
    if any(doc is None for doc in found):
        raise LookupError(f"delivery {raw.id}: a part of its body is missing")
    return b"".join(bytes(doc["data"]) for doc in found if doc is not None).decode("utf-8", errors="replace")


# What a walk needs of an entry it does not process (its outcome, or its place in the lane): the
# payload (up to 15 MB of base64 media) is left out.
POSITION = {"seq": 1, "status": 1, "received_at": 1, "at": 1, "hole": 1, "rest": 1}


async def status_of(db: Database, raw_id: str) -> str | None:
    """A delivery's outcome status (None: no such delivery), without its payload."""
    doc = await db[COLLECTION].find_one({"_id": raw_id}, projection=POSITION)
    return None if doc is None else str(doc.get("status"))


async def mark(db: Database, raw_id: str, changes: dict[str, Any], *, inc_attempts: bool = True) -> None:
    """The outcome of a delivery. Concurrent outcomes (lanes processed side by side) share one
    command (group commit): each is still its own `{_id}` statement, acknowledged before this
    returns, so a walk moves past an entry only once its outcome is stored, as before."""
    update: dict[str, Any] = {"$set": changes}
    if inc_attempts:
        update["$inc"] = {"attempts": 1}
    await group_commit.update_by_id(db[COLLECTION], raw_id, update)


async def claim_attempt(db: Database, claim: Attempt) -> bool:
    try:
        await group_commit.insert_one(db[ATTEMPTS], claim.stored())
    except DuplicateKeyError:
        return False
    return True


async def release_handed(db: Database, raw_ids: list[str]) -> None:
    """The deliveries' first attempts are no longer held by the processor the acknowledgement
    named (it stopped before starting them): claimed as usual from now on (processor `_claim`),
    as attempt 1, which nobody started. Concurrent releases share one command (group commit)."""
    released = {"$set": {"handed_to": None}}
    await asyncio.gather(*(group_commit.update_by_id(db[COLLECTION], raw_id, released) for raw_id in raw_ids))


async def get_attempt(db: Database, raw_id: str, attempt: int) -> Attempt | None:
    return Attempt.load(await db[ATTEMPTS].find_one({"_id": attempt_id(raw_id, attempt)}))


@dataclass(frozen=True)
class StatusPage:
    """One page of `list_by_status`: the deliveries that read, the `_id`s of those that do not,
    and where the next page starts (the last document's `_id`, read or not; None: no document)."""

    events: list[RawEvent]
    unreadable: list[str]
    last_id: Any


async def list_by_status(
    db: Database, status: str, *, connection_id: str | None, after_id: Any, limit: int
) -> StatusPage:
    """Operator tooling only (a scan on FerretDB; indexed on MongoDB). A document that does not
    read as a delivery (an older version's shape, an odd one) is passed over and logged with its
    `_id`, not raised: one bad document must not keep an operator from every other failed
    delivery. It stays as it is, for an operator to mend; the page still moves past it."""
    query: dict[str, Any] = {"status": status}
    if connection_id:
        query["connection_id"] = connection_id
    if after_id is not None:
        query["_id"] = {"$gt": after_id}
    docs = await db[COLLECTION].find(query).sort("_id", ASC).limit(limit).to_list(length=limit)
    unreadable: list[str] = []
    events = readable(RawEvent, docs, what="webhook raw event", id_as="raw_id", unreadable=unreadable)
    return StatusPage(events=events, unreadable=unreadable, last_id=docs[-1]["_id"] if docs else None)


async def watched_right_at(db: Database, connection_id: str) -> datetime | None:
    doc = await db[STATE].find_one({"_id": f"watched:{connection_id}"})
    return as_utc(doc["right_at"]) if doc is not None and doc.get("right_at") is not None else None


async def record_watched_right(db: Database, connection_id: str, at: datetime) -> None:
    """Only ever raised (`$max`): a write lost between processes on FerretDB leaves an earlier
    time, which only widens the next catch-up."""
    try:
        await db[STATE].update_one({"_id": f"watched:{connection_id}"}, {"$max": {"right_at": at}}, upsert=True)
    except DuplicateKeyError:  # two first upserts racing: the other one created it
        await db[STATE].update_one({"_id": f"watched:{connection_id}"}, {"$max": {"right_at": at}})


async def wait(db: Database, waiting: Waiting) -> bool:
    """Idempotent: a delivery run again (a retry, the sweep) waits once for the same thing.
    Whether it waits from now on: False when the entry was there already (`waiting_ended` tells
    whether it still waits)."""
    try:
        await db[WAITING].insert_one(waiting.stored())
    except DuplicateKeyError:
        return False
    return True


async def waiting_ended(db: Database, waiting_id: str) -> bool:
    """Whether the entry is there and no longer waits (run to its end, or given up)."""
    doc = await db[WAITING].find_one({"_id": waiting_id}, projection={"applied_at": 1})
    return doc is not None and doc.get("applied_at") is not None


async def runnable_waiting_internal(db: Database, *, now: datetime, page: int) -> AsyncGenerator[Waiting, None]:
    """Deliveries still waiting whose time has come at `now`, oldest parked first: every tenant's,
    for the processors' sweep. One with a `not_before` (a redrive, an owed catch-up, anything
    postponed) once it is passed, however long ago it was parked, and every one without (an edit
    whose message has not come), however long ago it was parked: the sweep ends each itself, run
    or given up for good (webhooks.service `run_waiting`: an edit whose message has not come in
    the two days it is looked after is given up), and one left to age out unread would be a
    client's message (or edit) nobody processed and nothing reported, counted waiting forever.
    Read `page` at a time, each page after the last document read (`parked_at`, `_id`): what the
    sweep walks past must not hide what was parked after it, and what it ran meanwhile (ended, or
    postponed) is not read again. A scan on FerretDB of a collection that holds only the
    deliveries that ever had to wait (a handful a day); indexed on MongoDB.
    A document that does not read as a Waiting is passed over: one bad document must not stop
    every tenant's waiting deliveries (it stays, for an operator). It is logged and counted the
    first time this process meets it (`_first_sighting`), not at every pass."""
    due: dict[str, Any] = {"applied_at": None, "$or": [{"not_before": None}, {"not_before": {"$lte": now}}]}
    query = due
    while True:
        cursor = db[WAITING].find(query).sort([("parked_at", ASC), ("_id", ASC)]).limit(page)
        docs = await cursor.to_list(length=page)
        for doc in docs:
            try:
                waiting = Waiting.model_validate(doc)
            except ValidationError as exc:
                if _first_sighting(db, doc.get("_id")):
                    log.error(
                        "webhook waiting entry unreadable; passed over", waiting_id=doc.get("_id"), error=str(exc)
                    )
                    metrics.WEBHOOK_FAILED.labels(kind="waiting_unreadable").inc()
                continue
            yield waiting
        if len(docs) < page:
            return
        at, last_id = docs[-1].get("parked_at"), docs[-1]["_id"]
        # A `parked_at` that is no time (missing, damaged) sorts before every time and compares
        # with none: past it come the others like it, then every entry parked at a time.
        later: dict[str, Any] = {"$type": "date"} if not isinstance(at, datetime) else {"$gt": at}
        query = {"$and": [due, {"$or": [{"parked_at": later}, {"parked_at": at, "_id": {"$gt": last_id}}]}]}


def _first_sighting(db: Database, waiting_id: Any) -> bool:
    """Whether this process meets the unreadable entry for the first time. Remembered in memory,
    not marked in the store: a write to a document that does not read could, as FerretDB writes
    whole documents, undo an operator's mend made meanwhile; and once per process is what a
    per-process counter summed across processes can say (a restart reports it again, once)."""
    seen, key = runtime_of(db).waiting_unreadable, (db.name, str(waiting_id))
    if key in seen:
        seen.move_to_end(key)
        return False
    seen[key] = None
    while len(seen) > UNREADABLE_KEPT:
        seen.popitem(last=False)
    return True


async def count_waiting_internal(db: Database, reason: str) -> int:
    """For the metrics (a scan on FerretDB of that small collection)."""
    return int(await db[WAITING].count_documents({"applied_at": None, "reason": reason}))


async def seen_waiting(db: Database, waiting_id: str, *, at: datetime) -> None:
    """Its first sighting by a sweep (`Waiting.seen_at`), kept by the first writer. Two sweeps
    racing, or a whole-document write on FerretDB putting it back, only move it a sweep later."""
    await update_if(db, WAITING, waiting_id, {"seen_at": None}, {"$set": {"seen_at": at}})  # `_id` reads on FerretDB


async def done_waiting(db: Database, waiting_id: str) -> None:
    """Kept, not removed (persistence rule 1): what waited, and when it ended."""
    await db[WAITING].update_one({"_id": waiting_id}, {"$set": {"applied_at": utcnow()}})


async def postpone(db: Database, waiting: Waiting, *, not_before: datetime) -> None:
    await db[WAITING].update_one({"_id": waiting.id}, {"$set": {"not_before": not_before, "tries": waiting.tries + 1}})


async def claim_give_up(db: Database, waiting_id: str) -> bool:
    """Whether this caller is the first to end the entry as failed for good, of any process: it
    alone reports it. The entry's own write cannot tell (two sweeps that read it before either
    wrote, or a postpone whose whole-document write on FerretDB puts back `applied_at`: the entry
    is then given up again, and not reported twice)."""
    try:
        await db[STATE].insert_one({"_id": f"given_up:{waiting_id}", "at": utcnow()})
    except DuplicateKeyError:
        return False
    return True


async def give_up_waiting(db: Database, waiting_id: str, *, error: str) -> None:
    """Ended for good without running to its end: kept (persistence rule 1), with why."""
    await db[WAITING].update_one({"_id": waiting_id}, {"$set": {"applied_at": utcnow(), "error": error}})
