"""What deploy_check asks outside the database: the WhatsApp provider and the backend's readiness.

Every connection's state comes from the provider (Evolution's GET /instance/connectionState/{name},
the endpoint the backend's adapter uses), never from our `whatsapp_connections` copy, which only
follows the provider's webhooks. The phone number comes from GET /instance/fetchInstances
(the instance's `ownerJid`).

How a lost session ("a new QR code requested") shows from the provider: Evolution moves an instance
to `connecting` when Baileys emits a QR code for it, and an instance whose stored session is valid
goes back to `open` by itself a few seconds after Evolution starts. So a connection that was `open`
in the snapshot and, after the wait, is
  - `connecting`: Evolution is waiting for a new QR code to be scanned (session lost);
  - `close` (or `refused`, Evolution's answer once the QR code limit is reached): disconnected or
    logged out, it needs a new QR code too;
  - unknown to the provider (404): the instance itself is gone (Evolution's database or instances
    volume lost);
  - `open` but paired with a different number: it was paired again, i.e. a new QR code was scanned;
  - not answered: the provider is down or unreachable.
Each of these is a problem, named with the connection, its instance and its number. `open` with the
same number passes. The check never calls /instance/connect, which would itself ask for a QR code.
"""

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from backend.core.db import Database

OPEN = "open"
POLL_SECONDS = 2.0


@dataclass
class Seen:
    state: str  # the provider's word, or "missing" (404) / "unreachable"
    number: str | None = None
    detail: str = ""


def _digits(jid: Any) -> str | None:
    if not isinstance(jid, str) or not jid:
        return None
    user = jid.split("@", 1)[0].split(":", 1)[0]
    return user if user.isdigit() else None


class Evolution:
    def __init__(self, http: httpx.AsyncClient, base_url: str, api_key: str) -> None:
        self.http = http
        self.base = base_url.rstrip("/")
        self.headers = {"apikey": api_key}

    async def _get(self, path: str, params: dict[str, str] | None = None) -> tuple[int, Any]:
        r = await self.http.get(self.base + path, params=params, headers=self.headers)
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, None

    async def state(self, instance: str) -> Seen:
        try:
            code, body = await self._get(f"/instance/connectionState/{quote(instance, safe='')}")
        except httpx.HTTPError as exc:
            return Seen("unreachable", detail=f"{type(exc).__name__}: {exc}")
        if code == 404:
            return Seen("missing", detail="the provider does not know this instance")
        inst = body.get("instance") if isinstance(body, dict) else None
        if code >= 400 or not isinstance(inst, dict) or not inst.get("state"):
            return Seen("unreachable", detail=f"connectionState answered {code}")
        return Seen(str(inst["state"]).lower())

    async def number(self, instance: str) -> str | None:
        """The paired phone (`ownerJid`), when the provider says; None when it cannot tell."""
        try:
            code, body = await self._get("/instance/fetchInstances", {"instanceName": instance})
        except httpx.HTTPError:
            return None
        if code >= 400 or not isinstance(body, list):
            return None
        for row in body:  # v2 answers its Instance rows: {name, connectionStatus, ownerJid, ...}
            if isinstance(row, dict) and row.get("name") == instance:
                return _digits(row.get("ownerJid"))
        return None

    async def seen(self, instance: str) -> Seen:
        s = await self.state(instance)
        if s.state not in ("missing", "unreachable"):
            s.number = await self.number(instance)
        return s


async def connections(db: Database) -> list[dict[str, Any]]:
    """Every WhatsApp connection IAZE knows (a handful per reseller; read in full)."""
    fields = {"name": 1, "instance_name": 1, "reseller_id": 1, "provider": 1, "active": 1}
    return [c async for c in db.whatsapp_connections.find({}, fields).sort("_id", 1)]


async def snapshot_whatsapp(db: Database, evo: Evolution | None) -> dict[str, Any]:
    conns = await connections(db)
    if evo is None:
        return {"asked": False, "connections": len(conns), "instances": []}
    instances = []
    for c in conns:
        if c.get("provider") != "evolution":
            continue
        seen = await evo.seen(c["instance_name"])
        instances.append(
            {
                "connection_id": c["_id"],
                "name": c.get("name"),
                "instance": c["instance_name"],
                "reseller_id": c.get("reseller_id"),
                "state": seen.state,
                "number": seen.number,
            }
        )
    return {"asked": True, "connections": len(conns), "instances": instances}


def label(entry: dict[str, Any]) -> str:
    number = entry.get("number") or "número desconhecido"
    return f'WhatsApp "{entry.get("name")}" ({number}, instância {entry["instance"]})'


def problem(before: dict[str, Any], after: Seen, waited: float) -> str | None:
    number = before.get("number") or "unknown"
    who = f'WhatsApp connection "{before.get("name")}" (number {number}, instance {before["instance"]})'
    if after.state == OPEN:
        if before.get("number") and after.number and after.number != before["number"]:
            return f"{who}: open again but paired with another number ({after.number}): a new QR code was scanned"
        return None
    if after.state == "connecting":
        return (
            f"{who}: was open, still connecting after {waited:.0f}s: "
            "Evolution is asking for a new QR code (session lost)"
        )
    if after.state in ("close", "refused"):
        return f"{who}: was open, now {after.state}: disconnected, it needs a new QR code (session lost)"
    if after.state == "missing":
        return f"{who}: was open, the provider no longer has this instance (Evolution's data or instances volume lost?)"
    if after.state == "unreachable":
        return f"{who}: was open, the provider did not answer ({after.detail})"
    return f"{who}: was open, now {after.state!r}"


async def wait_open(evo: Evolution, instances: list[str], wait_seconds: float) -> tuple[dict[str, Seen], float]:
    """Polls every instance until all are open or the wait is over (a restarted Evolution needs a
    few seconds to restore its sessions); returns the last answer for each and the time waited."""
    started = time.monotonic()
    last: dict[str, Seen] = {}
    pending = list(instances)
    while True:
        for name in pending:
            last[name] = await evo.state(name)
        pending = [n for n in pending if last[n].state != OPEN]
        waited = time.monotonic() - started
        if not pending or waited >= wait_seconds:
            break
        await asyncio.sleep(min(POLL_SECONDS, max(wait_seconds - waited, 0.0)))
    for name in instances:
        if last[name].state not in ("missing", "unreachable"):
            last[name].number = await evo.number(name)
    return last, time.monotonic() - started


async def ready(http: httpx.AsyncClient, backend_url: str, wait_seconds: float) -> tuple[bool, str]:
    """GET /health/ready until 200 or the wait is over; (ready, what it answered last)."""
    started = time.monotonic()
    url = backend_url.rstrip("/") + "/health/ready"
    while True:
        try:
            r = await http.get(url)
            if r.status_code == 200:
                return True, "ready"
            said = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            said = f"{type(exc).__name__}: {exc}"
        if time.monotonic() - started >= wait_seconds:
            return False, said
        await asyncio.sleep(POLL_SECONDS)
