"""Media tests' helpers: real fixture files in, through the fake provider's webhook."""

import base64
from pathlib import Path
from typing import Any

import httpx

from backend.webhooks.service import message_id_for
from tests.factories import unique_phone
from tests.fakes.harness import FakeEvolution, wait_for
from tests.webhooks.helpers import settled

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "media"
KINDS = {
    "photo.png": ("image", "image/png"),
    "voice.ogg": ("audio", "audio/ogg; codecs=opus"),
    "boleto.pdf": ("document", "application/pdf"),
    "evil.html": ("document", "text/html"),
}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


async def send_media(
    evolution: FakeEvolution,
    db: Any,
    conn: dict[str, Any],
    name: str,
    *,
    inline: bool = False,
    phone: str | None = None,
    caption: str = "",
    key_id: str | None = None,
    content: bytes | None = None,
    wrap: str | list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The fake phone sends fixture `name` (with `content` instead of its bytes, if given; inside
    Baileys' wrappers `wrap`, outermost first, if given); returns the stored message once the
    webhook is processed."""
    kind, mime = KINDS[name]
    data = fixture(name) if content is None else content
    media: dict[str, Any] = {"type": kind, "mimetype": mime, "base64": base64.b64encode(data).decode()}
    if kind == "document":
        media["fileName"] = name
    if inline:
        media["inline"] = True
    media.update(extra)
    body: dict[str, Any] = {"media": media}
    if key_id:
        body["key_id"] = key_id
    if wrap:
        body["wrap"] = wrap
    result = await evolution.inbound(conn["instance_name"], phone or unique_phone(), caption, **body)
    raw = await settled(db, result)
    assert raw["status"] == "processed", raw
    message_id = message_id_for(conn["id"], result["key_id"])
    message: dict[str, Any] = await db.messages.find_one({"_id": message_id})
    return {**message, "key_id": result["key_id"], "raw_id": raw["_id"]}


async def media_of(client: httpx.AsyncClient, headers: dict[str, str], message: dict[str, Any]) -> dict[str, Any]:
    """The message as the thread API answers it."""
    r = await client.get(f"/api/v1/tickets/{message['ticket_id']}/messages", headers=headers)
    assert r.status_code == 200, r.text
    found: dict[str, Any] = next(m for m in r.json()["items"] if m["id"] == message["_id"])
    return found


async def until_media(db: Any, message_id: str, status: str, *, within: float = 60.0) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        doc: dict[str, Any] | None = await db.messages.find_one({"_id": message_id})
        return doc if doc is not None and (doc.get("media") or {}).get("status") == status else None

    result: dict[str, Any] = await wait_for(reached, timeout=within)
    return result
