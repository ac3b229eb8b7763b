"""A fake Evolution API v2, run as its own process on loopback by the tests:

    python -m tests.fakes.evolution_fake --port 8080 --api-key secret

It speaks the documented REST shapes the adapter uses (POST /instance/create, GET
/instance/connect/{name}, GET /instance/connectionState/{name}, POST /webhook/set/{name} and GET
/webhook/find/{name} (an instance's webhook; one set disabled, or without an event, posts
nothing of it), POST /message/sendText/{name},
`apikey` header; GET /instance/fetchInstances for scripts/post_restart.py; POST
/chat/getBase64FromMediaMessage/{name} for media a test registered with an inbound message (from
the content the request carries, else from the message as it stored it; refusing, as Evolution
v2.3.6 does, content whose media is inside a wrapper it does not unwrap);
POST /message/sendMedia/{name}, /message/sendWhatsAppAudio/{name} and /message/sendSticker/{name},
whose base64 media are decoded and kept: GET /_control/sent_media/{key id} answers the exact bytes)
and posts webhooks back
to the URL and headers set at instance creation, in
Evolution's envelope ({event, instance, data, destination, date_time, sender, server_url, apikey}).
A send goes to, and its fromMe echo comes from, the JID Evolution's createJid builds for the number
(`jid_for`: a Brazilian mobile of DDD 31 and up without its ninth digit, ...), recorded as `jid`.

Test controls under /_control: switch modes (ok, slow, 5xx, malformed), numbers not on WhatsApp
(`not-on-whatsapp`: sends to them answer 400 as Evolution does), fail or hold just the
next sends (`fail_next`; `hold_next` before anything, `hold_answer_next` after posting the echo,
both until POST /_control/release), read what was sent, and
make the "phone" do things (connect, new QR code, inbound message — `wrap` puts it inside Baileys'
wrappers such as ephemeralMessage, `lid` names the chat by a LID —, delivery receipt, raw post).
"down" is the real thing: the test stops this process.
"""

import argparse
import asyncio
import base64
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

# A 1x1 PNG stands in for the QR image (shape matters to the backend, not the picture).
QR_PNG = "data:image/png;base64," + (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@dataclass
class Instance:
    name: str
    instance_id: str
    token: str
    webhook_url: str
    webhook_headers: dict[str, str]
    events: list[str]
    by_events: bool
    enabled: bool = True  # Evolution posts nothing for a webhook set disabled
    base64: bool = False
    state: str = "connecting"
    qr_count: int = 1
    owner: str = "5511900000000"
    paired: bool = False  # Evolution fills ownerJid once a phone has scanned the QR code


@dataclass
class FakeState:
    api_key: str
    mode: str = "ok"
    slow_seconds: float = 0.0
    echo: bool = True
    # The echo posted (and acknowledged) before the send is answered, then the answer held back
    # this long: Evolution's echo outrunning the caller's bookkeeping, made certain.
    echo_first_seconds: float = 0.0
    # A number's chat as WhatsApp names it in our own echoes (a LID chat: "<lid>@lid", no number).
    echo_as: dict[str, str] = field(default_factory=dict)
    # The key id the next send gets, so a test can post its receipts before the send exists.
    next_key_id: str | None = None
    # The next this-many sends answer 500 (nothing sent), whatever the mode.
    fail_next: int = 0
    # The next this-many sends wait, before anything happens, until POST /_control/release.
    hold_next: int = 0
    # The next this-many sends post their echo first, then hold the answer until released.
    hold_answer_next: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)
    # Numbers with no WhatsApp account: a send to one is refused as Evolution refuses it.
    not_on_whatsapp: set[str] = field(default_factory=set)
    instances: dict[str, Instance] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)
    sent_media: dict[str, bytes] = field(default_factory=dict)  # key id -> the bytes a media send carried
    calls: list[dict[str, Any]] = field(default_factory=list)
    webhook_results: list[dict[str, Any]] = field(default_factory=list)
    # Media the "phone" received, by key id, served by /chat/getBase64FromMediaMessage; its next
    # this-many fetches answer 500; `media_gone` fetches answer 400 (WhatsApp no longer has it).
    media: dict[str, dict[str, Any]] = field(default_factory=dict)
    media_fail_next: int = 0
    fail_paths: list[str] = field(default_factory=list)  # answer 500 there, whatever the mode
    media_fetches: list[dict[str, Any]] = field(default_factory=list)
    # What the "phone" received, per instance, as Evolution stores it (DATABASE_SAVE_DATA_NEW_MESSAGE):
    # served by /chat/findMessages, whether or not its webhook was delivered.
    stored: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Read receipts asked for (/chat/markMessageAsRead), per instance: the keys, as sent.
    reads: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _key_id() -> str:
    return "3EB0" + uuid.uuid4().hex[:16].upper()


def jid_for(number: str) -> str:
    """The JID Evolution sends a number's message to (and reports its fromMe echo on), as
    src/utils/createJid.ts builds it for a plain number: `formatMXOrARNumber` drops the third
    digit of a 13-digit 52/54 number, then `formatBRNumber` drops the fifth digit of a 13-digit
    55 number whose last 8 digits start with 7-9 and whose DDD is 31 or more (the JID of an
    account from before the ninth digit). "55 31 9 8xxx-xxxx" goes to "5531 8xxx-xxxx". A JID
    (a LID chat's "<lid>@lid", a group) is taken as it is, its device dropped."""
    number = re.sub(r":\d+", "", str(number), count=1)
    if any(server in number for server in ("@g.us", "@s.whatsapp.net", "@lid")):
        return number
    digits = "".join(ch for ch in str(number).split("@")[0] if ch.isdigit())
    if digits[:2] in ("52", "54") and len(digits) == 13:
        digits = digits[:2] + digits[3:]
    if len(digits) == 13 and digits[:2] == "55" and int(digits[5]) >= 7 and int(digits[2:4]) >= 31:
        digits = digits[:4] + digits[5:]
    return f"{digits}@s.whatsapp.net"


