"""`/tickets/counts`: the counters (backend/tickets/counters.py) against the count_documents path
they replaced, in the same run, on the same data, at 1k and 100k tickets.

    python -m bench.counts_bench --sizes 1000,100000 --out docs/BENCHMARKS.md

Not a test: nothing asserts a speed. Per size it starts from an empty database on its own
FerretDB, bulk-inserts tickets spread over --tenants tenants (most finalized, as in a real
helpdesk) with insert_many, writes each tenant's counters totals as a compaction would leave
them, then moves COMPACT_EVERY - 1 tickets of the measured tenant through real events and
deltas (`counters.record`), so every new-path read walks the longest tail writers leave behind.
It checks both paths give the same numbers, then samples each path for a reseller and for an
agent of the measured tenant and prints p50/p99.
"""

import argparse
import asyncio
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from backend.audit import repository as events
from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.core.db import Database, durable_database, make_client
from backend.core.foldlog import Totals
from backend.core.ids import new_id
from backend.core.tenancy import Actor
from backend.devtools import ferretdb
from backend.gates import connect_domains
from backend.tickets import counters
from backend.tickets import service as tickets
from backend.tickets.models import STATE_FIELDS, TicketEvent, TicketState
from bench.stats import Summary

SECTION = "## Ticket counts (`bench/counts_bench.py`)"
DEPARTMENTS = 3
AGENTS = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.counts_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,100000", help="comma-separated ticket counts, one database each")
    p.add_argument("--tenants", type=int, default=20)
    p.add_argument("--chunk", type=int, default=5000, help="tickets per insert_many")
    p.add_argument("--new-samples", type=int, default=300)
    p.add_argument("--old-samples", type=int, default=30, help="fewer: each is a scan")
    p.add_argument("--old-seconds", type=float, default=120.0, help="stop sampling the old path after this long")
    p.add_argument("--out", type=Path, help="markdown file whose counts section is (re)written")
    p.add_argument("--mongo-url", default="", help="use this server instead of starting a FerretDB")
    return p.parse_args(argv)


def _status(rng: random.Random) -> str:
    roll = rng.random()
    return "espera" if roll < 0.05 else "atendendo" if roll < 0.10 else "finalizado"


def _ticket(tenant: str, depts: list[str], agents: list[str], n: int, rng: random.Random) -> dict[str, Any]:
    at = utcnow() - timedelta(minutes=n)
    status = _status(rng)
    agent = rng.choice(agents) if status != "espera" else None
    return {
        "_id": new_id(),
        "reseller_id": tenant,
        "number": n,
        "status": status,
        "client_id": new_id(),
        "client_name": f"Cliente {n}",
        "client_phone": f"55119{n:08d}",
        "department_id": rng.choice(depts),
        "agent_id": agent,
        "agent_name": "Agente" if agent else None,
        "finalized_at": at if status == "finalizado" else None,
        "finalized_by": agent if status == "finalizado" else None,
        "channel": "api",
        "open_slot": 0,
        "version": 1,
        "created_at": at,
        "updated_at": at,
        "last_message_at": at,
        "last_message_preview": "oi",
        "last_message_direction": "in",
    }


def _event(ticket: dict[str, Any], version: int, type_: str) -> dict[str, Any]:
    return {
        "_id": events.event_id(ticket["_id"], version),
        "ticket_id": ticket["_id"],
        "reseller_id": ticket["reseller_id"],
        "version": version,
        "type": type_,
        "actor_id": None,
        "actor_role": None,
        "from_status": None,
        "to_status": ticket["status"],
        "state": {k: ticket.get(k) for k in STATE_FIELDS},
        "at": ticket["updated_at"],
        "data": {},
    }


async def load(db: Database, size: int, n_tenants: int, chunk: int) -> tuple[Actor, Actor, float]:
    """Returns (reseller, agent) of the measured tenant and the load time in seconds."""
    rng = random.Random(size)
    started = time.perf_counter()
    tenants = [new_id() for _ in range(n_tenants)]
    await db["resellers"].insert_many([{"_id": t, "name": f"Revenda {i}"} for i, t in enumerate(tenants)])
    layout = {t: ([new_id() for _ in range(DEPARTMENTS)], [new_id() for _ in range(AGENTS)]) for t in tenants}
    totals: dict[str, Counter[str]] = {t: Counter() for t in tenants}
    measured_espera: list[dict[str, Any]] = []
    for start in range(0, size, chunk):
        docs = []
        for n in range(start, min(size, start + chunk)):
            tenant = tenants[n % n_tenants]
            doc = _ticket(tenant, *layout[tenant], n, rng)
            if tenant == tenants[0] and len(measured_espera) < counters.COMPACT_EVERY and doc["status"] != "espera":
                # The measured tenant's first tickets wait in espera, to be assumed for the tail below.
                doc.update(status="espera", agent_id=None, agent_name=None, finalized_at=None, finalized_by=None)
            docs.append(doc)
            totals[tenant].update(counters.contribution(TicketState.model_construct(**doc)))
            if tenant == tenants[0] and doc["status"] == "espera" and len(measured_espera) < counters.COMPACT_EVERY:
                measured_espera.append(doc)
        await db["tickets"].insert_many(docs, ordered=False)
        await db[events.COLLECTION].insert_many([_event(d, 1, "created") for d in docs], ordered=False)
    for tenant in tenants:  # what compaction leaves: every ticket folded, watermark at the log's head
        await counters.COUNTS.write_totals(db, tenant, "", Totals(0, dict(totals[tenant]), {"complete": True}))
    depts, agents = layout[tenants[0]]
    # The longest tail a read meets: COMPACT_EVERY - 1 real assumes past the watermark.
    for doc in measured_espera[: counters.COMPACT_EVERY - 1]:
        before = TicketState.model_construct(**doc)
        moved = {**doc, "status": "atendendo", "agent_id": agents[0], "version": 2, "updated_at": utcnow()}
        event = TicketEvent.trusted(_event(moved, 2, "assumed"))
        await events.insert(db, event)
        await counters.record(db, event, previous_state=before, check=False)
        changes = {k: moved[k] for k in ("status", "agent_id", "version", "updated_at")}
        await db["tickets"].update_one({"_id": doc["_id"]}, {"$set": changes})
    reseller = Actor(id=new_id(), role="reseller", name="Dona", reseller_id=tenants[0])
    agent = Actor(id=agents[0], role="agent", name="Ana", reseller_id=tenants[0], department_ids=tuple(depts[:2]))
    return reseller, agent, time.perf_counter() - started


