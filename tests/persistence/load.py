"""A bounded async load generator that remembers every write the API acknowledged (2xx), and the
checks that run after a crash: every acknowledged write is stored, no ticket contradicts its events."""

import asyncio
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from tests.factories import Tenant, unique, unique_phone


@dataclass
class Acks:
    clients: set[str] = field(default_factory=set)
    tickets: set[str] = field(default_factory=set)
    messages: set[str] = field(default_factory=set)
    assumed: dict[str, str] = field(default_factory=dict)  # ticket -> agent that won
    finalized: set[str] = field(default_factory=set)
    requests: int = 0  # acknowledged requests in total
    failures: int = 0  # connection errors and non-2xx (not acknowledged: no promise)

    def ok(self, r: httpx.Response) -> bool:
        if 200 <= r.status_code < 300:
            self.requests += 1
            return True
        self.failures += 1
        return False


async def _one_cycle(http: httpx.AsyncClient, tenant: Tenant, acks: Acks, rnd: random.Random) -> None:
    r = await http.post(
        "/api/v1/clients", json={"name": unique("Cliente "), "phone": unique_phone()}, headers=tenant.headers
    )
    if not acks.ok(r):
        return
    client_id = r.json()["id"]
    acks.clients.add(client_id)
    r = await http.post(
        "/api/v1/tickets",
        json={"client_id": client_id, "department_id": tenant.departments[0]["id"], "message": "preciso de ajuda"},
        headers=tenant.headers,
    )
    if not acks.ok(r):
        return
    ticket_id = r.json()["id"]
    acks.tickets.add(ticket_id)
    # Two agents race for the ticket now and then: exactly one may win.
    racers = rnd.sample(tenant.agents, 2 if rnd.random() < 0.3 else 1)
    results = await asyncio.gather(
        *(http.post(f"/api/v1/tickets/{ticket_id}/assume", headers=a["headers"]) for a in racers),
        return_exceptions=True,
    )
    winner = None
    for agent, res in zip(racers, results, strict=True):
        if isinstance(res, httpx.Response) and acks.ok(res):
            assert winner is None, f"two agents won the assume of {ticket_id}"
            winner = agent
            acks.assumed[ticket_id] = agent["id"]
        elif isinstance(res, BaseException):
            acks.failures += 1
    if winner is None:
        return
    for i in range(rnd.randint(1, 3)):
        # Notes: these tickets have no WhatsApp connection, where replies are refused.
        r = await http.post(
            f"/api/v1/tickets/{ticket_id}/notes", json={"body": f"resposta {i}"}, headers=winner["headers"]
        )
        if not acks.ok(r):
            return
        acks.messages.add(r.json()["id"])
    if rnd.random() < 0.4:
        r = await http.post(f"/api/v1/tickets/{ticket_id}/finalize", headers=winner["headers"])
        if acks.ok(r):
            acks.finalized.add(ticket_id)


async def run(base_url: str, tenant: Tenant, acks: Acks, stop: asyncio.Event, *, workers: int, seed: int) -> None:
    """Keeps `workers` cycles in flight until `stop` is set; errors are counted, never raised."""

    async def worker(n: int) -> None:
        rnd = random.Random(seed * 100 + n)
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            while not stop.is_set():
                try:
                    await _one_cycle(http, tenant, acks, rnd)
                except httpx.HTTPError:
                    acks.failures += 1
                    await asyncio.sleep(0.05)

    await asyncio.gather(*(worker(n) for n in range(workers)))


@dataclass
class Report:
    missing: list[str] = field(default_factory=list)
    contradictions: list[str] = field(default_factory=list)


async def verify(
    mongo: AsyncMongoClient[dict[str, Any]],
    db_name: str,
    acks: Acks,
    http: httpx.AsyncClient,
    headers: dict[str, str],
) -> Report:
    """After restart. `http` is a client of the restarted backend (its reads heal projections)."""
    db = mongo[db_name]
    report = Report()

    async def present(collection: str, ids: set[str]) -> set[str]:
        found: set[str] = set()
        for doc in await db[collection].find({"_id": {"$in": sorted(ids)}}, {"_id": 1}).to_list(length=None):
            found.add(doc["_id"])
        return found

    for collection, ids in (("users", acks.clients), ("tickets", acks.tickets), ("messages", acks.messages)):
        if ids:
            report.missing += [f"{collection}:{i}" for i in sorted(ids - await present(collection, ids))]

    events: dict[str, list[dict[str, Any]]] = {}
    for ev in await db.ticket_events.find({}).to_list(length=None):
        events.setdefault(ev["ticket_id"], []).append(ev)
    for ticket_id, agent_id in acks.assumed.items():
        if not any(e["type"] == "assumed" and e["actor_id"] == agent_id for e in events.get(ticket_id, [])):
            report.missing.append(f"assume:{ticket_id}")

    for ticket in await db.tickets.find({}).to_list(length=None):
        tid = ticket["_id"]
        chain = sorted(events.get(tid, []), key=lambda e: e["version"])
        if [e["version"] for e in chain] != list(range(1, len(chain) + 1)):
            report.contradictions.append(f"{tid}: versions not contiguous")
            continue
        if ticket["version"] < len(chain):
            # A crash between event and projection: the next read rolls it forward.
            r = await http.get(f"/api/v1/tickets/{tid}", headers=headers)
            if r.status_code == 200:
                ticket = await db.tickets.find_one({"_id": tid}) or ticket
        last = chain[-1] if chain else None
        if last is None or ticket["version"] != last["version"]:
            report.contradictions.append(f"{tid}: projection v{ticket['version']} vs log v{len(chain)}")
            continue
        for prev, ev in itertools.pairwise(chain):
            if ev["from_status"] != prev["to_status"]:
                report.contradictions.append(
                    f"{tid}: v{ev['version']} from {ev['from_status']} after {prev['to_status']}"
                )
            if prev["to_status"] == "finalizado":
                report.contradictions.append(f"{tid}: {ev['type']} after finalizado")
            if ev["type"] == "assumed" and ev["from_status"] != "espera":
                report.contradictions.append(f"{tid}: assumed from {ev['from_status']}")
        if sum(e["type"] == "assumed" for e in chain) > 1 + sum(e.get("to_status") == "espera" for e in chain[1:]):
            report.contradictions.append(f"{tid}: two assumed events in one chain")
        for k in ("status", "agent_id", "department_id"):
            if ticket.get(k) != last["state"].get(k):
                report.contradictions.append(f"{tid}: {k}={ticket.get(k)!r} but log says {last['state'].get(k)!r}")
        status = ticket["status"]
        if status == "atendendo" and not ticket.get("agent_id"):
            report.contradictions.append(f"{tid}: atendendo without agent")
        if status == "espera" and ticket.get("agent_id"):
            report.contradictions.append(f"{tid}: espera with agent")
        if status == "finalizado" and not ticket.get("finalized_at"):
            report.contradictions.append(f"{tid}: finalizado without finalized_at")
        if tid in acks.finalized and status != "finalizado":
            report.contradictions.append(f"{tid}: acknowledged finalize but ticket is {status}")
    return report
