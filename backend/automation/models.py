"""The stored shape of automation's own documents (collection `automation_surveys`)."""

from datetime import datetime

from backend.core.schemas import StoredModel


class Survey(StoredModel):
    """The satisfaction survey last asked in a WhatsApp chat (`_id`: outbound.chat_key)."""

    ticket_id: str  # the finalized ticket it asks about
    reseller_id: str
    asked_at: datetime
    expires_at: datetime  # until when a lone digit answers it
    answered_by: str | None = None  # the client message that rated it
    answered_at: datetime | None = None
    closed_at: datetime | None = None  # a new conversation ended it unanswered

    @property
    def pending(self) -> bool:
        return self.answered_by is None and self.closed_at is None
