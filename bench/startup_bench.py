"""Start-up gate benchmark: how long the gate every process passes at start (backend/gates.py)
takes on an empty database and with many messages stored, against the same-run baseline of the
previous way of counting the ledger's collections (`count_documents({})`, a full read of each).

    .venv/bin/python -m bench.startup_bench --sizes 0,100000,1000000

Starts its own FerretDB (unless MONGO_URL is set), and per size: bulk-inserts that many message
documents (realistic shape, ~400 bytes) with one ticket per 20 messages, runs the gate once to
build the indexes on that data (a first start; not measured), then measures, `--repeat` times
each (median reported):
  - ledger count: guard.count(), the counts the deploy ledger takes at every start;
  - gate: the whole start-up gate (ledger guard, migrations, ledger record, indexes, first admin);
and once each, as the baseline: the old count (count_documents over the same collections) and the
gate with the old count patched in. Nothing asserts a speed; results go to stdout and
bench/results/startup-<time>.json.
"""

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from backend.app import API_STEPS
from backend.core import startup
from backend.core.clock import utcnow
from backend.core.conditional import collection_size
from backend.core.config import Settings
from backend.core.db import Database, durable_database, make_client
from backend.core.logging import configure_logging
from backend.devtools import ferretdb
from backend.gates import STEPS as GATE_STEPS
from backend.ledger import guard, model

ROOT = Path(__file__).resolve().parents[1]
BATCH = 2000


def _message(n: int, start: Any) -> dict[str, Any]:
    ticket = n // 20
    return {
        "_id": f"m{n:09d}",
        "reseller_id": f"r{ticket % 20:03d}",
        "ticket_id": f"t{ticket:08d}",
        "client_id": f"c{ticket:08d}",
        "direction": "in" if n % 2 else "out",
        "author_id": None if n % 2 else "agent-1",
        "body": f"mensagem {n} de um cliente perguntando sobre o pedido e a entrega prevista para amanhã",
        "status": "received" if n % 2 else "sent",
        "provider_message_id": f"3EB0{n:016X}",
        "connection_id": "conn-1",
        "created_at": start + timedelta(milliseconds=n),
        "seq": n,
    }


def _ticket(t: int, start: Any) -> dict[str, Any]:
    return {
        "_id": f"t{t:08d}",
        "reseller_id": f"r{t % 20:03d}",
        "number": t + 1,
        "status": "finalizado",
        "client_id": f"c{t:08d}",
        "department_id": "d1",
        "agent_id": "agent-1",
        "version": 3,
        "created_at": start,
        "last_message_at": start,
        "finalized_at": start,
    }


