"""Realtime fan-out benchmark: many agents connected to several backend processes while events
are published at a steady rate; delivery latency, CPU, and a loss/duplicate/order check.

    .venv/bin/python -m bench.realtime_bench --agents 1000 --instances 2 --rate 200 --seconds 60 \
        --out docs/BENCHMARKS.md

Starts its own FerretDB (unless MONGO_URL is set), a redis-server on loopback and `--instances`
backend processes (uvicorn, REDIS_URL set). Seeds `--tenants` resellers, each with two departments
and its share of the agents (half per department; documents inserted with the driver in the
services' shape, tokens signed with the servers' key). `--client-procs` client processes open one
websocket per agent, each department's agents spread over the instances. A producer process (this one) publishes
`ticket.created` events through `backend.realtime.feed.publish` with the Redis bus — the exact
call a backend process makes after a domain write — for a random (tenant, department) at `--rate`
per second. Every event reaches the agents of that department only (audience rule), i.e.
agents / tenants / 2 sockets per event.

Latency = client receive time − the event's `at` (stamped by `publish` just before the feed
write), so it includes the durable feed insert, Redis, the hub, and the socket. Loss: after the
run every socket must hold exactly the seqs published for its tenant and department, in order,
once. CPU: utime+stime of every process during the publishing window, in % of one core.
"""

