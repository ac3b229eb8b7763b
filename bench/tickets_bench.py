"""Ticket benchmark: seed 1k/10k/100k tickets into a fresh FerretDB and time the hot queries.

    python -m bench.tickets_bench --sizes 1000,10000,100000 --out docs/BENCHMARKS.md

Not a test: nothing here asserts a speed. It prints and records p50/p99 per operation and size,
so growth is visible. On FerretDB only `_id` equality is pushed down; everything else scans.
"""

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymongo
import pymongo.errors
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.core.db import Database, durable_database, make_client
from backend.core.indexes import declared, ensure_indexes
from backend.devtools import ferretdb
from backend.gates import connect_domains
from bench import report
from bench.ops import Op, build_ops, deep_cursor, describe_index
from bench.seed import COLLECTIONS, Generator, Tenant
from bench.shapecheck import verify
from bench.stats import Summary
from bench.storecheck import id_indexes
from bench.tenants import copy_tenant_documents, create_tenants

ROOT = Path(__file__).resolve().parents[1]
FERRETDB_VERSION = "FerretDB v1.24.2, SQLite backend (tools/ferretdb)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.tickets_bench",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--sizes", default="1000,10000,100000", help="comma-separated ticket counts, one database each")
    p.add_argument("--tenants", type=int, default=20, help="resellers the tickets are spread over")
    p.add_argument("--departments", type=int, default=3, help="departments (each with one agent) per reseller")
    p.add_argument("--messages", type=int, default=10, help="messages per ticket (>= 2)")
    p.add_argument("--page-size", type=int, default=50, help="limit of every list call")
    p.add_argument("--deep-page", type=int, default=20, help="page number measured deep in the inbox cursor")
    p.add_argument("--chunk", type=int, default=5000, help="tickets generated per insert_many round")
    p.add_argument("--budget", type=float, default=15.0, help="seconds of sampling per operation and size")
    p.add_argument("--min-samples", type=int, default=3, help="samples per operation even past the budget")
    p.add_argument("--max-samples", type=int, default=300, help="stop sampling an operation after this many")
    p.add_argument(
        "--max-op-seconds",
        type=float,
        default=45.0,
        help="start no further sample of an operation after this long, even below --min-samples (>= 1 is kept)",
    )
    p.add_argument("--ops", default="", help="comma-separated operations, or 'all' (default: all but counts)")
    p.add_argument("--seed", type=int, default=1, help="random seed for picking samples")
    p.add_argument("--out", type=Path, help="markdown file whose tickets section is (re)written")
    p.add_argument("--json", type=Path, help="raw results file (default bench/results/tickets-<time>.json)")
    p.add_argument("--mongo-url", default="", help="use this server instead of starting a FerretDB (never dropped)")
    p.add_argument("--data-dir", type=Path, help="FerretDB data dir (default var/bench/ferretdb-<time>)")
    p.add_argument("--keep-data", action="store_true", help="keep the FerretDB data dir afterwards")
    p.add_argument("--from-json", type=Path, help="measure nothing: render this raw results file into --out")
    args = p.parse_args(argv)
    try:
        args.size_list = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        p.error("--sizes must be integers separated by commas")
    if not args.size_list or min(args.size_list) < args.tenants:
        p.error("every size must be at least --tenants")
    if args.messages < 2:
        p.error("--messages must be at least 2")
    return args


def machine() -> dict[str, Any]:
    cpu = "unknown"
    mem_gb = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "python": platform.python_version(),
        "pymongo": pymongo.version,
        "store": FERRETDB_VERSION,
    }


async def measure(op: Op, args: argparse.Namespace, progress: Progress, label: str) -> Summary:
    """One warm-up call (kept as a sample when it took >= 1 s: a full scan is not a cache effect),
    then samples until --budget is spent and --min-samples are taken, but none started after
    --max-op-seconds, so a 100k-document scan costs one or two samples, not ten minutes."""
    cap = args.max_samples if op.max_samples is None else min(args.max_samples, op.max_samples)
    task = progress.add_task(f"{label} {op.name}", total=cap)
    started = time.perf_counter()
    await op.call(0)
    first = time.perf_counter() - started
    samples = [first] if first >= 1.0 else []
    i = 1
    while len(samples) < cap:
        elapsed = time.perf_counter() - started
        if samples and elapsed >= args.max_op_seconds:
            break
        if len(samples) >= args.min_samples and elapsed >= args.budget:
            break
        t = time.perf_counter()
        await op.call(i)
        samples.append(time.perf_counter() - t)
        i += 1
        progress.update(task, completed=len(samples))
    progress.update(task, total=len(samples), completed=len(samples))
    return Summary.of(samples)