async def _seed(db: Database, messages: int) -> float:
    start = utcnow() - timedelta(days=30)
    began = time.perf_counter()
    for lo in range(0, messages, BATCH):
        hi = min(messages, lo + BATCH)
        await db.messages.insert_many([_message(n, start) for n in range(lo, hi)], ordered=False)
        # BATCH is a multiple of 20: each batch holds whole tickets' messages.
        await db.tickets.insert_many([_ticket(t, start) for t in range(lo // 20, (hi + 19) // 20)], ordered=False)
        if lo and lo % 100_000 == 0:
            print(f"  seeded {lo:,} messages ({time.perf_counter() - began:.0f} s)", flush=True)
    return time.perf_counter() - began


async def _old_count(db: Database, baseline: Any = None) -> dict[str, int]:
    return {name: await db[name].count_documents({}) for name in model.GUARDED}


async def _timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = await fn()
    return time.perf_counter() - began, result


_step_times: dict[str, list[float]] = {}
_timed_steps: list[startup.Step] = []


def _time_steps() -> None:
    """Wraps every start-up step of an API process to record how long each takes."""

    def timed(name: str, fn: startup.Check) -> startup.Check:
        async def run(db: Database, settings: Settings) -> None:
            began = time.perf_counter()
            try:
                await fn(db, settings)
            finally:
                _step_times.setdefault(name, []).append(time.perf_counter() - began)

        return run

    _timed_steps[:] = [(name, timed(name, fn)) for name, fn in (*GATE_STEPS, *API_STEPS)]


async def _gate(db: Database, settings: Settings) -> None:
    state = await startup.run(db, settings, _timed_steps or (*GATE_STEPS, *API_STEPS))
    if not state.ready:
        raise RuntimeError(f"gate refused: {state.errors}")


async def _measure(db: Database, settings: Settings, repeat: int, baseline: str) -> dict[str, Any]:
    await _gate(db, settings)  # first start on this data: builds the indexes
    counts = [(await _timed(lambda: guard.count(db)))[0] for _ in range(repeat)]
    _step_times.clear()
    gates = [(await _timed(lambda: _gate(db, settings)))[0] for _ in range(repeat)]
    steps = {name: statistics.median(times) for name, times in _step_times.items()}
    old_count_s, exact, old_gate_s = None, None, None
    if baseline in ("count", "gate"):
        old_count_s, exact = await _timed(lambda: _old_count(db))
    new_counts = await guard.count(db)
    if baseline == "gate":
        original = guard.count
        guard.count = _old_count  # type: ignore[assignment]
        try:
            old_gate_s, _ = await _timed(lambda: _gate(db, settings))
        finally:
            guard.count = original  # type: ignore[assignment]
    return {
        "steps_s": steps,
        "ledger_count_s": statistics.median(counts),
        "ledger_count_all_s": counts,
        "gate_s": statistics.median(gates),
        "gate_all_s": gates,
        "old_count_s": old_count_s,
        "old_gate_s": old_gate_s,
        "counts_match": new_counts == exact if exact is not None else None,
        "counts": new_counts,
    }


async def main(args: argparse.Namespace) -> None:
    configure_logging("WARNING", False)
    _time_steps()
    sizes = [int(s) for s in args.sizes.split(",")]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    prefix = args.db_prefix or f"startup_{stamp.replace('-', '_')}"
    work = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="startup-bench-"))
    proc = None
    url = os.environ.get("MONGO_URL", "")
    if not url:
        port = ferretdb.free_port()
        proc = ferretdb.start(f"127.0.0.1:{port}", work / "data", log_path=work / "ferretdb.log")
        url = f"mongodb://127.0.0.1:{port}/"
    results: list[dict[str, Any]] = []
    try:
        for size in sizes:
            name = f"{prefix}_{size}"
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                ENV="test",
                MONGO_URL=url,
                MONGO_DB=name,
                JWT_SECRET="bench-" + "x" * 40,
                ADMIN_EMAIL="bench-admin@example.com",
                ADMIN_PASSWORD="bench-admin-pass-1",
                LEDGER_FILE=str(work / f"ledger-{size}.jsonl"),
                LOG_LEVEL="WARNING",
            )
            client = make_client(settings)
            db = durable_database(client, name)
            try:
                present = await collection_size(db, "messages") if size else 0
                seed_s = None
                if present < size:  # a database left by an earlier run (--data-dir, --db-prefix) is reused
                    print(f"size {size:,}: seeding", flush=True)
                    seed_s = await _seed(db, size)
                print(f"size {size:,}: measuring", flush=True)
                row = {"messages": size, "seed_s": seed_s, **await _measure(db, settings, args.repeat, args.baseline)}
            finally:
                await client.close()
            results.append(row)
            ms = {k: (row[k] or 0) * 1000 for k in ("ledger_count_s", "old_count_s", "gate_s", "old_gate_s")}
            print(
                f"size {size:>9,}: ledger count {ms['ledger_count_s']:8.1f} ms (old {ms['old_count_s']:9.1f} ms)"
                f"  gate {ms['gate_s']:8.1f} ms (old {ms['old_gate_s']:9.1f} ms)"
                f"  counts match: {row['counts_match']}",
                flush=True,
            )
            print("    steps: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in row["steps_s"].items()), flush=True)
    finally:
        if proc is not None:
            ferretdb.stop(proc)
    out = ROOT / "bench" / "results" / f"startup-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"url_kind": "ferretdb" if proc else "given", "results": results}, indent=2))
    print(f"results: {out} (FerretDB data left in {work})")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="0,100000,1000000", help="messages per database, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="measurements per size (median reported)")
    parser.add_argument(
        "--baseline",
        choices=("gate", "count", "none"),
        default="gate",
        help="old way measured too: the count and the whole gate with it (default), the count only, or nothing",
    )
    parser.add_argument("--data-dir", help="FerretDB data directory to use (and keep); default: a new temporary one")
    parser.add_argument("--db-prefix", help="database names <prefix>_<size>; an existing one with the data is reused")
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
