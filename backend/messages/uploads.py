"""Files agents attach to a reply: WhatsApp's size limits, what kind each file is sent as, and
reading a `multipart/form-data` upload without ever holding more than a limit allows.

The one home of the per-type limits (WhatsApp Business API's documented media limits; Evolution
relays through the same servers): image 5 MB, video and audio 16 MB, document 100 MB, sticker
500 KB (animated; 100 KB static). A WebP goes as an image unless the agent asks for a sticker
(the form's `as_sticker`, "Enviar como figurinha" in the composer): then it goes with Evolution's
sendSticker, under the sticker limit and without a caption (WhatsApp shows none).

The kind decides the limit and how the provider sends the file, and it comes from the bytes, not
from what the browser declared: a file whose first bytes are a PNG is an image whatever its
Content-Type, and a file claiming to be an image whose bytes are not one is a document (sent and
served as an attachment; its declared type is kept only when it is not an inline type). An
OGG/Opus file is a voice note (what the browser records), sent as WhatsApp's voice note.

Order (`reply_with_file`): who may reply is checked before the body is read; then the upload is
read and its fields checked (nothing stored yet); then the bytes are stored (backend/media), and
only then the reply is queued and stored like a text reply (backend/messages/service.py). A crash
between the bytes and the message leaves stored bytes no message points to (kept, as every stored
file is), never a message without its bytes.

Reading: the body is parsed as it streams in (python-multipart); the file part goes to a spooled
temporary file (memory up to SPOOL_MEMORY_BYTES, then disk), hashed as it goes, and the media store
writes its chunks from that same file (`Upload.received`: one copy, not two); its size is checked on every
piece against its kind's limit, known after its first SNIFF_BYTES. Past the limit the read stops
with 413 and nothing reaches the database; a body that ends early (the client went away, fewer
bytes than declared) stops it the same way. Only a complete, valid upload is handed on.

A refusal while the body still flows (413, a bad field) reads the rest and throws it away before
it answers, for up to DRAIN_SECONDS (BodyLimit still caps the bytes): a browser writes the whole
body before it reads the answer, and answered early, a proxy in between may reset the upload (Vite's
did, one run in three), so the agent would see a network error instead of why the file was refused.
"""

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from tempfile import SpooledTemporaryFile
from typing import Any, BinaryIO, TypeVar, cast

import filetype
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request

from backend.core.db import Database
from backend.core.errors import AppError, BadRequest, Unprocessable
from backend.core.tenancy import Actor
from backend.media import service as media
from backend.messages import service as messages
from backend.messages.schemas import MessageRead, MessageUploadFields

M = TypeVar("M", bound=BaseModel)
MB = 1024 * 1024
KB = 1024


class Kind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    VOICE = "voice"  # OGG/Opus: sent as a WhatsApp voice note (push-to-talk)
    DOCUMENT = "document"
    STICKER = "sticker"


LIMITS: dict[Kind, int] = {
    Kind.IMAGE: 5 * MB,
    Kind.VIDEO: 16 * MB,
    Kind.AUDIO: 16 * MB,
    Kind.VOICE: 16 * MB,
    Kind.DOCUMENT: 100 * MB,
    Kind.STICKER: 500 * KB,
}
LABELS_PT: dict[Kind, str] = {
    Kind.IMAGE: "Imagens",
    Kind.VIDEO: "Vídeos",
    Kind.AUDIO: "Áudios",
    Kind.VOICE: "Mensagens de voz",
    Kind.DOCUMENT: "Documentos",
    Kind.STICKER: "Figurinhas",
}
# Types WhatsApp shows inline as an image / plays as a video / as audio; anything else is a document.
IMAGE_MIMES = frozenset({"image/jpeg", "image/png", "image/webp"})
VIDEO_MIMES = frozenset({"video/mp4", "video/3gpp"})
AUDIO_MIMES = frozenset({"audio/ogg", "audio/mpeg", "audio/mp4", "audio/aac", "audio/amr", "audio/x-m4a"})
GENERIC_MIME = "application/octet-stream"
INLINE_PREFIXES = ("image/", "video/", "audio/", "text/html", "image/svg")