async def check_indexes(db: Database) -> list[dict[str, Any]]:
    """Every declared index exists with its declared key order (ensure_indexes ran at start-up)."""
    rows = []
    for spec in declared():
        info = await db[spec.collection].index_information()
        found = info.get(spec.name)
        keys = [(k, int(d)) for k, d in found["key"]] if found else None
        rows.append(
            {
                "collection": spec.collection,
                "name": spec.name,
                "keys": [list(k) for k in spec.keys],
                "unique": spec.unique,
                "present_with_key_order": keys == [tuple(k) for k in spec.keys],
                "purpose": spec.purpose,
            }
        )
    return rows


async def store_plans(db: Database, tenant: Tenant) -> dict[str, Any]:
    """How the store runs the filters the measured calls send (FerretDB's explain says whether the
    filter was pushed down to SQLite and how SQLite executed it). Only `{_id}` equality is pushed
    down; the other probes are the shapes that still make FerretDB decode the whole collection."""
    plans: dict[str, Any] = {}
    probes: dict[str, tuple[str, dict[str, Any], dict[str, Any] | None]] = {
        "natural_keys {_id} (a miss)": ("natural_keys", {"_id": "client-phone:none:0"}, None),
        "users {_id}": ("users", {"_id": tenant.owner.id}, None),
        "tickets {_id, version} (apply_state)": ("tickets", {"_id": "0" * 24, "version": 1}, None),
        "messages {ticket_id} sort created_at, _id (message list)": (
            "messages",
            {"ticket_id": "0" * 24},
            {"created_at": 1, "_id": 1},
        ),
        "tickets {reseller_id, status} sort last_message_at, _id (inbox)": (
            "tickets",
            {"reseller_id": tenant.reseller_id, "status": "espera"},
            {"last_message_at": -1, "_id": -1},
        ),
    }
    for label, (collection, query, sort) in probes.items():
        find: dict[str, Any] = {"find": collection, "filter": query}
        if sort:
            find["sort"] = sort
        try:
            out = await db.command("explain", find)
        except pymongo.errors.PyMongoError as exc:
            plans[label] = {"error": str(exc)}
            continue
        plans[label] = {
            k: out.get(k) for k in ("filterPushdown", "sortPushdown", "limitPushdown", "queryPlanner") if k in out
        }
    return plans


async def seed(db: Database, gen: Generator, chunk: int, progress: Progress, label: str) -> dict[str, Any]:
    """Builds chunk k+1 in a thread while chunk k is being inserted."""
    task = progress.add_task(f"{label} seeding", total=gen.n)
    counts = dict.fromkeys((*COLLECTIONS, "counters"), 0)
    chunks = list(gen.chunks(chunk))
    started = time.perf_counter()
    building = asyncio.create_task(asyncio.to_thread(gen.build, *chunks[0]))
    for k, (_, g1) in enumerate(chunks):
        docs = await building
        if k + 1 < len(chunks):
            building = asyncio.create_task(asyncio.to_thread(gen.build, *chunks[k + 1]))
        for name in COLLECTIONS:
            if docs[name]:
                result = await db[name].insert_many(docs[name], ordered=False)
                counts[name] += len(result.inserted_ids)
        progress.update(task, completed=g1)
    counters = gen.counters()
    await db["counters"].insert_many(counters)
    counts["counters"] = len(counters)
    seconds = time.perf_counter() - started
    total = sum(counts.values())
    return {"documents": counts, "total": total, "seconds": round(seconds, 2), "docs_per_s": round(total / seconds)}


def save(results: dict[str, Any], args: argparse.Namespace) -> None:
    """Written after every size, so a run cut short still leaves what it measured."""
    results["load_after"] = os.getloadavg()
    json_path: Path = args.json
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if args.out:
        report.write_section(args.out, report.render(results))


