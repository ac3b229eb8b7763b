"""The adapter interface every WhatsApp provider implements, and the normalized events its
webhook parser produces. Services only ever see these types, never a provider's payloads."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from backend.clients.phones import whatsapp_address

ConnectionStatus = Literal["connecting", "open", "close"]
DeliveryStatus = Literal["pending", "sent", "delivered", "read", "failed"]


class ProviderError(Exception):
    """A provider call that did not succeed. `retryable`: the same call may succeed later
    (network, timeout, 5xx, 429); otherwise retrying cannot help (4xx, bad number).
    `instance_missing`: the provider says the instance itself does not exist (its store lost or
    reset, or the instance deleted there): only pairing a new one brings the phone back."""

    def __init__(self, message: str, *, retryable: bool, instance_missing: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.instance_missing = instance_missing


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
class WebhookSetting:
    """An instance's webhook as the provider holds it now (`webhook_of`)."""

    url: str
    headers: dict[str, str]
    enabled: bool
    events: tuple[str, ...]
    by_events: bool = False  # posts to "<url>/<event>" instead of the url itself
    base64: bool = False  # media bytes inline in the posts


@dataclass(frozen=True)
class SentMessage:
    provider_message_id: str


@dataclass(frozen=True)
class Quote:
    """A message being quoted. Outbound: the provider's id of the quoted message and its text.
    Inbound: what the client's message quotes, as the provider reported it."""

    provider_message_id: str
    body: str = ""
    type: str = "text"
    from_me: bool = False
    # Outbound, a media message's: what a quote of it shows on the client's phone.
    mime: str = ""
    name: str = ""
    voice: bool = False


@dataclass(frozen=True)
class OutboundMedia:
    """A file to send. `kind`: image, video, audio, document, voice (a voice note) or sticker."""

    kind: str
    mime: str
    name: str
    data: bytes


# Message types of a client's call to the number (a provider's call event, offer step).
CALL, VIDEO_CALL = "call", "video_call"
# A deletion's `MessageChange.change_id`: a message is deleted for everyone once, whoever reports it.
REVOKE_CHANGE = "revoke"


def change_key(kind: str, provider_message_id: str, change_id: str) -> str:
    """One change of one message, as the provider's reports name it: what its record's id is made
    of (messages.change_id_for), and the provider id an agent's edit is bound to once sent, so
    the provider's report of that very edit is known as its echo (`WhatsAppProvider.edit_text`)."""
    return f"{kind}:{provider_message_id}:{change_id}"


@dataclass(frozen=True)
class InboundMessage:
    provider_message_id: str
    phone: str  # the client's number (digits); "" in a LID chat that came without it
    from_me: bool
    push_name: str
    type: str
    body: str
    media: dict[str, Any] | None = None
    sent_at: datetime | None = None
    quoted: Quote | None = None
    # A shared location {latitude, longitude, name, address}; contact cards [{name, phones}].
    location: dict[str, Any] | None = None
    contacts: list[dict[str, Any]] | None = None
    # The media's bytes when the provider sent them inline (Evolution's webhook base64). Never
    # stored on the message: the raw event keeps them, the media fetch reads them from there.
    inline_base64: str | None = None
    cut: tuple[str, ...] = ()  # fields backend/webhooks/sanitize.py cut to the API's limits
    lid: str = ""  # the chat's LID (WhatsApp's privacy id, digits) when the delivery names it
    # Delivered by a history sync (the messages WhatsApp hands a phone paired again, among them
    # those received while it was logged out), not as it arrived.
    synced: bool = False
    # In a sync IAZE itself asked for (webhooks.service.catch_up): a live message whose post was
    # lost, not the past a pairing hands over (the automatic messages answer it as any).
    recovered: bool = False

    @property
    def from_history(self) -> bool:
        """The past a pairing's sync hands over: filed, but answered by nothing automatic."""
        return self.synced and not self.recovered

    @property
    def address(self) -> str:
        """Where the chat is reached and what names it (backend/clients/phones.py)."""
        return whatsapp_address(self.phone, self.lid)


@dataclass(frozen=True)
class FetchedMedia:
    data: bytes
    mime: str
    name: str


@dataclass(frozen=True)
class StatusUpdate:
    provider_message_id: str
    status: DeliveryStatus
    reason: str = ""


@dataclass(frozen=True)
class ConnectionChange:
    status: ConnectionStatus
    reason: str = ""
    at: datetime | None = None  # when the provider posted it, by its clock (the envelope's date_time)