SNIFF_BYTES = 262  # what `filetype` reads to recognise a format
SPOOL_MEMORY_BYTES = 1 * MB
DRAIN_SECONDS = 30.0
FIELD_MAX_BYTES = 64 * KB  # a caption is at most 4096 characters: 16 KB of UTF-8
MAX_PARTS = 8
FIELDS = frozenset({"body", "quoted_message_id", "as_sticker"})
STICKER_MIME = "image/webp"
NAME_MAX_CHARS = 255
# Room for the form's boundaries, part headers and fields around the largest file.
FORM_OVERHEAD_BYTES = 256 * KB
MAX_UPLOAD_BYTES = max(LIMITS.values()) + FORM_OVERHEAD_BYTES
UPLOAD_PATH = r"/api/v1/tickets/[^/]+/messages"  # where BodyLimit lets a form this large in
FORM_TOO_LARGE = (
    "Arquivo grande demais: o WhatsApp aceita no máximo 100 MB (documentos; imagens 5 MB, vídeos e áudios 16 MB)."
)

_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


CAPTIONED = frozenset({Kind.IMAGE, Kind.VIDEO, Kind.DOCUMENT})  # the kinds WhatsApp shows a caption with
MEDIA_READY = "ready"  # a file an agent sends is stored before its message: ready from the start


def too_large(kind: Kind) -> media.TooLarge:
    limit = LIMITS[kind]
    shown = f"{limit // MB} MB" if limit >= MB else f"{limit // KB} KB"
    return media.TooLarge(f"Arquivo grande demais: {LABELS_PT[kind].lower()} podem ter no máximo {shown} no WhatsApp.")


@dataclass(frozen=True)
class Sniffed:
    kind: Kind
    mime: str


def classify(head: bytes, declared: str) -> Sniffed:
    """What the file is, from its first bytes; `declared` (the part's Content-Type) only names
    a document's type, and never an inline one the bytes do not prove."""
    guess = filetype.guess(head) if head else None
    sniffed = str(guess.mime) if guess is not None else None
    if sniffed == "audio/ogg" and head[28:36] == b"OpusHead":
        return Sniffed(Kind.VOICE, "audio/ogg")
    if sniffed in IMAGE_MIMES:
        return Sniffed(Kind.IMAGE, sniffed)
    if sniffed in VIDEO_MIMES:
        return Sniffed(Kind.VIDEO, sniffed)
    if sniffed in AUDIO_MIMES:
        return Sniffed(Kind.AUDIO, sniffed)
    if sniffed is not None:
        return Sniffed(Kind.DOCUMENT, sniffed)
    mime = declared.split(";", 1)[0].strip().lower()
    if not _MIME.match(mime) or mime.startswith(INLINE_PREFIXES):
        mime = GENERIC_MIME
    return Sniffed(Kind.DOCUMENT, mime)


def clean_name(raw: str) -> str:
    """The file name as the client will see it: no path, no control characters, bounded."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if len(name) > NAME_MAX_CHARS:
        _, dot, ext = name.rpartition(".")
        keep = ext if dot and len(ext) <= 16 else ""
        name = name[: NAME_MAX_CHARS - len(keep) - 1] + ("." + keep if keep else "")
    return name


@dataclass
class Upload:
    """A complete upload: the file (spooled, rewound), what it is, its sha256 (hashed as it came
    in), and the form's other fields."""

    file: UploadFile
    name: str
    kind: Kind
    mime: str
    size: int
    sha256: str
    fields: dict[str, str] = field(default_factory=dict)

    def received(self) -> media.Received:
        """The spool itself, for the media store to write from (the upload's one copy on disk)."""
        return media.Received(file=self.file.file, size=self.size, sha256=self.sha256)


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)


