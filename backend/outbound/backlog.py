"""What the outbound queue owes, for the metrics (backend/monitoring): a few `_id` reads."""

from dataclasses import dataclass

from pydantic import ValidationError

from backend.core.clock import as_utc, utcnow
from backend.core.db import Database
from backend.messages import public as messages
from backend.outbound import repository


@dataclass(frozen=True)
class Backlog:
    entries: int  # queue entries past the worker's cursor (the cursor trails the work a little)
    oldest_pending_seconds: float  # the oldest entry whose reply is still pending; 0 when none


async def measure(db: Database, *, look: int) -> Backlog:
    """Looks at most `look` entries past the cursor for the oldest pending reply: past that, the
    backlog itself is the alarm."""
    cursor, head = await repository.queue.get_cursor(db), await repository.queue.head(db)
    now = utcnow()
    for seq in range(cursor + 1, min(head, cursor + look) + 1):
        try:
            entry = await repository.get_entry(db, seq)
            message = None if entry is None else await messages.get_internal(db, entry.message_id)
        except ValidationError:  # the worker gives it up; a reply waiting behind it is still pending
            continue
        if entry is None:
            continue
        if message is not None and message.status == "pending":
            age = (now - as_utc(entry.enqueued_at)).total_seconds()
            return Backlog(entries=head - cursor, oldest_pending_seconds=max(0.0, age))
    return Backlog(entries=head - cursor, oldest_pending_seconds=0.0)
