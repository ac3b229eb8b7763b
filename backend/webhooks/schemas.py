from typing import Literal

from pydantic import BaseModel

Outcome = Literal["received", "processed", "ignored", "failed"]


class WebhookAck(BaseModel):
    """What the provider is told: the delivery is stored durably (so it may stop retrying).
    `status` is "received": processing happens after the answer, in order per chat."""

    status: Outcome
    raw_id: str