class _FormReader:
    """python-multipart's callbacks only record events; the async side applies them after each
    write, so spool writes (a thread once the spool is on disk) never run inside the parser."""

    def __init__(self, boundary: bytes) -> None:
        self.events: list[tuple[str, Any]] = []
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._part_begin,
                "on_part_data": lambda d, s, e: self.events.append(("data", bytes(d[s:e]))),
                "on_part_end": lambda: self.events.append(("end", b"")),
                "on_header_field": lambda d, s, e: self.header_field.extend(d[s:e]),
                "on_header_value": lambda d, s, e: self.header_value.extend(d[s:e]),
                "on_header_end": self._header_end,
                "on_headers_finished": lambda: self.events.append(("headers", self.headers)),
                "on_end": lambda: self.events.append(("done", b"")),
            },
        )
        self.headers: dict[bytes, bytes] = {}

    def _part_begin(self) -> None:
        self.headers = {}  # a fresh dict: the previous part's event keeps its own
        self.events.append(("begin", b""))

    def _header_end(self) -> None:
        self.headers[bytes(self.header_field).lower()] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()


async def read_form(request: Request) -> Upload:
    """Reads a multipart reply: exactly one `file` part, optional `body` and `quoted_message_id`
    fields. Raises 413 (`media.TooLarge`) past the file's limit, 400 for a body that ends early or is
    not a readable form, 422 for a form without a file or with unknown fields."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise BadRequest("multipart/form-data with a boundary is expected")
    reader = _FormReader(boundary)
    fields: dict[str, str] = {}
    upload: Upload | None = None
    spool: UploadFile | None = None
    part: _Part | None = None
    head = bytearray()
    sniffed: Sniffed | None = None
    size = 0
    digest = hashlib.sha256()
    parts = 0
    done = False
    stream = request.stream()

    async def feed_file(data: bytes) -> None:
        nonlocal size, sniffed
        assert spool is not None and part is not None
        size += len(data)
        digest.update(data)
        if sniffed is None:
            head.extend(data[: SNIFF_BYTES - len(head)])
            if len(head) >= SNIFF_BYTES:
                sniffed = classify(bytes(head), part.headers.get(b"content-type", b"").decode("latin-1"))
        if sniffed is not None and size > LIMITS[sniffed.kind]:
            raise too_large(sniffed.kind)
        await spool.write(data)

    try:
        async for chunk in stream:
            if done:
                continue  # epilogue after the closing boundary
            try:
                reader.parser.write(chunk)
            except MultipartParseError as exc:
                raise BadRequest("the multipart body is not readable") from exc
            events, reader.events = reader.events, []
            for kind, data in events:
                if kind == "begin":
                    parts += 1
                    if parts > MAX_PARTS:
                        raise Unprocessable("too many parts in the form")
                    part = _Part()
                elif kind == "headers":
                    assert part is not None
                    part.headers = data
                    _, disposition = parse_options_header(part.headers.get(b"content-disposition", b""))
                    part.name = disposition.get(b"name", b"").decode("utf-8", "replace")
                    raw_filename = disposition.get(b"filename")
                    part.filename = raw_filename.decode("utf-8", "replace") if raw_filename is not None else None
                    if part.name == "file":
                        if spool is not None:
                            raise Unprocessable("one file per message")
                        spool = UploadFile(cast(BinaryIO, SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)))  # noqa: SIM115
                    elif part.name not in FIELDS:
                        raise Unprocessable(f"unknown form field {part.name[:40]!r}")
                elif kind == "data":
                    assert part is not None
                    if part.name == "file":
                        await feed_file(data)
                    else:
                        part.data.extend(data)
                        if len(part.data) > FIELD_MAX_BYTES:
                            raise Unprocessable(f"the field {part.name!r} is too long")
                elif kind == "end":
                    assert part is not None
                    if part.name != "file":
                        try:
                            fields[part.name] = part.data.decode("utf-8")
                        except UnicodeDecodeError as exc:
                            raise Unprocessable(f"the field {part.name!r} is not UTF-8") from exc
                    elif spool is not None:
                        if sniffed is None:
                            sniffed = classify(bytes(head), part.headers.get(b"content-type", b"").decode("latin-1"))
                            if size > LIMITS[sniffed.kind]:
                                raise too_large(sniffed.kind)
                        upload = Upload(
                            file=spool,
                            name=clean_name(part.filename or ""),
                            kind=sniffed.kind,
                            mime=sniffed.mime,
                            size=size,
                            sha256=digest.hexdigest(),
                        )
                    part = None
                elif kind == "done":
                    done = True
        if not done:
            raise BadRequest("the upload ended before the form did")
        if upload is None:
            raise Unprocessable("the form has no file")
        if upload.size == 0:
            raise Unprocessable("the file is empty")
        upload.fields = fields
        await upload.file.seek(0)
        return upload
    except BaseException as exc:
        if spool is not None:
            await spool.close()
        if isinstance(exc, ClientDisconnect):
            raise BadRequest("the upload ended before the form did") from exc
        if isinstance(exc, AppError):  # refused while the body may still flow
            await _drain(stream)
        raise


async def _drain(stream: AsyncIterator[bytes]) -> None:
    """Reads what is left of a refused body (see the module's docstring)."""
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in stream:
                pass
    except (ClientDisconnect, TimeoutError):
        pass


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def json_body(request: Request, model: type[M]) -> M:
    """A JSON body validated as FastAPI would for a body parameter (422 with the issues), for a
    route that also takes a form and so reads its body itself."""
    raw = await request.body()
    try:
        return model.model_validate_json(raw or b"null")
    except ValidationError as exc:
        issues = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(issues) from exc


# The OpenAPI document's request body for the reply route: JSON, or a form with the file.
REPLY_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/MessageCreate"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "body": {"type": "string", "maxLength": 4096, "description": "caption"},
                    "quoted_message_id": {"type": "string", "pattern": "^[0-9a-f]{24}$"},
                    "as_sticker": {"type": "boolean", "description": "send a WebP as a WhatsApp sticker"},
                },
            }
        },
    },
}


