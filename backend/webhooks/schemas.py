from typing import Literal

from pydantic import BaseModel

Outcome = Literal["processed", "ignored", "failed"]


class WebhookAck(BaseModel):
    """What the provider is told: the delivery is stored (so it may stop retrying)."""

    status: Outcome
    raw_id: str
