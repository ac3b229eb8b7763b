"""Opaque keyset cursors: base64 of a small JSON list, never an offset (stable under inserts)."""

import base64
import json
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from backend.core.errors import Unprocessable

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(values: list[Any]) -> str:
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise Unprocessable("invalid cursor") from exc
    if not isinstance(values, list) or len(values) != arity:
        raise Unprocessable("invalid cursor")
    return values
