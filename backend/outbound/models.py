"""The stored shapes of the outbound queue; what each collection is for and its `_id`s:
backend/outbound/repository.py. A field an older document lacks reads as its default."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from backend.core.attempts import Attempt, QueueItem
from backend.core.schemas import StoredModel

Resolution = Literal["echo", "released"]


class QueueBody(BaseModel):  # what `enqueue` stores; the log adds `_id` and `seq` (core/seqlog)
    message_id: str
    ticket_id: str
    reseller_id: str
    connection_id: str | None
    chat: str | None = None  # absent on entries queued before chats: a chat of their own
    chat_seq: int = 0
    enqueued_at: datetime


class QueueEntry(QueueItem, QueueBody):  # `outbox`
    pass


class PassedBody(BaseModel):  # what `pass_unstored` logs; the log adds `_id` and `seq`
    message_id: str
    ticket_id: str
    passed_at: datetime


class PassedEntry(QueueItem, PassedBody):  # `outbox_passed`
    pass


class SendAttempt(Attempt):  # `outbox_attempts`: what a "sent" verdict adds
    provider_message_id: str | None = None
    answered_by: str | None = None  # "echo": recorded from the held echo after its worker died


class ChatEntry(StoredModel):  # `outbox_chats`
    chat: str
    k: int
    message_id: str
    enqueued_at: datetime
    # A message queued again after its first entry was passed (`queue_again_if_passed`): set once
    # the place's queue entry is stored.
    again: bool = False


class Sending(StoredModel):  # `outbox_sending`
    message_id: str
    attempt_id: str | None = None
    at: datetime


class HeldEcho(StoredModel):  # `outbox_echoes`
    attempt_id: str
    message_id: str
    connection_id: str
    provider_message_id: str
    raw_id: str
    # The upsert's message type: text, image, audio, ... (or reaction, edit); None: a stored type
    # that does not read (outbound/repository.py, `held_echoes`): it matches no reply's type.
    type: str | None = "text"
    # What the upsert is stored as if it turns out not to be the echo (older holds: None, the
    # id derived from `provider_message_id`, right for messages but not for reactions and edits).
    own_message_id: str | None = None
    held_at: datetime
    resolution: Resolution | None = None
    resolved_at: datetime | None = None


class Receipt(BaseModel):
    status: str
    reason: str = ""
    at: datetime


class ParkedReceipts(StoredModel):  # `receipts_parked`
    connection_id: str
    provider_message_id: str
    receipts: list[Receipt] = []  # in arrival order
    applied_at: datetime | None = None
    message_id: str | None = None  # the message they were applied to
    applied_count: int | None = None  # how many of `receipts` that was (None, with applied_at: all)

    def unapplied(self) -> bool:
        """Whether a receipt here may not have been applied: none marked applied, or one parked
        after the marker's writer read them (it sets applied_at over the new one's reset)."""
        return self.applied_at is None or (self.applied_count is not None and self.applied_count < len(self.receipts))
