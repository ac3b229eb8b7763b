"""HTTP serving rules for stored media: which types may render inline, ranges, validators.

Only what a browser can show without running anything is served inline: raster images (not
SVG, which is a document that can carry script), audio and video. Everything else — HTML, SVG,
PDF, scripts, unknown types — is an attachment, and every answer says `nosniff` and carries a
sandboxing CSP, so a client's file is never rendered as a page of ours.
"""

import mimetypes
import re
from dataclasses import dataclass
from urllib.parse import quote

INLINE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# Types a browser would run or render as a document: sent as opaque bytes whatever they claim.
_ACTIVE = re.compile(r"(html|xml|svg|javascript|ecmascript|x-sh|css)", re.IGNORECASE)
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def is_inline(mime: str) -> bool:
    mime = mime.lower()
    return mime in INLINE_IMAGES or ((mime.startswith("audio/") or mime.startswith("video/")) and "xml" not in mime)


def content_type(mime: str) -> str:
    mime = (mime or "").split(";")[0].strip().lower()
    if not mime or "/" not in mime or _ACTIVE.search(mime):
        return "application/octet-stream"
    return mime


def filename(name: str, mime: str, kind: str) -> str:
    name = " ".join(name.replace("/", "_").replace("\\", "_").split())
    if name:
        return name
    return (kind or "arquivo") + (mimetypes.guess_extension(mime) or "")


def disposition(name: str, *, inline: bool) -> str:
    """RFC 6266 with the name as RFC 5987 UTF-8 (`filename*`) and an ASCII fallback."""
    ascii_name = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\;' else "_" for ch in name) or "file"
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # exclusive


class Unsatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """One `bytes=` range (first-last, first-, -suffix). None: serve everything (no header, or a
    form we do not serve partially — several ranges, other units — which a server may ignore).
    Raises Unsatisfiable for a range outside the file (416)."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        suffix = int(last)
        if suffix == 0:
            raise Unsatisfiable
        return ByteRange(max(size - suffix, 0), size)
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or (last and int(last) < start):
        raise Unsatisfiable
    return ByteRange(start, end)


def etag_of(sha256: str) -> str:
    return f'"{sha256}"'


def matches_etag(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [t.strip() for t in if_none_match.split(",")]
    return "*" in tags or any(t.removeprefix("W/") == etag for t in tags)