# Evolution v2.3.6 src/api/types/wa.types.ts: the wrappers getBase64FromMediaMessage unwraps
# (one pass, in this order), and the media types it downloads.
MESSAGE_SUBTYPE = ("ephemeralMessage", "documentWithCaptionMessage", "viewOnceMessage", "viewOnceMessageV2")
TYPE_MEDIA_MESSAGE = ("imageMessage", "documentMessage", "audioMessage", "videoMessage", "stickerMessage", "ptvMessage")


def evolution_media_refusal(message: dict[str, Any]) -> str | None:
    """Why Evolution's getBase64FromMediaMessage refuses this content (its 400's message), or None:
    it unwraps only MESSAGE_SUBTYPE, so content in another wrapper (viewOnceMessageV2Extension,
    associatedChildMessage) holds no media type for it."""
    content: Any = message
    for subtype in MESSAGE_SUBTYPE:
        if isinstance(content, dict) and content.get(subtype):
            content = content[subtype].get("message") if isinstance(content[subtype], dict) else None
    if not isinstance(content, dict):
        return "TypeError: Cannot read properties of undefined"
    if "messageContextInfo" in content and len(content) == 1:
        return "The message is messageContextInfo"
    if not any(content.get(t) for t in TYPE_MEDIA_MESSAGE):
        return "The message is not of the media type"
    return None


def media_key_bytes(value: Any) -> bytes | None:
    """A mediaKey as Evolution reads it back: an object of byte values (how a Uint8Array goes
    into JSON: `Uint8Array.from(Object.values(...))`), or base64 (Baileys takes that too)."""
    try:
        if isinstance(value, dict):
            return bytes(int(v) for v in value.values())
        if isinstance(value, str):
            return base64.b64decode(value, validate=True)
    except (ValueError, TypeError):
        return None
    return None


def media_refused(message: str) -> JSONResponse:
    return JSONResponse({"status": 400, "error": "Bad Request", "response": {"message": [message]}}, 400)


