"""The adapter interface every WhatsApp provider implements, and the normalized events its
webhook parser produces. Services only ever see these types, never a provider's payloads."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

ConnectionStatus = Literal["connecting", "open", "close"]
DeliveryStatus = Literal["pending", "sent", "delivered", "read", "failed"]


class ProviderError(Exception):
    """A provider call that did not succeed. `retryable`: the same call may succeed later
    (network, timeout, 5xx, 429); otherwise retrying cannot help (4xx, bad number)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


# The failure reason of a send to a number that has no WhatsApp account (shown on the message).
NOT_ON_WHATSAPP = "number is not on WhatsApp"


class WebhookParseError(ValueError):
    """The payload is not something this provider sends (kept raw, reported, answered 2xx)."""


@dataclass(frozen=True)
class InstanceCreated:
    status: ConnectionStatus
    qr_code: str | None
    instance_id: str | None = None
    instance_token: str | None = None


@dataclass(frozen=True)
class QrCode:
    status: ConnectionStatus
    qr_code: str | None


@dataclass(frozen=True)
class SentMessage:
    provider_message_id: str


@dataclass(frozen=True)
class InboundMessage:
    provider_message_id: str
    phone: str
    from_me: bool
    push_name: str
    type: str
    body: str
    media: dict[str, Any] | None = None
    sent_at: datetime | None = None
    cut: tuple[str, ...] = ()  # fields backend/webhooks/sanitize.py cut to the API's limits


@dataclass(frozen=True)
class StatusUpdate:
    provider_message_id: str
    status: DeliveryStatus
    reason: str = ""


@dataclass(frozen=True)
class ConnectionChange:
    status: ConnectionStatus
    reason: str = ""


@dataclass(frozen=True)
class QrChange:
    qr_code: str | None


@dataclass(frozen=True)
class Ignored:
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


InboundEvent = InboundMessage | StatusUpdate | ConnectionChange | QrChange | Ignored


class WhatsAppProvider(Protocol):
    name: str

    async def create_instance(
        self, *, instance_name: str, webhook_url: str, webhook_headers: dict[str, str]
    ) -> InstanceCreated: ...

    async def fetch_qr_code(self, *, instance_name: str) -> QrCode: ...

    async def connection_state(self, *, instance_name: str) -> ConnectionStatus: ...

    async def send_text(self, *, instance_name: str, to: str, text: str, idempotency_key: str) -> SentMessage:
        """`idempotency_key` is our message id; adapters pass it on where the provider honours one."""
        ...

    def parse_webhook(self, payload: Any, *, event_hint: str | None) -> list[InboundEvent]: ...
