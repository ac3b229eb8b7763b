"""`/api/v1/ws`: the realtime socket. Protocol (frames are JSON text):

connect  /api/v1/ws?token=<JWT>&since=<last seq seen, optional>
server → {"type":"hello","seq":<tenant's latest seq>,"heartbeat":<seconds>}
         {"type":"event","seq":n,"event":...,"at":...,"ticket":...,"message":...,"connection":...}
           (and "data":{"schedule":...} on scheduled.settled)
         {"type":"resync","reason":...}  `since` is outside the replay window, the user's
                                           departments changed, or a change of the tenant was
                                           stored but not announced: refetch, then go on live
         {"type":"ping"}                   every heartbeat; the client may answer {"type":"pong"}
close    4401 bad/expired token (also when it expires while open), revoked token (password
         changed, user deactivated) or inactive user · 4403 no tenant (admin) ·
         4408 too slow (queue full): reconnect with since=<last seq> · 1001 server shutting down ·
         1013 not ready, or the tenant's feed could not start (a database error): reconnect
"""

import asyncio
import json
import random
import time
from contextlib import suppress
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from backend.auth.deps import actor_from_claims
from backend.auth.service import load_active_actor
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.errors import AppError
from backend.core.logging import get_logger
from backend.core.security import VERSION_CLAIM, decode_access_token
from backend.core.tenancy import Actor
from backend.realtime import records
from backend.realtime.audience import allows
from backend.realtime.hub import RECHECK, RESYNC, Hub, Subscriber, cancel_quietly

log = get_logger("realtime.ws")

router = APIRouter(tags=["realtime"])

UNAUTHORIZED = 4401
FORBIDDEN = 4403
TRY_AGAIN_LATER = 1013
CLOSE_TIMEOUT_SECONDS = 30.0  # a stalled client gets this long to read up to its close frame


def _frame(**fields: object) -> str:
    return json.dumps(fields, separators=(",", ":"))


def _parse_since(raw: str | None) -> int | None:
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        return -1


@router.websocket("/ws")
async def realtime_socket(websocket: WebSocket) -> None:
    app = websocket.app
    db: Database = app.state.db
    settings: Settings = app.state.settings
    hub: Hub = app.state.realtime
    # Accept first, then close: a close before accept becomes an HTTP 403 and browsers never see the code.
    await websocket.accept()
    if not app.state.startup.ready:
        await websocket.close(TRY_AGAIN_LATER, "service not ready")
        return
    try:
        claims = decode_access_token(settings, websocket.query_params.get("token", ""))
        actor = await actor_from_claims(db, claims)
    except AppError:
        await websocket.close(UNAUTHORIZED, "invalid or expired token")
        return
    if actor.is_admin or not actor.reseller_id:
        await websocket.close(FORBIDDEN, "no tenant feed for this user")
        return
    session = Session(websocket, db, settings, hub, actor, claims)
    await session.run(_parse_since(websocket.query_params.get("since")))