def create_app(api_key: str) -> FastAPI:
    app = FastAPI(title="fake Evolution API v2")
    state = FakeState(api_key=api_key)
    http = httpx.AsyncClient(timeout=30)

    def unauthorized(apikey: str | None) -> JSONResponse | None:
        if apikey != state.api_key:
            return JSONResponse({"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}}, 401)
        return None

    async def misbehave(path: str) -> Response | None:
        state.calls.append({"path": path, "mode": state.mode, "at": _now_iso()})
        if state.mode == "slow":
            await asyncio.sleep(state.slow_seconds)
        if state.mode == "5xx" or path in state.fail_paths:
            return JSONResponse({"status": 500, "error": "Internal Server Error"}, 500)
        if state.mode == "malformed":
            return PlainTextResponse("<html>upstream exploded", 200)
        return None

    async def post_webhook(
        inst: Instance, event: str, data: Any, *, raw: str | None = None, as_set: bool = True
    ) -> dict[str, Any]:
        """`as_set`: posted only as the instance's webhook asks (enabled, the event among its
        events), as Evolution's WebhookController.emit; a test's own raw post goes out regardless."""
        if as_set and (not inst.enabled or (inst.events and event not in inst.events)):
            result: dict[str, Any] = {"event": event, "status_code": None, "body": "not posted: webhook off for it"}
            state.webhook_results.append(result)
            return result
        url = inst.webhook_url
        if inst.by_events:
            url = url.rstrip("/") + "/" + event.lower().replace("_", "-")
        envelope = {
            "event": event.lower().replace("_", "."),
            "instance": inst.name,
            "data": data,
            "destination": inst.webhook_url,
            "date_time": _now_iso(),
            "sender": f"{inst.owner}@s.whatsapp.net",
            "server_url": "http://fake-evolution",
            "apikey": inst.token,
        }
        headers = {"Content-Type": "application/json", **inst.webhook_headers}
        if raw is not None:
            r = await http.post(url, content=raw.encode(), headers=headers)
        else:
            r = await http.post(url, json=envelope, headers=headers)
        try:
            body = r.json()
        except ValueError:
            body = r.text
        result = {"event": event, "status_code": r.status_code, "body": body}
        state.webhook_results.append(result)
        return result

    def instance_or_404(name: str) -> Instance | JSONResponse:
        inst = state.instances.get(name)
        if inst is None:
            return JSONResponse(
                {
                    "status": 404,
                    "error": "Not Found",
                    "response": {"message": [f'The "{name}" instance does not exist']},
                },
                404,
            )
        return inst

    @app.post("/instance/create")
    async def create_instance(request: Request, apikey: str | None = Header(default=None)) -> Response:
        if (denied := unauthorized(apikey)) is not None:
            return denied
        if (bad := await misbehave("/instance/create")) is not None:
            return bad
        body = await request.json()
        name = body.get("instanceName")
        if not name:
            return JSONResponse({"status": 400, "error": "Bad Request", "response": {"message": ["instanceName"]}}, 400)
        if name in state.instances:
            return JSONResponse(
                {
                    "status": 403,
                    "error": "Forbidden",
                    "response": {"message": [f'This name "{name}" is already in use.']},
                },
                403,
            )
        webhook = body.get("webhook") or {}
        inst = Instance(
            name=name,
            instance_id=str(uuid.uuid4()),
            token=secrets.token_hex(16).upper(),
            webhook_url=webhook.get("url", ""),
            webhook_headers=webhook.get("headers") or {},
            events=webhook.get("events") or [],
            by_events=bool(webhook.get("byEvents")),
        )
        state.instances[name] = inst
        return JSONResponse(
            {
                "instance": {
                    "instanceName": name,
                    "instanceId": inst.instance_id,
                    "integration": body.get("integration", "WHATSAPP-BAILEYS"),
                    "webhookWaBusiness": None,
                    "accessTokenWaBusiness": "",
                    "status": "connecting",
                },
                "hash": inst.token,
                "webhook": {"webhookUrl": inst.webhook_url, "webhookHeaders": inst.webhook_headers},
                "settings": {"rejectCall": False, "groupsIgnore": True},
                "qrcode": {"pairingCode": None, "code": f"2@fake-{name}-1", "base64": QR_PNG, "count": 1},
            },
            201,
        )

    @app.post("/webhook/set/{name}")
    async def set_webhook(name: str, request: Request, apikey: str | None = Header(default=None)) -> Response:
        """Evolution's EventController: the instance's webhook row replaced, answered as stored."""
        if (denied := unauthorized(apikey)) is not None:
            return denied
        if (bad := await misbehave(f"/webhook/set/{name}")) is not None:
            return bad
        inst = instance_or_404(name)
        if isinstance(inst, JSONResponse):
            return inst
        webhook = (await request.json()).get("webhook")
        if not isinstance(webhook, dict) or not webhook.get("url") or "enabled" not in webhook:
            return JSONResponse({"status": 400, "error": "Bad Request", "response": {"message": ["webhook"]}}, 400)
        inst.webhook_url, inst.webhook_headers = webhook["url"], webhook.get("headers") or {}
        inst.events, inst.by_events = list(webhook.get("events") or []), bool(webhook.get("byEvents"))
        inst.enabled, inst.base64 = bool(webhook["enabled"]), bool(webhook.get("base64"))
        if not inst.enabled:  # Evolution keeps no events for a disabled webhook
            inst.events = []
        return JSONResponse(webhook_row(inst), 201)

    def webhook_row(inst: Instance) -> dict[str, Any]:
        """The instance's `Webhook` row as Evolution's prisma model answers it."""
        return {
            "id": f"wh-{inst.instance_id}",
            "url": inst.webhook_url,
            "headers": inst.webhook_headers,
            "enabled": inst.enabled,
            "events": inst.events,
            "webhookByEvents": inst.by_events,
            "webhookBase64": inst.base64,
            "instanceId": inst.instance_id,
        }

    @app.delete("/instance/delete/{name}")
    async def delete_instance(name: str, apikey: str | None = Header(default=None)) -> Response:
        """Gone, as when Evolution's store is lost or reset: every call about it answers 404 since."""
        if (denied := unauthorized(apikey)) is not None:
            return denied
        inst = instance_or_404(name)
        if isinstance(inst, JSONResponse):
            return inst
        del state.instances[name]
        return JSONResponse({"status": "SUCCESS", "error": False, "response": {"message": "Instance deleted"}})

    @app.get("/webhook/find/{name}")
    async def find_webhook(name: str, apikey: str | None = Header(default=None)) -> Response:
        """Evolution's EventController.get: the row, or `null` for an instance without one."""
        if (denied := unauthorized(apikey)) is not None:
            return denied
        if (bad := await misbehave(f"/webhook/find/{name}")) is not None:
            return bad
        inst = instance_or_404(name)
        if isinstance(inst, JSONResponse):
            return inst
        return JSONResponse(webhook_row(inst) if inst.webhook_url else None)

    @app.get("/instance/connect/{name}")
    async def connect(name: str, apikey: str | None = Header(default=None)) -> Response:
        if (denied := unauthorized(apikey)) is not None:
            return denied
        if (bad := await misbehave(f"/instance/connect/{name}")) is not None:
            return bad
        inst = instance_or_404(name)
        if isinstance(inst, JSONResponse):
            return inst
        if inst.state == "open":
            return JSONResponse({"instance": {"instanceName": name, "state": "open"}})
        inst.qr_count += 1
        return JSONResponse(
            {"pairingCode": None, "code": f"2@fake-{name}-{inst.qr_count}", "base64": QR_PNG, "count": inst.qr_count}
        )

    @app.get("/instance/connectionState/{name}")
    async def connection_state(name: str, apikey: str | None = Header(default=None)) -> Response:
        if (denied := unauthorized(apikey)) is not None:
            return denied
        if (bad := await misbehave(f"/instance/connectionState/{name}")) is not None:
            return bad
        inst = instance_or_404(name)
        if isinstance(inst, JSONResponse):
            return inst
        return JSONResponse({"instance": {"instanceName": name, "state": inst.state}})

    @app.get("/instance/fetchInstances")
    async def fetch_instances(
        instanceName: str | None = None,  # Evolution's query parameter name
        apikey: str | None = Header(default=None),
    ) -> Response:
        if (denied := unauthorized(apikey)) is not None:
            return denied
        if (bad := await misbehave("/instance/fetchInstances")) is not None:
            return bad
        if instanceName is not None:
            found = instance_or_404(instanceName)
            if isinstance(found, JSONResponse):
                return found
        chosen = [i for i in state.instances.values() if instanceName in (None, i.name)]
        # Evolution v2 answers its Instance rows (prisma), not the connectionState shape.
        return JSONResponse(
            [
                {
                    "id": i.instance_id,
                    "name": i.name,
                    "connectionStatus": i.state,
                    "ownerJid": f"{i.owner}@s.whatsapp.net" if i.paired else None,
                    "profileName": "Loja Fake" if i.paired else None,
                    "integration": "WHATSAPP-BAILEYS",
                    "number": None,
                    "token": i.token,
                    "disconnectionReasonCode": None,
                }
                for i in chosen
            ]
        )

    async def admitted(name: str, route: str, apikey: str | None) -> Any:
        """What every send route does first: the api key, the test controls (`hold_next`,
        `fail_next`, the mode), the instance. The instance, or the error response."""
        if (denied := unauthorized(apikey)) is not None:
            return denied
        if state.hold_next > 0:
            state.hold_next -= 1
            state.calls.append({"path": route, "mode": "held", "at": _now_iso()})
            await state.released.wait()
        if state.fail_next > 0:
            state.fail_next -= 1
            state.calls.append({"path": route, "mode": "fail_next", "at": _now_iso()})
            return JSONResponse({"status": 500, "error": "Internal Server Error"}, 500)
        if (bad := await misbehave(route)) is not None:
            return bad
        return instance_or_404(name)

    async def accept_send(name: str, path: str, request: Request, apikey: str | None, content: Any) -> Response:
        """Every send route: the test controls, then `content(body)` -> (number, echo message,
        its messageType, what to record) or an error response."""
        route = f"/message/{path}/{name}"
        inst = await admitted(name, route, apikey)
        if isinstance(inst, Response):
            return inst
        parsed = content(await request.json())
        if isinstance(parsed, JSONResponse):
            return parsed
        number, message, message_type, record = parsed
        if str(number).split("@")[0] in state.not_on_whatsapp:
            # Evolution checks the number first and answers 400 with that check (exists false).
            jid = f"{str(number).split('@')[0]}@s.whatsapp.net"
            check = {"exists": False, "jid": jid, "number": number}
            return JSONResponse({"status": 400, "error": "Bad Request", "response": {"message": [check]}}, 400)
        jid = state.echo_as.get(str(number), jid_for(number))
        key = {"remoteJid": jid, "fromMe": True, "id": state.next_key_id or _key_id()}
        state.next_key_id = None
        ts = int(datetime.now(UTC).timestamp())
        if isinstance(record.get("data"), bytes):
            state.sent_media[key["id"]] = record.pop("data")
        state.sent.append(
            {
                "instance": name,
                "number": number,
                **record,
                "key_id": key["id"],
                "jid": key["remoteJid"],
                "at": _now_iso(),
            }
        )
        if state.echo:
            # Evolution also reports our own send as a fromMe upsert, a moment after answering.
            echo = {
                "key": key,
                "pushName": "",
                "message": message,
                "messageType": message_type,
                "messageTimestamp": ts,
                "instanceId": inst.instance_id,
                "source": "unknown",
            }

            async def later() -> None:
                await asyncio.sleep(0.05)
                await post_webhook(inst, "MESSAGES_UPSERT", echo)

            if state.hold_answer_next > 0:
                state.hold_answer_next -= 1
                await post_webhook(inst, "MESSAGES_UPSERT", echo)
                state.calls.append({"path": route, "mode": "answer_held", "at": _now_iso()})
                await state.released.wait()
            elif state.echo_first_seconds > 0:
                await post_webhook(inst, "MESSAGES_UPSERT", echo)
                await asyncio.sleep(state.echo_first_seconds)
            else:
                asyncio.get_running_loop().create_task(later())
        return JSONResponse(
            {
                "key": key,
                "pushName": "",
                "status": "PENDING",
                "message": message,
                "messageType": message_type,
                "messageTimestamp": ts,
                "instanceId": inst.instance_id,
                "source": "unknown",
            },
            201,
        )

    def bad_request(*fields: str) -> JSONResponse:
        return JSONResponse({"status": 400, "error": "Bad Request", "response": {"message": list(fields)}}, 400)

    def text_content(body: dict[str, Any]) -> Any:
        number, text = body.get("number"), body.get("text")
        if not number or not isinstance(text, str):
            return bad_request("number/text")
        record = {"text": text, **({"quoted": body["quoted"]} if body.get("quoted") else {})}
        return number, {"conversation": text}, "conversation", record

    def decoded(value: Any) -> bytes | None:
        try:
            return base64.b64decode(value, validate=True) if isinstance(value, str) and value else None
        except ValueError:
            return None

    def media_record(body: dict[str, Any], data: bytes, kind: str, mime: str, name: str) -> dict[str, Any]:
        caption = str(body.get("caption") or "")
        return {
            "text": caption,
            "media": {
                "kind": kind,
                "mimetype": mime,
                "fileName": name,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            },
            "data": data,
            **({"quoted": body["quoted"]} if body.get("quoted") else {}),
        }

    def media_content(body: dict[str, Any]) -> Any:
        number, kind, data = body.get("number"), body.get("mediatype"), decoded(body.get("media"))
        if not number or kind not in ("image", "video", "audio", "document") or data is None:
            return bad_request("number/mediatype/media")
        mime, name = str(body.get("mimetype") or ""), str(body.get("fileName") or "")
        part: dict[str, Any] = {"url": "https://mmg.whatsapp.net/fake.enc", "mimetype": mime, "fileLength": len(data)}
        if kind != "audio":
            part["caption"] = str(body.get("caption") or "")
        if kind == "document":
            part["fileName"] = name
        return number, {f"{kind}Message": part}, f"{kind}Message", media_record(body, data, kind, mime, name)

    def audio_content(body: dict[str, Any]) -> Any:
        number, data = body.get("number"), decoded(body.get("audio"))
        if not number or data is None:
            return bad_request("number/audio")
        mime = "audio/ogg; codecs=opus"
        part = {"url": "https://mmg.whatsapp.net/fake.enc", "mimetype": mime, "ptt": True, "fileLength": len(data)}
        return number, {"audioMessage": part}, "audioMessage", media_record(body, data, "voice", mime, "")

    def sticker_content(body: dict[str, Any]) -> Any:
        number, data = body.get("number"), decoded(body.get("sticker"))
        if not number or data is None:
            return bad_request("number/sticker")
        mime = "image/webp"
        part = {"url": "https://mmg.whatsapp.net/fake.enc", "mimetype": mime, "fileLength": len(data)}
        return number, {"stickerMessage": part}, "stickerMessage", media_record(body, data, "sticker", mime, "")

    def reaction_content(body: dict[str, Any]) -> Any:
        """Evolution's reactionMessageSchema: {key: {id, remoteJid, fromMe}, reaction}."""
        key, reaction = body.get("key"), body.get("reaction")
        if not isinstance(key, dict) or not key.get("id") or not key.get("remoteJid") or not isinstance(reaction, str):
            return bad_request("key/reaction")
        record = {"reaction": reaction, "reacted_to": key["id"], "reacted_from_me": bool(key.get("fromMe"))}
        return key["remoteJid"], {"reactionMessage": {"key": key, "text": reaction}}, "reactionMessage", record

    @app.post("/message/sendReaction/{name}")
    async def send_reaction(name: str, request: Request, apikey: str | None = Header(default=None)) -> Response:
        return await accept_send(name, "sendReaction", request, apikey, reaction_content)

    @app.delete("/chat/deleteMessageForEveryone/{name}")
    async def delete_for_everyone(name: str, request: Request, apikey: str | None = Header(default=None)) -> Response:
        """Evolution's deleteMessageSchema ({id, fromMe, remoteJid}): answers the revoke's own
        message, then reports the deletion as MESSAGES_DELETE with the deleted message's key."""
        if (denied := unauthorized(apikey)) is not None:
            return denied
        if (bad := await misbehave(f"/chat/deleteMessageForEveryone/{name}")) is not None:
            return bad
        inst = instance_or_404(name)
        if isinstance(inst, JSONResponse):
            return inst
        body = await request.json()
        if not body.get("id") or not body.get("remoteJid") or not isinstance(body.get("fromMe"), bool):
            return bad_request("id/fromMe/remoteJid")
        deleted = {"remoteJid": body["remoteJid"], "fromMe": body["fromMe"], "id": body["id"]}
        key = {"remoteJid": body["remoteJid"], "fromMe": True, "id": _key_id()}
        state.sent.append(
            {
                "instance": name,
                "number": body["remoteJid"],
                "deleted": body["id"],
                "key_id": key["id"],
                "at": _now_iso(),
            }
        )
        if state.echo:

            async def later() -> None:
                await asyncio.sleep(0.05)
                await post_webhook(inst, "MESSAGES_DELETE", {"key": deleted, "status": "DELETED"})

            asyncio.get_running_loop().create_task(later())
        message = {"protocolMessage": {"key": deleted, "type": "REVOKE"}}
        return JSONResponse(
            {"key": key, "message": message, "messageType": "protocolMessage", "status": "PENDING"}, 201
        )

    @app.post("/chat/markMessageAsRead/{name}")
    async def mark_read(name: str, request: Request, apikey: str | None = Header(default=None)) -> Response:
        """Evolution's readMessageSchema ({readMessages: [{id, fromMe, remoteJid}], at least one});
        Baileys' readMessages gets only a number's chat or a group's keys (a LID chat's are dropped)."""
        # Not a send: the send controls (`fail_next`, `hold_next`) are left to the sends.
        if (denied := unauthorized(apikey)) is not None:
            return denied
        if (bad := await misbehave(f"/chat/markMessageAsRead/{name}")) is not None:
            return bad
        inst = instance_or_404(name)
        if isinstance(inst, JSONResponse):
            return inst
        keys = (await request.json()).get("readMessages")
        if not isinstance(keys, list) or not keys or not all({"id", "fromMe", "remoteJid"} <= set(k) for k in keys):
            return JSONResponse({"status": 400, "error": "Bad Request", "response": {"message": ["readMessages"]}}, 400)
        kept = [k for k in keys if str(k["remoteJid"]).endswith(("@s.whatsapp.net", "@g.us"))]
        state.reads.setdefault(name, []).extend(kept)
        return JSONResponse({"message": "Read messages", "read": "success"}, 201)

    @app.get("/_control/reads/{name}")
    async def reads(name: str) -> list[dict[str, Any]]:
        return state.reads.get(name, [])

    @app.post("/chat/findMessages/{name}")
    async def find_messages(name: str, request: Request, apikey: str | None = Header(default=None)) -> Response:
        """Evolution's fetchMessages: its stored messages, `where.messageTimestamp` {gte, lte}
        (dates; both, or no filter), newest first, `offset` a page, `page` from 1."""
        inst = await admitted(name, f"/chat/findMessages/{name}", apikey)
        if isinstance(inst, Response):
            return inst
        body = await request.json()
        span = (body.get("where") or {}).get("messageTimestamp") or {}
        records = list(state.stored.get(name, []))
        if span.get("gte") and span.get("lte"):
            low, high = (int(datetime.fromisoformat(span[k]).timestamp()) for k in ("gte", "lte"))
            records = [r for r in records if low <= r["messageTimestamp"] <= high]
        records.sort(key=lambda r: r["messageTimestamp"], reverse=True)
        size, page = int(body.get("offset") or 50), int(body.get("page") or 1)
        chunk = records[(page - 1) * size : page * size]
        pages = -(-len(records) // size)
        return JSONResponse(
            {"messages": {"total": len(records), "pages": pages, "currentPage": page, "records": chunk}}
        )

    @app.post("/chat/updateMessage/{name}")
    async def update_message(name: str, request: Request, apikey: str | None = Header(default=None)) -> Response:
        """Evolution's updateMessageSchema ({number, text, key: {id, remoteJid, fromMe}}): Baileys
        sends the edit as a protocol message stamped `timestampMs`, answers it, and reports it as
        MESSAGES_EDITED with that same protocol message (before the answer with `hold_answer_next`
        or `echo_first_seconds`, as a send's echo can come)."""
        route = f"/chat/updateMessage/{name}"
        inst = await admitted(name, route, apikey)
        if isinstance(inst, Response):
            return inst
        body = await request.json()
        target, text = body.get("key"), body.get("text")
        if not body.get("number") or not isinstance(text, str) or not isinstance(target, dict) or not target.get("id"):
            return bad_request("number/text/key")
        edited = {"remoteJid": target.get("remoteJid"), "fromMe": True, "id": target["id"]}
        protocol = {
            "key": edited,
            "type": "MESSAGE_EDIT",
            "editedMessage": {"conversation": text},
            "timestampMs": int(datetime.now(UTC).timestamp() * 1000),
        }
        key = {"remoteJid": target.get("remoteJid"), "fromMe": True, "id": _key_id()}
        state.sent.append(
            {
                "instance": name,
                "number": body["number"],
                "text": text,
                "edited": target["id"],
                "key_id": key["id"],
                "at": _now_iso(),
            }
        )
        if state.echo:
            if state.hold_answer_next > 0:
                state.hold_answer_next -= 1
                await post_webhook(inst, "MESSAGES_EDITED", protocol)
                state.calls.append({"path": route, "mode": "answer_held", "at": _now_iso()})
                await state.released.wait()
            elif state.echo_first_seconds > 0:
                await post_webhook(inst, "MESSAGES_EDITED", protocol)
                await asyncio.sleep(state.echo_first_seconds)
            else:

                async def later() -> None:
                    await asyncio.sleep(0.05)
                    await post_webhook(inst, "MESSAGES_EDITED", protocol)

                asyncio.get_running_loop().create_task(later())
        answer = {"key": key, "message": {"protocolMessage": protocol}, "messageType": "protocolMessage"}
        return JSONResponse({**answer, "status": "PENDING"}, 201)

    @app.post("/message/sendText/{name}")
    async def send_text(name: str, request: Request, apikey: str | None = Header(default=None)) -> Response:
        return await accept_send(name, "sendText", request, apikey, text_content)

    @app.post("/message/sendMedia/{name}")
    async def send_media(name: str, request: Request, apikey: str | None = Header(default=None)) -> Response:
        return await accept_send(name, "sendMedia", request, apikey, media_content)

    @app.post("/message/sendWhatsAppAudio/{name}")
    async def send_audio(name: str, request: Request, apikey: str | None = Header(default=None)) -> Response:
        return await accept_send(name, "sendWhatsAppAudio", request, apikey, audio_content)

    @app.post("/message/sendSticker/{name}")
    async def send_sticker(name: str, request: Request, apikey: str | None = Header(default=None)) -> Response:
        return await accept_send(name, "sendSticker", request, apikey, sticker_content)

    @app.post("/chat/getBase64FromMediaMessage/{name}")
    async def get_base64(name: str, request: Request, apikey: str | None = Header(default=None)) -> Response:
        if (denied := unauthorized(apikey)) is not None:
            return denied
        body = await request.json()
        key_id = ((body.get("message") or {}).get("key") or {}).get("id")
        state.media_fetches.append({"instance": name, "body": body, "at": _now_iso()})
        if state.media_fail_next > 0:
            state.media_fail_next -= 1
            return JSONResponse({"status": 500, "error": "Internal Server Error"}, 500)
        if (bad := await misbehave(f"/chat/getBase64FromMediaMessage/{name}")) is not None:
            return bad
        inst = instance_or_404(name)
        if isinstance(inst, JSONResponse):
            return inst
        found = state.media.get(str(key_id))
        # Evolution: `m?.message ? m : await this.getMessage(m.key, true)`: the content the request
        # carries, else the message as it stored it (for media a test registered without an
        # inbound message, none: served by its key id as before).
        given = (body.get("message") or {}).get("message")
        content = given if isinstance(given, dict) else None
        if content is None and found is not None:
            content = found.get("message")
        if content is None and found is None:
            return media_refused("Message not found")
        if content is not None and (refusal := evolution_media_refusal(content)) is not None:
            return media_refused(refusal)
        if found is None or found.get("gone"):
            return media_refused("Message not found" if found is None else "media no longer on WhatsApp's servers")
        if content is not None and (stored_key := found.get("media_key")) is not None:
            part: dict[str, Any] = next((content[t] for t in TYPE_MEDIA_MESSAGE if content.get(t)), {})
            if media_key_bytes(part.get("mediaKey")) != stored_key:  # Baileys cannot decrypt it
                return media_refused("Error: bad decrypt")
        return JSONResponse(
            {
                "mediaType": found["type"],
                "fileName": found.get("fileName"),
                "caption": found.get("caption"),
                "size": {"fileLength": found["size"], "height": None, "width": None},
                "mimetype": found["mimetype"],
                "base64": found["base64"],
            }
        )

    # ---- test controls -------------------------------------------------------------------

    @app.get("/_control/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/_control/mode")
    async def set_mode(body: dict[str, Any]) -> dict[str, Any]:
        state.mode = body.get("mode", "ok")
        state.slow_seconds = float(body.get("slow_seconds", state.slow_seconds))
        state.echo = bool(body.get("echo", state.echo))
        state.echo_first_seconds = float(body.get("echo_first_seconds", state.echo_first_seconds))
        state.next_key_id = body.get("next_key_id", state.next_key_id)
        state.fail_next = int(body.get("fail_next", state.fail_next))
        state.hold_next = int(body.get("hold_next", state.hold_next))
        state.hold_answer_next = int(body.get("hold_answer_next", state.hold_answer_next))
        state.media_fail_next = int(body.get("media_fail_next", state.media_fail_next))
        state.fail_paths = list(body.get("fail_paths", []))
        state.echo_as = dict(body.get("echo_as", {}))
        if state.hold_next or state.hold_answer_next:
            state.released.clear()
        return {
            "mode": state.mode,
            "slow_seconds": state.slow_seconds,
            "echo": state.echo,
            "echo_first_seconds": state.echo_first_seconds,
            "next_key_id": state.next_key_id,
            "fail_next": state.fail_next,
            "hold_next": state.hold_next,
            "hold_answer_next": state.hold_answer_next,
        }

    @app.post("/_control/not-on-whatsapp")
    async def mark_not_on_whatsapp(body: dict[str, Any]) -> dict[str, list[str]]:
        """Numbers that have no WhatsApp account from now on (`{"numbers": [...]}`)."""
        state.not_on_whatsapp.update(str(n) for n in body.get("numbers") or [])
        return {"not_on_whatsapp": sorted(state.not_on_whatsapp)}

    @app.post("/_control/release")
    async def release() -> dict[str, bool]:
        """Lets every held send go on."""
        state.released.set()
        return {"released": True}

    @app.get("/_control/sent")
    async def sent() -> list[dict[str, Any]]:
        return state.sent

    @app.get("/_control/sent_media/{key_id}")
    async def sent_media(key_id: str) -> Response:
        """The bytes a sendMedia/sendWhatsAppAudio/sendSticker carried, decoded, exactly as received."""
        data = state.sent_media.get(key_id)
        if data is None:
            return JSONResponse({"detail": "no media sent with that key id"}, 404)
        return Response(data, media_type="application/octet-stream")

    @app.post("/_control/media")
    async def register_media(body: dict[str, Any]) -> dict[str, int]:
        """Media the phone holds under a key id (what a fake restarted after being down forgot)."""
        media = {k: v for k, v in body.items() if k != "key_id"}
        state.media[body["key_id"]] = {**media, "size": len(base64.b64decode(media["base64"]))}
        return {"size": state.media[body["key_id"]]["size"]}

    @app.post("/_control/media_gone")
    async def media_gone(body: dict[str, Any]) -> dict[str, bool]:
        state.media[body["key_id"]]["gone"] = bool(body.get("gone", True))
        return {"gone": bool(body.get("gone", True))}

    @app.get("/_control/media_fetches")
    async def media_fetches() -> list[dict[str, Any]]:
        return state.media_fetches

    @app.get("/_control/calls")
    async def calls() -> list[dict[str, Any]]:
        return state.calls

    @app.post("/_control/instances/{name}/events")
    async def set_instance_events(name: str, body: dict[str, Any]) -> Response:
        """What an instance created by an older version asked for."""
        inst = instance_or_404(name)
        if isinstance(inst, JSONResponse):
            return inst
        inst.events = list(body.get("events") or [])
        return JSONResponse(inst.__dict__)

    @app.get("/_control/instances/{name}")
    async def get_instance(name: str) -> Response:
        inst = instance_or_404(name)
        if isinstance(inst, JSONResponse):
            return inst
        return JSONResponse(inst.__dict__)

    @app.get("/_control/webhooks")
    async def webhooks() -> list[dict[str, Any]]:
        return state.webhook_results

    async def _inst(body: dict[str, Any]) -> Instance:
        return state.instances[body["instance"]]

    @app.post("/_control/state")
    async def set_state(body: dict[str, Any]) -> dict[str, Any]:
        inst = await _inst(body)
        inst.state = body["state"]
        inst.owner = body.get("owner", inst.owner)  # another phone scanning the QR code
        data = {"instance": inst.name, "state": inst.state, "statusReason": 200}
        if inst.state == "open":
            inst.paired = True
            data.update(wuid=f"{inst.owner}@s.whatsapp.net", profileName="Loja Fake")
        if body.get("post") is False:  # its CONNECTION_UPDATE lost on the way
            return {"status_code": None, "posted": False}
        return await post_webhook(inst, "CONNECTION_UPDATE", data)

    @app.post("/_control/qrcode")
    async def new_qrcode(body: dict[str, Any]) -> dict[str, Any]:
        inst = await _inst(body)
        inst.qr_count += 1
        qr = {"instance": inst.name, "pairingCode": None, "code": f"2@fake-{inst.qr_count}", "base64": QR_PNG}
        return await post_webhook(inst, "QRCODE_UPDATED", {"qrcode": qr})

    def quoting(message: dict[str, Any], message_type: str, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        context = {
            "stanzaId": body["quoted_key_id"],
            "participant": f"{body['phone']}@s.whatsapp.net",
            "quotedMessage": {"conversation": body.get("quoted_text", "")},
        }
        if message_type == "conversation":  # a plain text cannot carry context: WhatsApp sends an extended one
            return {"extendedTextMessage": {"text": message["conversation"], "contextInfo": context}}, (
                "extendedTextMessage"
            )
        return {**message, message_type: {**message[message_type], "contextInfo": context}}, message_type

    def wrapped(message: dict[str, Any], message_type: str, wrap: str | list[str]) -> tuple[dict[str, Any], str]:
        """The content inside Baileys' wrappers, outermost first (`ephemeralMessage`: a chat with
        disappearing messages on; `viewOnceMessageV2`: view once), as Evolution v2 posts it: not
        unwrapped, `messageType` naming the outermost wrapper, no inline base64 (Evolution inlines
        top-level media only). In a disappearing-messages chat WhatsApp sends a text as an
        extended one and every part carries the chat's timer (`contextInfo.expiration`)."""
        wrappers = [wrap] if isinstance(wrap, str) else list(wrap)
        message = {k: v for k, v in message.items() if k != "base64"}
        if "ephemeralMessage" in wrappers:
            if message_type == "conversation":
                message_type = "extendedTextMessage"
                message = {message_type: {"text": message["conversation"]}}
            part = message[message_type]
            message = {message_type: {**part, "contextInfo": {**part.get("contextInfo", {}), "expiration": 604800}}}
        for wrapper in reversed(wrappers):
            message = {wrapper: {"message": message}}
        return {"messageContextInfo": {"messageSecret": "c2VjcmV0"}, **message}, wrappers[0]

    @app.post("/_control/inbound")
    async def inbound(body: dict[str, Any]) -> dict[str, Any]:
        inst = await _inst(body)
        key_id = body.get("key_id") or _key_id()
        key = {"remoteJid": f"{body['phone']}@s.whatsapp.net", "fromMe": bool(body.get("from_me")), "id": key_id}
        if body.get("lid"):  # a chat WhatsApp names by the person's LID; the number beside it only when given
            key = {**key, "remoteJid": f"{body['lid']}@lid", "addressingMode": "lid"}
            if body.get("phone"):
                key["remoteJidAlt"] = f"{body['phone']}@s.whatsapp.net"
        message: dict[str, Any]
        if body.get("media"):
            # {type: image|audio|video|document|sticker, base64, mimetype, fileName?, seconds?, ptt?,
            #  inline?}: registered for the media endpoint; `inline` also sends it in the webhook.
            media = body["media"]
            state.media[key_id] = {**media, "size": len(base64.b64decode(media["base64"]))}
            message_type = f"{media['type']}Message"
            part: dict[str, Any] = {
                "url": "https://mmg.whatsapp.net/x.enc",
                "mimetype": media["mimetype"],
                "fileLength": str(state.media[key_id]["size"]),
                "fileSha256": base64.b64encode(hashlib.sha256(base64.b64decode(media["base64"])).digest()).decode(),
            }
            # WhatsApp's key for the encrypted file: a Uint8Array, which Evolution's JSON carries as
            # an object of byte values; a fetch given the content must pass it on unchanged.
            media_key = hashlib.sha256(f"mediaKey:{key_id}".encode()).digest()
            state.media[key_id]["media_key"] = media_key
            part["mediaKey"] = {str(i): b for i, b in enumerate(media_key)}
            for field_name in ("fileName", "seconds", "ptt", "width", "height"):
                if field_name in media:
                    part[field_name] = media[field_name]
            if body.get("text"):
                part["caption"] = body["text"]
            message = {message_type: part}
            if media.get("inline"):
                message["base64"] = media["base64"]
        elif body.get("image"):
            message = {
                "imageMessage": {
                    "url": "https://mmg.whatsapp.net/x.enc",
                    "mimetype": "image/jpeg",
                    "caption": body.get("text", ""),
                }
            }
            message_type = "imageMessage"
        else:
            message = {"conversation": body.get("text", "")}
            message_type = "conversation"
        if body.get("quoted_key_id"):  # the client replies quoting an earlier message (Baileys' contextInfo)
            message, message_type = quoting(message, message_type, body)
        if body.get("wrap"):
            message, message_type = wrapped(message, message_type, body["wrap"])
        if body.get("media"):  # kept as Evolution saves it (wrapped, as received), for a fetch by key alone
            state.media[key_id]["message"] = {k: v for k, v in message.items() if k != "base64"}
        data = {
            "key": key,
            "pushName": body.get("push_name", "Cliente Fake"),
            "message": message,
            "messageType": message_type,
            "messageTimestamp": int(datetime.now(UTC).timestamp()),
            "instanceId": inst.instance_id,
            "source": "android",
        }
        if body.get("at") is not None:  # received at this time (epoch seconds) instead of now
            data["messageTimestamp"] = int(body["at"])
        state.stored.setdefault(inst.name, []).append(data)
        if body.get("deliver") is False:  # its webhook lost (IAZE was down past Evolution's retries)
            return {"delivered": False, "key_id": key_id}
        result = await post_webhook(inst, "MESSAGES_UPSERT", data)
        return {**result, "key_id": key_id}

    @app.post("/_control/receipt")
    async def receipt(body: dict[str, Any]) -> dict[str, Any]:
        inst = await _inst(body)
        data = {
            "messageId": str(uuid.uuid4()),
            "keyId": body["key_id"],
            "remoteJid": f"{body.get('phone', '5500000000')}@s.whatsapp.net",
            "fromMe": True,
            "participant": None,
            "status": body["status"],
            "instanceId": inst.instance_id,
        }
        return await post_webhook(inst, "MESSAGES_UPDATE", data)

    @app.post("/_control/post")
    async def raw_post(body: dict[str, Any]) -> dict[str, Any]:
        inst = await _inst(body)
        if "raw" in body:
            return await post_webhook(inst, body.get("event", "MESSAGES_UPSERT"), None, raw=body["raw"], as_set=False)
        return await post_webhook(inst, body["event"], body.get("data"), as_set=False)

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(args.api_key), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