async def reply_with_file(
    db: Database, actor: Actor, *, ticket_id: str, request: Request, idempotency_key: str | None = None
) -> MessageRead:
    """An agent sends a file (and a caption) in a ticket it holds (see the module docstring).
    Repeated with the same `idempotency_key`, the reply stored first, its file not read again."""
    message_id = messages.keyed_reply_id(actor, ticket_id, idempotency_key)
    if (earlier := await messages.replayed(db, actor, ticket_id, message_id)) is not None:
        return earlier
    ticket = await messages.held_for_reply(db, actor, ticket_id)
    upload = await read_form(request)
    try:
        form = _fields(upload)
        kind = _sent_as(upload, form)
        quoted = await messages.quote_of(db, ticket, form.quoted_message_id)
        record = await media.store_bytes(
            db,
            reseller_id=ticket.reseller_id,
            data=upload.received(),
            mime=upload.mime,
            name=upload.name,
            max_size=LIMITS[kind],
        )
    finally:
        await upload.file.close()
    voice = kind is Kind.VOICE
    stored = {
        "sha256": record.sha256,
        "mime": upload.mime,  # ours, from the bytes: the record keeps its first storer's
        "size": record.size,
        "name": upload.name,
        "status": MEDIA_READY,
        **({"voice": True} if voice else {}),
    }
    type_ = Kind.AUDIO.value if voice else kind.value
    doc = await messages.send_as_agent(
        db,
        actor,
        ticket,
        body=form.body,
        sign=kind in CAPTIONED,  # audio and stickers carry no caption to sign
        type_=type_,
        media=stored,
        quoted=quoted,
        message_id=message_id,
    )
    return MessageRead.of_message(doc)


def _fields(upload: Upload) -> MessageUploadFields:
    try:
        form = MessageUploadFields.model_validate(upload.fields)
    except ValidationError as exc:
        raise Unprocessable(str(exc.errors(include_url=False)[0]["msg"])) from exc
    if form.body and upload.kind in (Kind.AUDIO, Kind.VOICE):
        raise Unprocessable("WhatsApp não envia legenda com áudio; envie o texto numa mensagem separada.")
    return form


def _sent_as(upload: Upload, form: MessageUploadFields) -> Kind:
    """The kind the file goes as: what its bytes are, or a sticker when asked for one (a WebP,
    within the sticker limit, no caption)."""
    if not form.as_sticker:
        return upload.kind
    if upload.mime != STICKER_MIME:
        raise Unprocessable("Figurinhas são imagens WebP: envie um arquivo .webp como figurinha.")
    if form.body:
        raise Unprocessable("WhatsApp não envia legenda com figurinha; envie o texto numa mensagem separada.")
    if upload.size > LIMITS[Kind.STICKER]:
        raise too_large(Kind.STICKER)
    return Kind.STICKER