class Session:
    def __init__(
        self, websocket: WebSocket, db: Database, settings: Settings, hub: Hub, actor: Actor, claims: dict[str, Any]
    ) -> None:
        self.ws = websocket
        self.db = db
        self.settings = settings
        self.hub = hub
        self.actor = actor
        self.token_version: int = claims[VERSION_CLAIM]
        self.expires_at = float(claims["exp"])  # epoch seconds (PyJWT checked it is a number)
        self.heartbeat = settings.REALTIME_HEARTBEAT_SECONDS

    async def run(self, since: int | None) -> None:
        try:
            sub, head = await self.hub.attach(self.actor)
        except Exception as exc:  # the tenant's feed could not start (a database error): the hub
            # keeps no failed start, so the client's reconnect tries afresh
            log.warning("realtime feed unavailable", tenant=self.actor.reseller_id, error=str(exc))
            await self._close(TRY_AGAIN_LATER)
            return
        tasks = [
            asyncio.create_task(self._send(sub, head, since)),
            asyncio.create_task(self._receive()),
            asyncio.create_task(self._until_stopped(sub)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            code = sub.stop_code if sub.stopped.is_set() else None
            for task in done:
                if task.exception() is not None and not isinstance(task.exception(), WebSocketDisconnect):
                    log.warning("realtime socket failed", error=str(task.exception()))
            for task in tasks:
                await cancel_quietly(task)
            # The close frame goes out before the detach: a shutdown waits for the detach
            # (Hub.close_sockets) before uvicorn ends the remaining sockets with its own 1012.
            if code is not None:
                await self._close(code)
        finally:
            self.hub.detach(sub)
            for task in tasks:
                await cancel_quietly(task)

    async def _until_stopped(self, sub: Subscriber) -> None:
        """Returns once the socket is asked to stop (slow consumer, shutdown, access lost) — or
        its token expires: the token's lifetime bounds the socket's, so at `exp` it is closed
        like a bad token and the client reconnects with a fresh one (and since=). One task for
        both: every task is memory held by every idle socket."""
        with suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, self.expires_at - time.time())):
                await sub.stopped.wait()
        sub.stop(UNAUTHORIZED)  # a no-op when it was stopped for another reason

    async def _close(self, code: int) -> None:
        # A slow client may not be reading at all: bound the wait for its buffer to drain.
        with suppress(Exception):
            await asyncio.wait_for(self.ws.close(code), CLOSE_TIMEOUT_SECONDS)

    async def _send(self, sub: Subscriber, head: int, since: int | None) -> None:
        rid = self.actor.reseller_id
        assert rid is not None
        await self.ws.send_text(_frame(type="hello", seq=head, heartbeat=self.heartbeat))
        if since is not None:
            if since < 0:
                await self.ws.send_text(_frame(type="resync", reason="invalid since"))
            elif since > head:
                if await records.exists(self.db, rid, since):
                    sub.cursor = max(sub.cursor, since)  # this process is behind the client: skip what it has
                    self.hub.notice(rid, since)
                else:
                    await self.ws.send_text(_frame(type="resync", reason="since is ahead of the feed"))
            elif head - since > self.settings.REALTIME_REPLAY_MAX:
                await self.ws.send_text(_frame(type="resync", reason="gap older than the replay window"))
            else:
                async for _, frame, tenant, after, before in self.hub.replay(rid, since + 1, head):
                    if allows(self.actor, tenant, after, before):
                        await self.ws.send_text(frame)
        loop = asyncio.get_running_loop()
        # The first ping and the first periodic re-check (a user read) at a random point of their
        # interval: after a deploy or a network blip every client reconnects at once, and in
        # step they would all hit the database in the same second, every period. Access changes
        # made through the API are pushed (RECHECK); the period only covers a lost notice.
        next_ping = loop.time() + self.heartbeat * random.uniform(0.1, 1.0)
        recheck_every = self.settings.REALTIME_RECHECK_SECONDS
        next_recheck = loop.time() + recheck_every * random.uniform(0.1, 1.0)
        while True:
            try:
                # asyncio.timeout, not wait_for: no extra task per delivered frame.
                async with asyncio.timeout(max(0.0, next_ping - loop.time())):
                    entry = await sub.queue.get()
            except TimeoutError:
                await self.ws.send_text(_frame(type="ping"))
                next_ping = loop.time() + self.heartbeat
                if loop.time() >= next_recheck:
                    next_recheck = loop.time() + recheck_every
                    await self._recheck(sub)
                continue
            if entry is RECHECK:
                await self._recheck(sub)
                continue
            if entry is RESYNC:
                await self.ws.send_text(_frame(type="resync", reason="a change was not announced"))
                continue
            await self.ws.send_text(entry[1])

    async def _recheck(self, sub: Subscriber) -> None:
        """Deactivation, a moved tenant or new departments take effect on open sockets too."""
        assert self.actor.reseller_id
        try:
            fresh = await load_active_actor(self.db, self.actor.id, token_version=self.token_version)
        except AppError:
            fresh = None
        if fresh is None or fresh.reseller_id != self.actor.reseller_id:
            sub.stop(UNAUTHORIZED)
            return
        changed = (fresh.role, fresh.department_ids) != (self.actor.role, self.actor.department_ids)
        self.actor = fresh
        sub.actor = fresh
        if changed:
            # Events of the change's moment were filtered with the old departments (a change on
            # one process and a ticket on another reach the hub in either order): the client
            # refetches what it now sees, then goes on live.
            await self.ws.send_text(_frame(type="resync", reason="access changed"))

    async def _receive(self) -> None:
        # Client frames carry nothing we act on ({"type":"pong"}); reading them notices the disconnect.
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