import argparse
import asyncio
import gc
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
JWT_SECRET = "bench-secret-" + "z" * 40
MARK_START = "<!-- realtime_bench:start -->"
MARK_END = "<!-- realtime_bench:end -->"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _instance_of(index: int, instances: int) -> int:
    return (index // 2) % instances


def _free_port() -> int:
    from backend.devtools import ferretdb

    return ferretdb.free_port()


# -- client process ------------------------------------------------------------------------------


async def _client_main(spec_path: str, out_path: str) -> None:
    from websockets.asyncio.client import connect

    spec = json.loads(Path(spec_path).read_text())  # noqa: ASYNC240 - once, before any socket
    # Flat arrays, not lists of tuples: a growing heap of small objects makes the garbage
    # collector pause this process (delaying its reads) more and more as the run goes on.
    seqs: list[array[int]] = [array("q") for _ in spec["sockets"]]
    lats: list[array[float]] = [array("d") for _ in spec["sockets"]]
    closes: list[int | None] = [None] * len(spec["sockets"])
    stop = asyncio.Event()
    connected = 0
    sem = asyncio.Semaphore(50)

    sockets: list[Any] = [None] * len(spec["sockets"])

    async def run(i: int, url: str) -> None:
        nonlocal connected
        async with sem:
            ws = sockets[i] = await connect(url, open_timeout=60, max_size=2**22)
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello", hello
        connected += 1
        try:
            # Plain iteration (no per-frame timeout task): this process must cost little next
            # to the servers it measures. It ends when the socket closes, by us at "stop".
            async for raw in ws:
                now = time.time()
                frame = json.loads(raw)
                if frame["type"] == "event":
                    at = datetime.fromisoformat(frame["at"]).timestamp()
                    seqs[i].append(frame["seq"])
                    lats[i].append((now - at) * 1000)
            if not stop.is_set():
                closes[i] = ws.close_code if ws.close_code is not None else -1
        except Exception as exc:  # a close (e.g. 4408) is a result, not a crash
            code = getattr(getattr(exc, "rcvd", None), "code", None)
            closes[i] = code if code is not None else -1
        finally:
            await ws.close()

    tasks = [asyncio.create_task(run(i, url)) for i, url in enumerate(spec["sockets"])]
    while connected < len(tasks):
        failed = [t for t in tasks if t.done() and t.exception() is not None]
        if failed:
            raise RuntimeError(f"connect failed: {failed[0].exception()}")
        await asyncio.sleep(0.1)
    gc.freeze()  # the sockets and their state live for the whole run
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "stop"
    stop.set()
    await asyncio.gather(*(ws.close() for ws in sockets if ws is not None), return_exceptions=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    received = [list(zip(s, la, strict=True)) for s, la in zip(seqs, lats, strict=True)]
    Path(out_path).write_text(json.dumps({"received": received, "closes": closes}))  # noqa: ASYNC240


def _fsync_probe_main(path: str, seconds: str, out_path: str) -> None:
    """Appends 4 KiB and fsyncs it every 50 ms, as a database commit does, for `seconds`; writes
    (epoch, ms) per fsync. Shows whether the disk itself stalled when deliveries did."""
    samples: list[tuple[float, float]] = []
    end = time.time() + float(seconds)
    block = b"x" * 4096
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        while time.time() < end:
            t0 = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            samples.append((time.time(), (time.perf_counter() - t0) * 1000))
            if len(samples) % 1000 == 0:
                os.ftruncate(fd, 0)
            time.sleep(0.05)
    finally:
        os.close(fd)
    Path(out_path).write_text(json.dumps(samples))


# -- orchestration -------------------------------------------------------------------------------


def _start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not installed (apt-get install redis-server)")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        out = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, check=False)
        if out.stdout.strip() == "PONG":
            return proc, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def _start_backend(mongo_url: str, db_name: str, redis_url: str, workdir: Path, args: Any) -> tuple[Any, int]:
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ENV": "test",
        "MONGO_URL": mongo_url,
        "MONGO_DB": db_name,
        "JWT_SECRET": JWT_SECRET,
        "LEDGER_FILE": "",  # a fresh store every run: the checkout's ledger file would refuse it
        "REDIS_URL": redis_url,
        "REALTIME_HEARTBEAT_SECONDS": "25",
        "LOG_LEVEL": "WARNING",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": "1",
        "ADMIN_EMAIL": "",
    }
    log = (workdir / f"backend-{port}.log").open("wb")
    proc = subprocess.Popen(  # started the way a deployment starts it
        [sys.executable, "-m", "backend"], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + getattr(args, "ready_seconds", 120)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"backend exited; see {workdir}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("backend not ready")


@dataclass
class Stack:
    """What both realtime benches run against (this one and bench/realtime_scale.py): FerretDB
    (unless MONGO_URL is set), redis-server and `--instances` backends on one fresh database.
    Everything in `procs` is stopped on leaving `stack`, so a bench adds its own processes there."""

    workdir: Path
    data_dir: Path  # FerretDB's files (and realtime_bench's fsync probe beside them)
    procs: list[subprocess.Popen[Any]]
    mongo_url: str
    redis_url: str
    db_name: str
    backends: list[tuple[Any, int]]
    services: dict[str, int]  # redis's pid, and FerretDB's when started here


@contextmanager
def stack(args: Any, *, name: str, ferretdb_dir: Path | None = None) -> Iterator[Stack]:
    """`name` prefixes the work directory and the database; `ferretdb_dir`: a parent directory for
    FerretDB's files (a tmpfs, say) instead of the work directory."""
    from backend.devtools import ferretdb

    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=ROOT / "var" if (ROOT / "var").exists() else None))
    data_dir = Path(tempfile.mkdtemp(prefix="ferretdb-", dir=ferretdb_dir)) if ferretdb_dir else workdir / "ferretdb"
    procs: list[subprocess.Popen[Any]] = []
    fdb = None
    try:
        services: dict[str, int] = {}
        mongo_url = os.environ.get("MONGO_URL", "")
        if not mongo_url:
            ferretdb.ensure_built()
            port = _free_port()
            fdb = ferretdb.start(f"127.0.0.1:{port}", data_dir, log_path=workdir / "ferretdb.log")
            mongo_url = f"mongodb://127.0.0.1:{port}/"
        redis_proc, redis_url = _start_redis(workdir)
        procs.append(redis_proc)
        services["redis"] = redis_proc.pid
        if fdb is not None:
            services["ferretdb"] = fdb.pid
        db_name = f"bench_{name.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        backends = [_start_backend(mongo_url, db_name, redis_url, workdir, args) for _ in range(args.instances)]
        procs.extend(p for p, _ in backends)
        yield Stack(workdir, data_dir, procs, mongo_url, redis_url, db_name, backends, services)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if fdb is not None:
            ferretdb.stop(fdb)
        shutil.rmtree(workdir, ignore_errors=True)
        if ferretdb_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


