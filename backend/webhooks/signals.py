"""Process-local wake-up of the webhook processors when this process stores a delivery: wakes
the lane it went to, so that lane's walk runs at once, and hands over the stored document, so
the processor need not read back what was just written (a document too large to hold is only
announced: the walk reads it back, once, and stops there rather than reading past it).
Only a latency hint: processors also poll every lane, which is what finds other processes'
deliveries (and anything a lost wake-up or a skipped hand-over would have missed).

A delivery handed over is claimed by it (`claimant`): the acknowledgement stores the name of the
processor it goes to (`handed_to`), whose first attempt then needs no claim of its own
(backend/webhooks/processor.py, `_claim`)."""

import asyncio
import math
import time
from typing import Any

from backend.connections.models import Connection
from backend.core.db import Database
from backend.core.runtime import runtime_of
from backend.core.tuning import HANDED_MAX as MAX_HANDED
from backend.core.tuning import HANDED_MAX_BYTES as MAX_HANDED_BYTES

# Key of a handed document carrying the connection the webhook authenticated it with (never
# stored): the processor uses that read instead of reading the connection again.
CONNECTION = "_handed_connection"


class Wakeup:
    def __init__(self, worker: str) -> None:
        self.worker = worker  # the subscribed processor's name, stored as `handed_to`
        self.claims_from = -math.inf  # monotonic time before which deliveries are handed unclaimed
        self.events: dict[int, asyncio.Event] = {}  # one per lane: its walk waits on it
        # lane -> seq -> the stored raw document, exactly as inserted
        self.handed: dict[int, dict[int, dict[str, Any]]] = {}
        # lane -> the highest seq this process stored there whose document was too large to hand
        # over: the woken walk reads it back, and its job still ends there (no read past it).
        self.announced: dict[int, int] = {}
        self.held = 0

    def event(self, lane: int) -> asyncio.Event:
        found = self.events.get(lane)
        if found is None:
            found = self.events[lane] = asyncio.Event()
        return found

    def pop(self, lane: int, seq: int) -> dict[str, Any] | None:
        doc = self.handed.get(lane, {}).pop(seq, None)
        if doc is not None:
            self.held -= 1
        return doc

    def highest(self, lane: int) -> int:
        docs = self.handed.get(lane)
        return max(max(docs) if docs else 0, self.announced.get(lane, 0))

    def forget_up_to(self, lane: int, seq: int) -> None:
        """Drops what a walk already got from the database instead."""
        if self.announced.get(lane, 0) <= seq:
            self.announced.pop(lane, None)
        docs = self.handed.get(lane)
        if docs:
            for old in [s for s in docs if s <= seq]:
                del docs[old]
                self.held -= 1


def subscribe(db: Database, *, worker: str) -> Wakeup:
    wakeup = Wakeup(worker)
    runtime_of(db).webhook_wakeups.add(wakeup)
    return wakeup


def unsubscribe(db: Database, wakeup: Wakeup) -> None:
    runtime_of(db).webhook_wakeups.discard(wakeup)


def _handed(body: Any) -> bool:
    return len(str(body or "")) <= MAX_HANDED_BYTES


def processor_of(db: Database) -> str | None:
    """The name of a processor this process runs (None: it runs none), stored with each delivery
    it acknowledges (`acked_by`): how another process's walk learns that they share lanes."""
    return next((w.worker for w in runtime_of(db).webhook_wakeups), None)


def claimant(db: Database, body: str) -> str | None:
    """The processor of this process that a delivery with `body` will be handed to (None: no
    processor runs here, or the delivery is too large, or too much is held, or the processor
    shares its lanes with another process's: `claims_from`): named in the stored delivery before
    its insert, as the holder of its first attempt."""
    if not _handed(body):
        return None
    now = time.monotonic()
    wakeups = runtime_of(db).webhook_wakeups
    return next((w.worker for w in wakeups if w.held < MAX_HANDED and now >= w.claims_from), None)


def wake(db: Database, lane: int, seq: int, doc: dict[str, Any], *, connection: Connection) -> bool:
    """`connection`: the connection document the delivery was authenticated with, handed along.
    The processor the delivery names (`handed_to`) is always handed it: it holds its first
    attempt. False when that processor stopped meanwhile (the caller releases the attempt)."""
    doc = {**doc, CONNECTION: connection}
    small = _handed(doc.get("body"))
    claimed_by = doc.get("handed_to")
    got = claimed_by is None
    for wakeup in runtime_of(db).webhook_wakeups:
        if wakeup.worker == claimed_by or (small and wakeup.held < MAX_HANDED):
            wakeup.handed.setdefault(lane, {})[seq] = doc
            wakeup.held += 1
            got = got or wakeup.worker == claimed_by
        else:
            wakeup.announced[lane] = max(seq, wakeup.announced.get(lane, 0))
        wakeup.event(lane).set()
    return got