async def sample(call: Callable[[], Awaitable[Any]], *, n: int, seconds: float) -> Summary:
    await call()  # warm-up
    taken: list[float] = []
    started = time.perf_counter()
    while len(taken) < n and (not taken or time.perf_counter() - started < seconds):
        t = time.perf_counter()
        await call()
        taken.append(time.perf_counter() - t)
    return Summary.of(taken)


async def run_size(db: Database, size: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    reseller, agent, load_s = await load(db, size, args.tenants, args.chunk)
    print(f"{size} tickets loaded in {load_s:.1f} s")
    rows = []
    for actor in (reseller, agent):
        new = await tickets.counts(db, actor, department_id=None)
        old = await tickets.recount(db, actor, department_id=None)
        assert new == old, (actor.role, new, old)  # not a speed: both paths must agree
        s_new = await sample(lambda a=actor: tickets.counts(db, a, department_id=None), n=args.new_samples, seconds=60)
        s_old = await sample(
            lambda a=actor: tickets.recount(db, a, department_id=None), n=args.old_samples, seconds=args.old_seconds
        )
        rows.append({"size": size, "actor": actor.role, "counts": new.model_dump(), "new": s_new, "old": s_old})
        print(size, actor.role, new.model_dump(), "new", s_new.as_dict(), "old", s_old.as_dict())
    return rows


def render(rows: list[dict[str, Any]], load: float) -> str:
    lines = [
        SECTION,
        "",
        "Issue 17 item 12. `GET /tickets/counts` now reads the tenant's counters (one totals document",
        "plus the deltas past its watermark, all by `_id`) instead of count_documents over the tickets.",
        f"Both paths in the same run, same data (FerretDB v1.24.2, 2 shared cores, load average ~{load:.0f});",
        "20 tenants, 90% of tickets finalized; the measured tenant has the longest tail writers leave",
        f"({counters.COMPACT_EVERY - 1} deltas past the totals). Both paths returned the same numbers.",
        "",
        "    .venv/bin/python -m bench.counts_bench --sizes 1000,100000 --out docs/BENCHMARKS.md",
        "",
        "| tickets | who | new p50 | new p99 (n) | old count_documents p50 | old p99 (n) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        new, old = r["new"], r["old"]
        lines.append(
            f"| {r['size']:,} | {r['actor']} | {new.p50_ms:.1f} ms | {new.p99_ms:.1f} ms ({new.n}) "
            f"| {old.p50_ms:.1f} ms | {old.p99_ms:.1f} ms ({old.n}) |"
        )
    lines += [
        "",
        "The new path's cost depends on the tail (at most ~2 x COMPACT_EVERY + 2 reads by `_id`), not on",
        "the number of tickets; the old one scanned every ticket of every tenant on FerretDB.",
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    doc = path.read_text() if path.exists() else ""
    if SECTION in doc:
        head, rest = doc.split(SECTION, 1)
        nxt = rest.find("\n## ")
        doc = head + text + (rest[nxt + 1 :] if nxt != -1 else "")
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    path.write_text(doc)


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="counts-bench-"))
    proc = None
    url = args.mongo_url
    if not url:
        port = ferretdb.free_port()
        proc = ferretdb.start(f"127.0.0.1:{port}", work / "data", log_path=work / "ferretdb.log")
        url = f"mongodb://127.0.0.1:{port}/"
    try:
        rows: list[dict[str, Any]] = []
        stamp = time.strftime("%Y%m%d_%H%M%S")
        for size in [int(s) for s in args.sizes.split(",") if s.strip()]:
            settings = Settings(MONGO_URL=url, MONGO_DB=f"counts_{stamp}_{size}", ENV="test")
            client = make_client(settings)
            connect_domains(durable_database(client, settings.MONGO_DB))  # what a process's gate does
            try:
                rows += await run_size(durable_database(client, settings.MONGO_DB), size, args)
            finally:
                await client.close()
        if args.out:
            write_section(args.out, render(rows, os.getloadavg()[0]))
    finally:
        if proc is not None:
            ferretdb.stop(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