def save_result(result: dict[str, Any], stem: str) -> None:
    """bench/results/<stem>-<UTC time>.json, and the same on stdout."""
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (results_dir / f"{stem}-{stamp}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


async def _seed(
    db: Any, tenants: int, agents: int, departments: int = 2
) -> tuple[list[dict[str, Any]], dict[tuple[str, str], Any]]:
    """Resellers, departments and agents in the shape the services store them. Agents alternate
    departments; `rank` is an agent's place within its department."""
    from backend.core.clock import utcnow
    from backend.core.ids import new_id

    now = utcnow()
    people: list[dict[str, Any]] = []
    tickets: dict[tuple[str, str], Any] = {}
    for t in range(tenants):
        rid = new_id()
        await db.resellers.insert_one({"_id": rid, "name": f"Bench {t}", "active": True, "created_at": now})
        depts = [new_id() for _ in range(departments)]
        for d in depts:
            await db.departments.insert_one(
                {"_id": d, "reseller_id": rid, "name": f"D{d[-4:]}", "active": True, "created_at": now}
            )
            tickets[(rid, d)] = {
                "_id": new_id(), "reseller_id": rid, "number": 1, "status": "espera", "client_id": new_id(),
                "client_name": "Cliente", "client_phone": "5511999999999", "department_id": d, "agent_id": None,
                "channel": "api", "version": 1, "last_message_at": now, "created_at": now, "updated_at": now,
            }  # fmt: skip
        share = agents // tenants + (1 if t < agents % tenants else 0)
        for a in range(share):
            uid = new_id()
            dept = depts[a % departments]
            await db.users.insert_one(
                {"_id": uid, "role": "agent", "name": f"Agente {t}-{a}", "email": f"{uid}@bench.local",
                 "reseller_id": rid, "department_ids": [dept], "active": True, "created_at": now}
            )  # fmt: skip
            people.append({"id": uid, "reseller_id": rid, "department_id": dept, "rank": a // departments})
    return people, tickets


PerEvent = dict[tuple[str, int], float]  # (tenant, seq) -> value


async def _produce(
    db: Any, redis_url: str, tickets: dict[tuple[str, str], Any], rate: float, seconds: float, max_inflight: int
) -> tuple[dict[tuple[str, str], list[int]], PerEvent, PerEvent, list[float], float, int]:
    from backend.realtime import feed
    from backend.realtime.bus import RedisBus

    bus = RedisBus(redis_url, "iaze:realtime", None)
    feed.register_sink(db, bus)
    published: dict[tuple[str, str], list[int]] = {k: [] for k in tickets}
    stored_ms: dict[tuple[str, int], float] = {}
    stored_at: dict[tuple[str, int], float] = {}  # seconds into the run
    durations: list[float] = []
    keys = list(tickets)
    rng = random.Random(7)
    inflight: set[asyncio.Task[None]] = set()
    max_lag = 0.0
    failures = 0

    gate = asyncio.Semaphore(max_inflight)  # like a backend's bounded request concurrency

    async def one(k: tuple[str, str]) -> None:
        nonlocal failures
        async with gate:
            t0 = time.perf_counter()
            rec = await feed.publish(db, reseller_id=k[0], type_="ticket.created", ticket=tickets[k])
            durations.append((time.perf_counter() - t0) * 1000)
        if rec is None:
            failures += 1  # logged and counted by publish; not in the feed, so not expected anywhere
            return
        published[k].append(int(rec["seq"]))
        # When the record was durable, relative to its `at`: splits a delivery's latency into
        # "storing" and "after stored" (Redis, hub, socket, client).
        stored_ms[(k[0], int(rec["seq"]))] = (time.time() - rec["at"].timestamp()) * 1000
        stored_at[(k[0], int(rec["seq"]))] = time.perf_counter() - start

    start = time.perf_counter()
    total = int(rate * seconds)
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            max_lag = max(max_lag, -delay)
        task = asyncio.create_task(one(rng.choice(keys)))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
        if i % int(rate * 5) == 0:
            print(f"  t={time.perf_counter() - start:.0f}s scheduled {i} done {len(durations)}", file=sys.stderr)
    while inflight:
        print(f"  waiting for {len(inflight)} publishes in flight", file=sys.stderr)
        await asyncio.wait(list(inflight), timeout=5)
    feed.unregister_sink(db, bus)
    await bus.close()
    for k in published:
        published[k].sort()
    return published, stored_ms, stored_at, durations, max_lag, failures


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    from backend.core.config import Settings
    from backend.core.db import durable_database, make_client
    from backend.core.security import create_access_token

    with stack(args, name="realtime-bench", ferretdb_dir=args.ferretdb_dir) as st:
        workdir, data_dir, procs, backends = st.workdir, st.data_dir, st.procs, st.backends
        mongo_url, redis_url, db_name = st.mongo_url, st.redis_url, st.db_name
        settings = Settings(_env_file=None, ENV="test", MONGO_URL=mongo_url, MONGO_DB=db_name, JWT_SECRET=JWT_SECRET)
        client = make_client(settings)
        db = durable_database(client, db_name)
        people, tickets = await _seed(db, args.tenants, args.agents)

        # One socket per agent, split over client processes (every other one). Agents alternate
        # departments, so pairs alternate instances: each department's agents sit on every
        # instance (as behind a load balancer) and each event crosses Redis to all of them.
        urls = []
        for i, person in enumerate(people):
            token, _ = create_access_token(settings, user_id=person["id"], role="agent")
            urls.append(f"ws://127.0.0.1:{backends[_instance_of(i, len(backends))][1]}/api/v1/ws?token={token}")
        clients = []
        for c in range(args.client_procs):
            spec = workdir / f"client-{c}.json"
            spec.write_text(json.dumps({"sockets": urls[c :: args.client_procs]}))
            out = workdir / f"client-{c}.out.json"
            proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
                [sys.executable, "-m", "bench.realtime_bench", "--client", str(spec), str(out)],
                cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            clients.append((proc, out, c))
            procs.append(proc)
        t_connect = time.perf_counter()
        for proc, _, _ in clients:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"client process failed to connect: {line!r}")
        connect_seconds = time.perf_counter() - t_connect
        print(f"{len(urls)} sockets connected in {connect_seconds:.1f}s; publishing", file=sys.stderr)

        watched = {f"backend-{i + 1}": p.pid for i, (p, _) in enumerate(backends)} | st.services
        watched["producer"] = os.getpid()
        for proc, _, c in clients:
            watched[f"clients-{c + 1}"] = proc.pid
        gc.freeze()  # the producer's set-up (seed data, clients) lives for the run: keep GC off it
        probe_out = workdir / "fsync-probe.json"
        probe = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
            [sys.executable, "-m", "bench.realtime_bench", "--fsync-probe", str(data_dir / "fsync-probe.dat"),
             str(args.seconds + 1), str(probe_out)],
            cwd=ROOT,
        )  # fmt: skip
        procs.append(probe)
        cpu0 = {k: _cpu_seconds(pid) for k, pid in watched.items()}
        epoch0 = time.time()
        w0 = time.perf_counter()
        published, stored_ms, stored_at, durations, max_lag, failures = await _produce(
            db, redis_url, tickets, args.rate, args.seconds, args.max_inflight
        )
        wall = time.perf_counter() - w0
        cpu1 = {k: _cpu_seconds(pid) for k, pid in watched.items()}
        await asyncio.sleep(args.drain)
        for proc, _, _ in clients:
            assert proc.stdin is not None
            proc.stdin.write("stop\n")
            proc.stdin.flush()
        for proc, _, _ in clients:
            proc.wait(timeout=120)

        probe.wait(timeout=60)
        fsyncs = json.loads(probe_out.read_text())
        fsync_ms = [ms for _, ms in fsyncs]

        # Check: every socket got exactly its department's seqs, in order, once.
        by_url = {u: i for i, u in enumerate(urls)}
        latencies: list[float] = []
        after_store: list[float] = []
        worst: list[tuple[float, float, int, int]] = []  # (latency ms, seconds into the run, seq, instance)
        # Per event, its slowest delivery on each instance: a stall before Redis (producer, feed
        # insert) delays an event everywhere; one in a backend or client process only there.
        per_event: dict[tuple[str, int], list[float]] = {}
        lost = dupes = out_of_order = extra = 0
        closes: dict[str, int] = {}
        for _proc, out, c in clients:
            body = json.loads(out.read_text())
            for j, (got, close) in enumerate(zip(body["received"], body["closes"], strict=True)):
                index = by_url[urls[c :: args.client_procs][j]]
                person = people[index]
                instance = _instance_of(index, args.instances)
                expected = published[(person["reseller_id"], person["department_id"])]
                seqs = [s for s, _ in got]
                latencies.extend(ms for _, ms in got)
                after_store.extend(ms - stored_ms.get((person["reseller_id"], s), 0.0) for s, ms in got)
                worst.extend((ms, stored_at.get((person["reseller_id"], s), -1.0), s, instance) for s, ms in got)
                for s, ms in got:
                    slot = per_event.setdefault((person["reseller_id"], s), [0.0] * args.instances)
                    slot[instance] = max(slot[instance], ms)
                dupes += len(seqs) - len(set(seqs))
                out_of_order += sum(1 for a, b in itertools.pairwise(seqs) if b <= a)
                lost += len(set(expected) - set(seqs))
                extra += len(set(seqs) - set(expected))
                if close is not None:
                    closes[str(close)] = closes.get(str(close), 0) + 1
        events = sum(len(v) for v in published.values())
        result = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "sockets": len(urls),
            "connect_seconds": round(connect_seconds, 1),
            "events": events,
            "publish_wall_seconds": round(wall, 1),
            "events_per_second": round(events / wall, 1),
            "producer_max_lag_ms": round(max_lag * 1000, 1),
            "publish_failures": failures,
            "publish_ms": {"p50": round(_pct(durations, 0.5), 1), "p99": round(_pct(durations, 0.99), 1)},
            "stored_after_at_ms": {
                "p50": round(_pct(list(stored_ms.values()), 0.5), 1),
                "p99": round(_pct(list(stored_ms.values()), 0.99), 1),
            },
            "delivered_after_stored_ms": {
                "p50": round(_pct(after_store, 0.5), 1),
                "p99": round(_pct(after_store, 0.99), 1),
            },
            "deliveries": len(latencies),
            # When the slowest deliveries happened: a burst at one moment (a stall somewhere)
            # reads differently from a tail spread over the whole run.
            "slowest": [
                {"ms": round(ms, 1), "stored_at_s": round(t, 2), "instance": inst + 1}
                for ms, t, _, inst in sorted(worst, reverse=True)[:200:20]
            ],
            # Events with a delivery over 50 ms: late on every instance (a shared cause: producer,
            # feed insert, Redis) or on some only (that backend, or its client process).
            "events_over_50ms": {
                "everywhere": sum(1 for v in per_event.values() if min(v) > 50),
                **{
                    f"only_instance_{i + 1}": sum(1 for v in per_event.values() if v[i] > 50 and min(v) <= 50)
                    for i in range(args.instances)
                },
            },
            # Per 5 s of the run, how many events had a delivery over 50 ms: a periodic cause
            # (a herd of timers, a collection, a checkpoint) shows as a repeating bucket.
            "events_over_50ms_by_5s": _late_by_bucket(per_event, stored_at, 50.0, 5.0),
            "latency_ms": {
                "p50": round(_pct(latencies, 0.5), 1),
                "p90": round(_pct(latencies, 0.9), 1),
                "p99": round(_pct(latencies, 0.99), 1),
                "max": round(max(latencies), 1) if latencies else 0.0,
            },
            "lost": lost,
            "duplicates": dupes,
            "out_of_order": out_of_order,
            "not_in_audience": extra,
            "closed_sockets": closes,
            # The disk under FerretDB, probed alongside (4 KiB append + fsync every 50 ms): a
            # delivery stall at the moment of a disk stall is the disk's, not the code's.
            "disk_fsync_ms": {
                "p50": round(_pct(fsync_ms, 0.5), 1),
                "p99": round(_pct(fsync_ms, 0.99), 1),
                "max": round(max(fsync_ms), 1) if fsync_ms else 0.0,
                "over_100ms_at_s": [round(t - epoch0, 1) for t, ms in fsyncs if ms > 100],
            },
            "cpu_percent_of_one_core": {k: round((cpu1[k] - cpu0[k]) / wall * 100, 1) for k in watched},
            "machine": {"cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
        }
        await client.close()
        return result


def _late_by_bucket(
    per_event: dict[tuple[str, int], list[float]], stored_at: PerEvent, over_ms: float, width_s: float
) -> dict[str, int]:
    counts: dict[int, int] = {}
    for key, slowest in per_event.items():
        if max(slowest) > over_ms and key in stored_at:
            bucket = int(stored_at[key] // width_s)
            counts[bucket] = counts.get(bucket, 0) + 1
    return {f"{b * width_s:g}s": n for b, n in sorted(counts.items())}


def _render(r: dict[str, Any]) -> str:
    a = r["args"]
    cpu = ", ".join(f"{k} {v}%" for k, v in r["cpu_percent_of_one_core"].items())
    lat = r["latency_ms"]
    return "\n".join(
        [
            MARK_START,
            f"Run {r['when']}: `python -m bench.realtime_bench --agents {a['agents']} --tenants {a['tenants']} "
            f"--instances {a['instances']} --rate {a['rate']} --seconds {a['seconds']} "
            f"--client-procs {a['client_procs']}` on {r['machine']['cpus']} cores "
            f"(load average at the end {', '.join(f'{x:.1f}' for x in r['machine']['loadavg_at_end'])}).",
            "",
            "| measure | value |",
            "|---|---|",
            f"| sockets (agents) | {r['sockets']} over {a['instances']} instances, "
            f"connected in {r['connect_seconds']} s |",
            f"| events published | {r['events']} in {r['publish_wall_seconds']} s ({r['events_per_second']}/s) |",
            f"| feed write (`publish`) p50 / p99 | {r['publish_ms']['p50']} / {r['publish_ms']['p99']} ms "
            f"({r['publish_failures']} failed after retries) |",
            f"| stored after `at` p50 / p99 | {r['stored_after_at_ms']['p50']} / {r['stored_after_at_ms']['p99']} ms |",
            f"| delivered after stored p50 / p99 | {r['delivered_after_stored_ms']['p50']} / "
            f"{r['delivered_after_stored_ms']['p99']} ms |",
            f"| deliveries (event × socket) | {r['deliveries']} |",
            f"| **delivery latency p50 / p90 / p99 / max** | **{lat['p50']} / {lat['p90']} / {lat['p99']} / "
            f"{lat['max']} ms** |",
            f"| lost / duplicated / out of order / outside audience | {r['lost']} / {r['duplicates']} / "
            f"{r['out_of_order']} / {r['not_in_audience']} |",
            f"| sockets closed during the run | {r['closed_sockets'] or 'none'} |",
            f"| disk fsync probe p50 / p99 / max (stalls over 100 ms at s) | {r['disk_fsync_ms']['p50']} / "
            f"{r['disk_fsync_ms']['p99']} / {r['disk_fsync_ms']['max']} ms "
            f"({', '.join(map(str, r['disk_fsync_ms']['over_100ms_at_s'])) or 'none'}) |",
            f"| CPU during publishing (% of one core) | {cpu} |",
            MARK_END,
        ]
    )


def _write_section(path: Path, block: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        tail = rest.split(MARK_END, 1)[1]
        text = head + block + tail
    else:
        heading = "### Latest run" if "## Realtime" in text else "## Realtime (`bench/realtime_bench.py`)"
        text = text.rstrip("\n") + f"\n\n{heading}\n\n" + block + "\n"
    path.write_text(text)


def _run(main: Any) -> Any:
    """uvloop when installed (uvicorn[standard] brings it, and the servers run on it): the
    producer and the client processes share the 2 cores with what they measure."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def main() -> None:
    # A SIGTERM (e.g. from `timeout`) still runs the clean-up that stops every started process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if len(sys.argv) == 5 and sys.argv[1] == "--fsync-probe":
        _fsync_probe_main(sys.argv[2], sys.argv[3], sys.argv[4])
        return
    if len(sys.argv) == 4 and sys.argv[1] == "--client":
        _run(_client_main(sys.argv[2], sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--max-inflight", type=int, default=32, help="concurrent publishes at most")
    parser.add_argument("--drain", type=float, default=5.0, help="seconds to wait for the last deliveries")
    parser.add_argument(
        "--ferretdb-dir", type=Path, help="parent directory for FerretDB's files (default: the work dir, on disk)"
    )
    parser.add_argument("--out", type=Path, help="markdown file whose realtime_bench section is rewritten")
    args = parser.parse_args()
    result = _run(_main(args))
    save_result(result, "realtime")
    if args.out:
        _write_section(args.out, _render(result))


if __name__ == "__main__":
    main()
