"""The stored shapes of the inbound webhooks: what each collection is for and its `_id`s:
backend/webhooks/repository.py. A field an older document lacks reads as its default."""

from datetime import datetime
from typing import Literal

from backend.core.schemas import StoredModel
from backend.webhooks.schemas import Outcome


class RawEvent(StoredModel):  # `webhook_events_raw`; `_id` and `seq` are its lane's (core/seqlog)
    seq: int = 0
    lane: int = 0
    chat: str = ""
    connection_id: str
    reseller_id: str
    provider: str = ""
    event_hint: str | None = None
    event: str | None = None
    body: str  # the delivery as received (decoded text); "" when it is kept in parts (`body_id`)
    # A delivery too large for one document: its bytes in `webhook_bodies` "<body_id>:<i>",
    # i < body_parts (repository.store_body). Older versions kept a prefix and set `truncated`.
    body_id: str | None = None
    body_parts: int = 0
    truncated: bool = False
    received_at: datetime
    # This process's processor, handed the delivery by its acknowledgement: it holds attempt 1
    # without a claim of its own (backend/webhooks/processor.py `_claim`). None: claimed as usual.
    handed_to: str | None = None
    # The processor of the process that acknowledged it, if that process runs one: a walk of
    # another process that meets it knows the lanes are shared (processor `_claim`).
    acked_by: str | None = None
    # The outcome: the only fields that change (repository.mark).
    status: Outcome
    attempts: int = 0
    error: str | None = None
    result: list[str] | None = None
    processed_at: datetime | None = None
    failed_at: datetime | None = None
    retry_at: datetime | None = None


class Waiting(StoredModel):  # `webhook_waiting`: "<raw id>:<what it waits for>"
    """A delivery to be run again, out of its lane, by the processors' sweep (webhooks.service
    `run_waiting`): an edit processed before the message it edits ("edit": once that message is
    stored), or one that failed on errors that may pass ("retry": at `not_before`, backing off).
    Or ("catch_up", `raw_id` empty) the messages a connection's provider kept since `since` and
    may never have posted here (its webhook drifted: backend/webhooks/watch.py), owed until they
    are caught up (webhooks.service `catch_up`)."""

    raw_id: str
    connection_id: str
    reason: Literal["edit", "retry", "catch_up"]
    provider_message_id: str = ""  # the edited message's ("edit")
    since: datetime | None = None  # "catch_up": from when the provider's store is asked
    parked_at: datetime
    # When a sweep first read it waiting: the window it is looked after for starts here, not at
    # `parked_at`, so processors down for days do not use that window up before it is ever run.
    seen_at: datetime | None = None
    not_before: datetime | None = None
    tries: int = 0  # runs by the sweep that did not end it
    applied_at: datetime | None = None  # run to its end (or ended for good): no longer waiting
    error: str | None = None  # ended for good without running to its end: why (webhooks.service `_give_up`)


class Attempt(StoredModel):  # `webhook_attempts`: "<raw id>:<k>", a processor's claim on attempt k
    raw_id: str
    attempt: int
    worker: str
    claimed_at: datetime
    lease_until: datetime
