"""The stored shapes of the media records and the fetch queue; what each collection is for and its
`_id`s: backend/media/repository.py. The GridFS bucket keeps the drivers' own layout."""

from datetime import datetime

from pydantic import BaseModel

from backend.core.attempts import Attempt, QueueItem
from backend.core.schemas import StoredModel

# As the message gave it, kept as is (backend/webhooks/sanitize.py keeps a number past int64 as text).
Measure = int | float | str | None


class MediaRecord(StoredModel):  # `media`: mime and name are the first storer's
    reseller_id: str
    sha256: str
    size: int
    mime: str
    name: str = ""
    file_id: str  # the GridFS file holding the bytes
    created_at: datetime
    duration: Measure = None
    width: Measure = None
    height: Measure = None


class FetchBody(BaseModel):  # what `enqueue_fetch` stores; the log adds `_id` and `seq` (core/seqlog)
    message_id: str
    reseller_id: str
    round: int = 0  # the media round it fetches for (the retry action starts a new one)
    connection_id: str
    provider_message_id: str
    remote_jid: str
    from_me: bool = False
    raw_id: str | None = None  # the stored webhook delivery of the message (its inline bytes, its content)
    enqueued_at: datetime


class FetchEntry(QueueItem, FetchBody):  # `media_fetches`
    pass


class FetchAttempt(Attempt):  # `media_fetch_attempts`: what a "stored" verdict adds
    sha256: str | None = None
