"""Waiting for the webhook processor: the webhook answers once a delivery is stored, and the
processor records the outcome on the raw event shortly after (polled, bounded, no fixed sleeps)."""

from typing import Any

from tests.fakes.harness import FakeEvolution, wait_for


def raw_id_of(ack: Any) -> str:
    """A webhook answer: the route's JSON, an httpx response, or the fake's {"body": ...}."""
    body = ack.json() if hasattr(ack, "json") else ack.get("body", ack)
    assert body["status"] == "received", body
    return str(body["raw_id"])


async def settled(db: Any, ack: Any, *, within: float = 30.0) -> dict[str, Any]:
    """The raw event once processed (any outcome but "received")."""
    raw_id = raw_id_of(ack)

    async def done() -> dict[str, Any] | None:
        raw: dict[str, Any] | None = await db.webhook_events_raw.find_one({"_id": raw_id})
        return raw if raw is not None and raw["status"] != "received" else None

    result: dict[str, Any] = await wait_for(done, timeout=within)
    return result


async def connection_state(evolution: FakeEvolution, db: Any, conn: dict[str, Any], state: str) -> None:
    """The fake's instance moves to `state` ("open", "close"), posts the CONNECTION_UPDATE, and the
    processor has stored it on the connection."""
    result = await evolution.control("POST", "state", {"instance": conn["instance_name"], "state": state})
    assert result["status_code"] == 200, result
    await settled(db, result)

    async def stored() -> bool:
        return bool((await db.whatsapp_connections.find_one({"_id": conn["id"]}))["status"] == state)

    assert await wait_for(stored)


def text_upsert(
    phone: str, key_id: str, text: str, *, name: str = "Cliente", from_me: bool = False, stamped: bool = False
) -> dict[str, Any]:
    """An Evolution `messages.upsert` of a text message (`stamped`: with the instance's name and
    the message's timestamp, as Evolution sends them)."""
    data: dict[str, Any] = {
        "key": {"remoteJid": f"{phone}@s.whatsapp.net", "fromMe": from_me, "id": key_id},
        "pushName": name,
        "message": {"conversation": text},
        "messageType": "conversation",
    }
    if stamped:
        return {"event": "messages.upsert", "instance": "x", "data": {**data, "messageTimestamp": 1_700_000_000}}
    return {"event": "messages.upsert", "data": data}
