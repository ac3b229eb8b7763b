from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, StringConstraints

from backend.core.pagination import Page
from backend.core.schemas import InputModel, ObjectIdStr, ReadModel, Timestamp
from backend.messages.models import Message, MessageMedia, MessageQuote
from backend.tickets.schemas import MessageBody

Caption = Annotated[str, StringConstraints(strip_whitespace=True, max_length=4096)]


class MessageCreate(InputModel):
    body: MessageBody
    quoted_message_id: ObjectIdStr | None = None  # a message of the same ticket the reply quotes


class ReactionCreate(InputModel):
    """An emoji as WhatsApp takes it (a few code points: skin tones, flags, joined families), or
    "" to take the reaction back."""

    emoji: Annotated[str, StringConstraints(strip_whitespace=True, max_length=16, pattern=r"^\S*$")]


class MessageEdit(InputModel):
    """The new text of a message the connection sent (signed again as the reseller's settings say)."""

    body: MessageBody


class MessageUploadFields(InputModel):
    """The fields of a `multipart/form-data` reply besides its `file` (backend/messages/uploads.py)."""

    body: Caption = ""  # the caption
    quoted_message_id: ObjectIdStr | None = None
    as_sticker: bool = False  # a WebP sent as a WhatsApp sticker rather than an image


MEDIA_STATUSES = ("pending", "ready", "failed")


class MediaRead(BaseModel):
    """A message's attachment. `url` (relative, under /api/v1) serves the bytes with the caller's
    bearer token once `status` is "ready"; "pending" while they are fetched, "failed" with `error`."""

    url: str
    mime: str
    size: int | None = None
    name: str
    sha256: str | None = None
    status: Literal["pending", "ready", "failed"]
    duration: float | None = None
    width: int | None = None
    height: int | None = None
    error: str | None = None
    voice: bool = False  # a voice note (WhatsApp's push-to-talk audio), received or sent


class LocationRead(BaseModel):
    latitude: float | None = None
    longitude: float | None = None
    name: str = ""
    address: str = ""


class ContactRead(BaseModel):
    name: str = ""
    phones: list[str] = []


def media_url(message_id: str) -> str:
    return f"/api/v1/messages/{message_id}/media"


def _number(value: Any) -> Any:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def media_read(message_id: str, media: MessageMedia) -> MediaRead:
    """From the stored shape. Messages stored before media were fetched kept the provider's
    fields (`mimetype`, `fileName`, `fileLength`) and no status: their bytes were never fetched."""
    legacy = media.status not in MEDIA_STATUSES
    size = _number(media.size)
    if size is None and legacy:
        try:
            size = int(media.fileLength)
        except (TypeError, ValueError):
            size = None
    return MediaRead(
        url=media_url(message_id),
        mime=(media.mime or media.mimetype or "application/octet-stream").split(";")[0].strip(),
        size=size,
        name=media.name or media.fileName or "",
        sha256=media.sha256,
        status="failed" if legacy else media.status,
        duration=_number(media.duration if "duration" in media.model_fields_set else media.seconds),
        width=_number(media.width),
        height=_number(media.height),
        error="received before media were kept; retry to fetch" if legacy else media.error,
        voice=media.voice,
    )


class MessageRead(ReadModel):
    id: str
    ticket_id: str
    # "note": an internal note, staff only, never sent (backend/messages/notes.py).
    direction: Literal["in", "out", "note"]
    sender_type: Literal["client", "agent", "system", "reseller"]
    sender_id: str | None = None
    sender_name: str = ""
    type: str = "text"
    body: str = ""
    media: MediaRead | None = None
    location: LocationRead | None = None
    contacts: list[ContactRead] | None = None
    quoted: MessageQuote | None = None
    status: str
    created_at: Timestamp
    # When WhatsApp says the client (or the connection's phone) wrote it; `created_at` is when IAZE
    # filed it. Far apart for a message that reached us late: a backlog, a history sync after a
    # pairing, scripts/catch_up_messages.py after an outage. None for what IAZE itself sent.
    written_at: Timestamp | None = None
    # Set when the message raced a finalize and was moved on from that ticket (messages.service).
    moved_from_ticket_id: str | None = None
    # Sent by the helpdesk itself (backend/automation), labelled "automática" in the thread;
    # `automatic_purpose`: greeting, away, menu, closing or survey.
    automatic: bool = False
    automatic_purpose: str | None = None
    # Why a message to the client was not sent ("failed"), e.g. the number is not on WhatsApp.
    failure_reason: str | None = None
    # Types "edit" (`body`: the new text), "revoke" (deleted for everyone) and "reaction" (`body`:
    # the emoji, "" when taken back) record what was done to the earlier message `annotates`,
    # which keeps what it said (`quoted` shows it); nothing is ever removed.
    annotates: str | None = None
    # Sent at its time by the server for the scheduled message named (backend/scheduled).
    scheduled_id: str | None = None

    @classmethod
    def of_message(cls, message: Message) -> Self:
        media = media_read(message.id, message.media) if message.media is not None else None
        fields = {**dict(message), "media": media, "written_at": message.provider_sent_at}
        return cls.model_validate(fields, from_attributes=True)


MessagePage = Page[MessageRead]