@dataclass(frozen=True)
class QrChange:
    qr_code: str | None
    at: datetime | None = None  # as ConnectionChange.at


@dataclass(frozen=True)
class MessageChange:
    """What a person did to an earlier message of the chat: edited its text ("edit", `body` the new
    text), deleted it for everyone ("revoke"), or reacted to it ("reaction", `body` the emoji, ""
    when the reaction was taken back). `provider_message_id`: the message changed; `change_id`:
    this change, unique per change of that message (a redelivery of it is the same change);
    `from_me`: made on the connection's own phone (known for reactions; the sender of an edit or
    a revoke is the changed message's)."""

    kind: Literal["edit", "revoke", "reaction"]
    provider_message_id: str
    change_id: str
    body: str = ""
    from_me: bool = False
    at: datetime | None = None
    # A reaction's chat, as its upsert names it (`InboundMessage.phone` / `lid`): its echo is told
    # from one made on the phone by the chat and the emoji, like a reply's (outbound.from_me_verdict).
    phone: str = ""
    lid: str = ""


@dataclass(frozen=True)
class Ignored:
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


InboundEvent = InboundMessage | MessageChange | StatusUpdate | ConnectionChange | QrChange | Ignored


class WhatsAppProvider(Protocol):
    name: str
    webhook_events: list[str]  # what an instance's webhook asks for (`create_instance`, `update_webhook`)

    async def create_instance(
        self, *, instance_name: str, webhook_url: str, webhook_headers: dict[str, str]
    ) -> InstanceCreated: ...

    async def update_webhook(
        self, *, instance_name: str, webhook_url: str, webhook_headers: dict[str, str]
    ) -> list[str]:
        """Sets the instance's webhook as `create_instance` would now; answers the events it asks for."""
        ...

    async def webhook_of(self, *, instance_name: str) -> WebhookSetting | None:
        """The instance's webhook as the provider holds it, or None when it has none."""
        ...

    async def mark_read(self, *, instance_name: str, to: str, provider_message_ids: list[str]) -> None:
        """Tells the client's phone that these messages of its chat with `to` were read."""
        ...

    async def fetch_qr_code(self, *, instance_name: str) -> QrCode: ...

    async def connection_state(self, *, instance_name: str) -> ConnectionStatus: ...

    async def send_text(
        self, *, instance_name: str, to: str, text: str, idempotency_key: str, quoted: Quote | None = None
    ) -> SentMessage:
        """`idempotency_key` is our message id; adapters pass it on where the provider honours one."""
        ...

    async def send_media(
        self,
        *,
        instance_name: str,
        to: str,
        media: OutboundMedia,
        caption: str,
        idempotency_key: str,
        quoted: Quote | None = None,
    ) -> SentMessage:
        """A file with its caption; a voice note (`media.kind == "voice"`) as one, without caption."""
        ...

    async def send_reaction(
        self, *, instance_name: str, to: str, provider_message_id: str, from_me: bool, emoji: str
    ) -> SentMessage:
        """Reacts with `emoji` ("" takes the reaction back) to the message `provider_message_id` of
        the chat `to` (`from_me`: a message the connection sent)."""
        ...

    async def delete_for_everyone(
        self, *, instance_name: str, to: str, provider_message_id: str, from_me: bool
    ) -> SentMessage:
        """Deletes for everyone the message `provider_message_id` the connection sent in the chat `to`."""
        ...

    async def find_messages(
        self, *, instance_name: str, since: datetime, until: datetime, page: int, page_size: int
    ) -> tuple[list[dict[str, Any]], int]:
        """One page (from 1) of the messages the provider itself stored for the instance, stamped
        between `since` and `until`, as its webhook posts them: (records, number of pages)."""
        ...

    async def edit_text(self, *, instance_name: str, to: str, provider_message_id: str, text: str) -> SentMessage:
        """Replaces the text of the message `provider_message_id` the connection sent in the chat
        `to`. Answers the edit's id as the provider's report of it names it (`change_key`)."""
        ...

    async def fetch_media(
        self,
        *,
        instance_name: str,
        provider_message_id: str,
        remote_jid: str,
        from_me: bool,
        content: dict[str, Any] | None = None,
    ) -> FetchedMedia:
        """The bytes of a received media message (ProviderError when the provider cannot give them).
        `content`: the message's content as the provider's webhook delivered it (the registry's
        `media_contents`), when that delivery is at hand; else the provider finds it by its id."""
        ...
