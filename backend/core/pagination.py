"""Opaque keyset cursors: base64 of a small JSON list, never an offset (stable under inserts)."""

import base64
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from backend.core.clock import as_utc
from backend.core.errors import Unprocessable
from backend.core.ids import is_valid_id
from backend.core.schemas import StoredModel

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]  # a list route's page size
OptionalId = Annotated[str | None, Query(pattern=r"^[0-9a-f]{24}$")]  # a list route's filter by id


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


async def every_item(read_page: Callable[[str | None], Awaitable[Page[T]]]) -> list[T]:
    """Every item of a cursor-paged list, read a page at a time from the first (`read_page(cursor)`)."""
    items: list[T] = []
    cursor: str | None = None
    while True:
        page = await read_page(cursor)
        items.extend(page.items)
        if not page.next_cursor:
            return items
        cursor = page.next_cursor


def encode_cursor(values: list[Any]) -> str:
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


MAX_CURSOR_CHARS = 512


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    if len(cursor) > MAX_CURSOR_CHARS:  # ours are short; a huge one is garbage, or deep nesting
        raise Unprocessable("invalid cursor")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise Unprocessable("invalid cursor") from exc
    if not isinstance(values, list) or len(values) != arity:
        raise Unprocessable("invalid cursor")
    return values


def decode_id_cursor(cursor: str) -> str:
    """Cursor of the lists keyed by `_id` alone: one document id, or the cursor is invalid."""
    value = decode_cursor(cursor, 1)[0]
    if not isinstance(value, str) or not is_valid_id(value):
        raise Unprocessable("invalid cursor")
    return value


def decode_time_cursor(cursor: str) -> tuple[datetime, str]:
    """Cursor of the lists keyed by (a date, `_id`): an ISO date and a document id. The date is
    made UTC here, where an offset that pushes it out of Python's range (year 9999 at -14:00)
    is still a 422 rather than an OverflowError in the driver."""
    at_raw, last_id = decode_cursor(cursor, 2)
    if not isinstance(at_raw, str) or not isinstance(last_id, str) or not is_valid_id(last_id):
        raise Unprocessable("invalid cursor")
    try:
        at = as_utc(datetime.fromisoformat(at_raw)).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise Unprocessable("invalid cursor") from exc
    return at, last_id


def next_id_cursor(docs: Sequence[StoredModel], limit: int) -> str | None:
    """For lists read newest `_id` first with limit+1 rows: the cursor of the page's last row, if
    one more row exists."""
    return encode_cursor([docs[limit - 1].id]) if len(docs) > limit else None
