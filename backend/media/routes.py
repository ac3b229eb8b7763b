"""Media of messages: the bytes (streamed, ranged, cache-validated) and the fetch's retry action."""

from typing import Annotated

from fastapi import APIRouter, Header, Response
from fastapi.responses import StreamingResponse

from backend.auth.deps import StaffActor
from backend.core.deps import Db
from backend.core.errors import ROLE, responses
from backend.media import service, serving
from backend.messages.schemas import MessageRead

router = APIRouter(prefix="/messages", tags=["messages"], responses=ROLE)

# On every answer with bytes: never sniffed into something runnable, never a page of ours.
_SAFE = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox"}


@router.get(
    "/{message_id}/media",
    operation_id="messages-get_media",
    response_class=Response,
    responses=responses(404, 409)
    | {
        200: {"description": "The bytes.", "content": {"application/octet-stream": {}}},
        206: {"description": "The requested byte range."},
        304: {"description": "Not modified (If-None-Match)."},
        416: {"description": "The range lies outside the file."},
    },
)
async def get_media(
    db: Db,
    actor: StaffActor,
    message_id: str,
    range_: Annotated[str | None, Header(alias="Range")] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    media, kind, record = await service.servable(db, actor, message_id=message_id)
    mime, size = media.mime or record.mime, record.size
    etag = serving.etag_of(record.sha256)
    inline = serving.is_inline(serving.content_type(mime))
    name = serving.filename(media.name, serving.content_type(mime), kind)
    headers = {
        **_SAFE,
        "ETag": etag,
        "Cache-Control": "private, max-age=31536000, immutable",  # content-addressed: never changes
        "Accept-Ranges": "bytes",
        "Content-Disposition": serving.disposition(name, inline=inline),
    }
    if serving.matches_etag(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    try:
        wanted = serving.parse_range(range_, size)
    except serving.Unsatisfiable:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    start, end, status = (0, size, 200) if wanted is None else (wanted.start, wanted.end, 206)
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    body = await service.open_bytes(db, reseller_id=record.reseller_id, sha256=record.sha256, start=start, end=end)
    return StreamingResponse(body, status_code=status, media_type=serving.content_type(mime), headers=headers)


@router.post("/{message_id}/media/retry", operation_id="messages-retry_media", responses=responses(404, 409))
async def retry_media(db: Db, actor: StaffActor, message_id: str) -> MessageRead:
    return await service.retry_fetch(db, actor, message_id=message_id)
