"""The stored shapes of the reports' contribution entries (`report_entries`; where they live and
their `_id`s: backend/reports/repository.py). Entries are appended by backend/core/foldlog.py and
read back only to be folded, as trusted documents (`trusted`: a tail is read on every request)."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from backend.core.schemas import StoredModel


class Entry(StoredModel):  # a contribution; `_id` "<bucket>:<seq>" and `seq` are the log's
    seq: int
    bucket: str
    key: str  # the contribution ("ev:<event id>", "msg:<message id>", "fix:<id>"): counted once
    at: datetime


class MonthEntry(Entry):  # of a month bucket
    # Cells' contributions as aggregates.part builds them ({m, d, h, dim, o, ..., fr}): short keys
    # and plain dicts, as they are folded cell by cell into the views' states.
    parts: list[dict[str, Any]] = []


class LiveChange(BaseModel):
    """What one event changes in the live bucket's queue of waiting tickets (one of the three)."""

    wset: dict[str, dict[str, Any]] = {}  # ticket -> {s: waiting since, d: department, c: connection}
    wmove: dict[str, str | None] = {}  # ticket -> the department it waits in now
    wdel: list[str] = []  # tickets no longer waiting


class LiveEntry(Entry, LiveChange):  # of the live bucket
    pass