async def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    proc = None
    data_dir = args.data_dir or ROOT / "var" / "bench" / f"ferretdb-{stamp}"
    if args.mongo_url:
        url = args.mongo_url
    else:
        port = ferretdb.free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        console.print(f"starting FerretDB on 127.0.0.1:{port}, data in {data_dir}")
        proc = ferretdb.start(f"127.0.0.1:{port}", data_dir, log_path=data_dir / "ferretdb.log")
        url = f"mongodb://127.0.0.1:{port}/"
    settings = Settings(_env_file=None, ENV="test", MONGO_URL=url, LOG_JSON=True)
    client = make_client(settings)
    prefix = f"bench_{stamp.replace('-', '_')}"
    connect_domains(durable_database(client, prefix))  # what a process's gate does: finalize's hook
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.tickets_bench " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "load_before": os.getloadavg(),
        "config": {
            k: v for k, v in vars(args).items() if k not in ("out", "json", "data_dir", "size_list", "mongo_url")
        },
        "sizes": [],
    }
    wanted = {s for s in args.ops.split(",") if s}
    t_all = time.perf_counter()
    try:
        progress = Progress(
            TextColumn("{task.description:<34}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        with progress:
            shape_db = durable_database(client, f"{prefix}_shape")
            await ensure_indexes(shape_db)
            variants = await verify(shape_db)
            progress.console.print(f"shape check: seeded documents match the service path ({len(variants)} variants)")
            results["shape_check"] = variants

            template = durable_database(client, f"{prefix}_tenants")
            t = time.perf_counter()
            tenants: list[Tenant] = await create_tenants(
                template, args.tenants, departments_per_tenant=args.departments, tag=stamp
            )
            progress.console.print(
                f"{args.tenants} resellers x {args.departments} departments/agents via services "
                f"in {time.perf_counter() - t:.1f}s"
            )

            for size in args.size_list:
                label = f"[{size:>6} tickets]"
                load_at_start = os.getloadavg()[0]
                db = durable_database(client, f"{prefix}_{size}")
                await copy_tenant_documents(template, db)
                gen = Generator(
                    tenants,
                    tickets=size,
                    messages_per_ticket=args.messages,
                    end=utcnow() - timedelta(hours=1),
                    span=timedelta(days=90),
                )
                seeded = await seed(db, gen, args.chunk, progress, label)
                # Indexes after the bulk load (faster to build than to maintain row by row); the
                # end state is the application's, where start-up runs ensure_indexes.
                t = time.perf_counter()
                await ensure_indexes(db)
                seeded["index_seconds"] = round(time.perf_counter() - t, 2)
                progress.console.print(
                    f"{label} seeded {seeded['total']:,} documents in {seeded['seconds']}s "
                    f"({seeded['docs_per_s']:,} docs/s), indexes built in {seeded['index_seconds']}s"
                )
                indexes = await check_indexes(db)
                id_index = None
                if proc is not None:
                    id_index = await asyncio.to_thread(id_indexes, data_dir, db.name)
                    missing = id_index["missing"]
                    progress.console.print(
                        f"{label} FerretDB `_id` look-up uses an index on {len(id_index['collections']) - len(missing)}"
                        f"/{len(id_index['collections'])} collection tables"
                        + (f" — MISSING on {', '.join(missing)}" if missing else "")
                    )
                plans = await store_plans(db, tenants[0])
                rng = random.Random(args.seed)
                deep = deep_cursor(gen.pools, page=args.deep_page, limit=args.page_size)
                ops = build_ops(
                    db,
                    tenants,
                    gen.pools,
                    rng=rng,
                    page_size=args.page_size,
                    messages_per_ticket=args.messages,
                    deep=deep,
                )
                measured = []
                for op in ops:
                    if (wanted and op.name not in wanted and "all" not in wanted) or (op.optional and not wanted):
                        continue
                    summary = await measure(op, args, progress, label)
                    measured.append(
                        {
                            "op": op.name,
                            "route": op.route,
                            "note": op.note,
                            "indexes": [describe_index(ix) for ix in op.indexes],
                            **summary.as_dict(),
                        }
                    )
                    progress.console.print(
                        f"{label} {op.name:<17} n={summary.n:<4} p50={summary.p50_ms:9.1f} ms "
                        f"p99={summary.p99_ms:9.1f} ms"
                    )
                results["sizes"].append(
                    {
                        "tickets": size,
                        "database": db.name,
                        "seed": seeded,
                        "deep_page": deep[1],
                        "pools": {
                            "tickets": len(gen.pools.tickets),
                            "espera": len(gen.pools.espera),
                            "clients": len(gen.pools.phones),
                        },
                        "indexes": indexes,
                        "id_index": id_index,
                        "store_plans": plans,
                        "load_1min": [load_at_start, os.getloadavg()[0]],
                        "ops": measured,
                    }
                )
                results["total_seconds"] = round(time.perf_counter() - t_all, 1)
                save(results, args)
    finally:
        await client.close()
        if proc is not None:
            ferretdb.stop(proc)
            if not args.keep_data and args.data_dir is None:
                shutil.rmtree(data_dir, ignore_errors=True)  # our own scratch store, not application data
    results["load_after"] = os.getloadavg()
    results["total_seconds"] = round(time.perf_counter() - t_all, 1)
    return results


def print_summary(results: dict[str, Any], console: Console) -> None:
    table = Table(title="p50 / p99 ms (n samples)")
    table.add_column("operation")
    for size in results["sizes"]:
        table.add_column(f"{size['tickets']:,} tickets", justify="right")
    names = [op["op"] for op in results["sizes"][0]["ops"]] if results["sizes"] else []
    for name in names:
        cells = []
        for size in results["sizes"]:
            op = next(o for o in size["ops"] if o["op"] == name)
            cells.append(f"{op['p50_ms']:.1f} / {op['p99_ms']:.1f} ({op['n']})")
        table.add_row(name, *cells)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        if not args.out:
            raise SystemExit("--from-json needs --out")
        report.write_section(args.out, report.render(json.loads(args.from_json.read_text())))
        return 0
    if args.json is None:
        args.json = ROOT / "bench" / "results" / f"tickets-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.json"
    console = Console(stderr=True)
    results = asyncio.run(run(args, console))
    save(results, args)
    print_summary(results, console)
    console.print(f"raw results: {args.json}")
    if args.out:
        console.print(f"wrote the tickets section of {args.out}")
    console.print(f"total {results['total_seconds']}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
