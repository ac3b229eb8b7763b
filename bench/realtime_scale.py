"""Realtime at scale, beside its baseline: thousands of agents' sockets over several backend
processes, a steady event rate, memory per idle socket, and a reconnect storm — and the same
clients, the same load and the same storm against a minimal Redis pub/sub → websocket fan-out
(bench/fanout_baseline.py) in the same run.

    nice -n 10 .venv/bin/python -m bench.realtime_scale --agents 5000 --tenants 50 --departments 10 \\
        --instances 2 --rate 200 --seconds 60 --storm-window 10 --storm-seconds 25

Set-up as bench/realtime_bench.py (its FerretDB, redis-server, `python -m backend` processes with
REDIS_URL, the seeded resellers/departments/agents), plus `--instances` baseline servers on the
same Redis. Then two phases, one after the other, each with fresh client processes:

1. **baseline**: the clients open one socket per agent on the baseline servers (each department's
   agents spread over the instances, as for IAZE); RSS of every server before and after
   (memory per idle socket); `--seconds` of events at `--rate`, published straight to Redis
   (frames of the same shape and size as IAZE's); then the storm (below), publishing on.
2. **iaze**: the same against the backends; events published with
   `backend.realtime.feed.publish` and the Redis bus (the call a backend makes after a write).

Every event goes to one (tenant, department): agents / tenants / departments sockets.

**Storm**: every socket is dropped at once (the client aborts its TCP connection, as a network
blip or a proxy restart does) and reconnects after a random delay in [0, `--storm-window`] s —
to IAZE with `since=<last seq it saw>` — while events keep flowing for `--storm-seconds`.
Catch-up time of a reconnect: from its connect to the moment the socket holds every event of
its audience stored before that connect (its hello when it missed nothing). The baseline has no
replay, so its storm figure is the reconnect time alone (connect → hello), and events published
while its sockets were away are not counted lost there.

Checks, per socket, over the whole phase (both connections): every event of its audience
received exactly once and in seq order (IAZE: every one; baseline: those published before the
storm and after its reconnect). Latency = receive time − the event's `at` (stamped before the
feed insert for IAZE, before the Redis publish for the baseline), over the steady window only.
"""

import argparse
import asyncio
import gc
import itertools
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.realtime_bench import (
    JWT_SECRET,
    ROOT,
    _cpu_seconds,
    _free_port,
    _pct,
    _run,
    _seed,
    save_result,
    stack,
)

Key = tuple[str, str]  # (tenant, department)


# -- client process ------------------------------------------------------------------------------


async def _client_main(spec_path: str, out_path: str) -> None:
    """One socket per url. stdin commands: "storm <window>" drops every socket and reconnects
    each after a random delay (with since= when the spec says so); "stop" ends the phase."""
    from websockets.asyncio.client import connect

    spec = json.loads(Path(spec_path).read_text())  # noqa: ASYNC240 - once, before any socket
    urls: list[str] = spec["sockets"]
    with_since: bool = spec["since"]
    n = len(urls)
    # Flat arrays: a heap of small objects would make this process's collector pause its reads.
    seqs = [array("q") for _ in urls]
    lats = [array("d") for _ in urls]
    recv = [array("d") for _ in urls]
    conns: list[list[tuple[float, float, int]]] = [[] for _ in urls]  # (connect start, hello, since)
    closes: list[int | None] = [None] * n
    position = [0] * n  # the last tenant seq this socket has everything up to
    sockets: list[Any] = [None] * n
    dropping = [False] * n
    delays = [0.0] * n
    stop = asyncio.Event()
    connected = 0
    reconnected = 0
    gate = asyncio.Semaphore(50)  # the first connects: not 2,500 SYNs at once

    async def run(i: int) -> None:
        nonlocal connected, reconnected
        first = True
        while True:
            since = position[i] if (not first and with_since) else None
            url = urls[i] + (f"&since={since}" if since is not None else "")
            if first:
                async with gate:
                    t0 = time.time()
                    ws = await connect(url, open_timeout=120, max_size=2**22)
            else:
                t0 = time.time()
                ws = await connect(url, open_timeout=120, max_size=2**22)
            sockets[i] = ws
            hello = json.loads(await ws.recv())
            assert hello["type"] == "hello", hello
            conns[i].append((t0, time.time(), -1 if since is None else since))
            if first:
                position[i] = max(position[i], int(hello["seq"]))
                connected += 1
            else:
                reconnected += 1
            first = False
            try:
                async for raw in ws:
                    now = time.time()
                    frame = json.loads(raw)
                    if frame["type"] == "event":
                        seq = frame["seq"]
                        seqs[i].append(seq)
                        recv[i].append(now)
                        lats[i].append((now - datetime.fromisoformat(frame["at"]).timestamp()) * 1000)
                        position[i] = seq
            except Exception as exc:
                if not dropping[i] and not stop.is_set():
                    code = getattr(getattr(exc, "rcvd", None), "code", None)
                    closes[i] = code if code is not None else -1
                    return
            if stop.is_set():
                return
            if not dropping[i]:
                closes[i] = ws.close_code if ws.close_code is not None else -1
                return
            dropping[i] = False
            await asyncio.sleep(delays[i])
            if stop.is_set():
                return

    tasks = [asyncio.create_task(run(i)) for i in range(n)]
    while connected < n:
        failed = [t for t in tasks if t.done() and t.exception() is not None]
        if failed:
            raise RuntimeError(f"connect failed: {failed[0].exception()}")
        await asyncio.sleep(0.1)
    gc.freeze()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    rng = random.Random(os.getpid())
    storm_at = 0.0
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "stop":
            break
        if line[0] == "storm":
            window = float(line[1])
            storm_at = time.time()
            for i in range(n):
                dropping[i] = True
                delays[i] = rng.uniform(0, window)
                transport = sockets[i].transport
                transport.abort()  # a dropped connection, not a goodbye
            print("dropped", flush=True)
    stop.set()
    await asyncio.gather(*(ws.close() for ws in sockets if ws is not None), return_exceptions=True)
    # A reconnect still under way (a loaded machine) would open a socket nobody closes: bounded.
    _, late = await asyncio.wait(tasks, timeout=30)
    for task in late:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    Path(out_path).write_text(  # noqa: ASYNC240 - once, at the end
        json.dumps(
            {
                "seqs": [s.tolist() for s in seqs],
                "lats": [la.tolist() for la in lats],
                "recv": [r.tolist() for r in recv],
                "conns": conns,
                "closes": closes,
                "storm_at": storm_at,
                "reconnected": reconnected,
            }
        )
    )


# -- producers -----------------------------------------------------------------------------------


@dataclass
class Published:
    seqs: dict[Key, list[int]] = field(default_factory=dict)
    at: dict[tuple[str, int], float] = field(default_factory=dict)  # epoch of the event's `at`
    stored: dict[tuple[str, int], float] = field(default_factory=dict)  # epoch it was durable/sent
    durations: list[float] = field(default_factory=list)
    failures: int = 0
    max_lag: float = 0.0


PublishOne = Callable[[Key], Awaitable[tuple[int, float] | None]]


async def _produce(
    keys: list[Key],
    publish_one: PublishOne,
    *,
    rate: float,
    seconds: float,
    max_inflight: int,
    at_second: dict[float, Callable[[], None]],
) -> Published:
    """Publishes at `rate` for `seconds`; calls at_second[t] once t seconds have passed."""
    out = Published(seqs={k: [] for k in keys})
    rng = random.Random(7)
    gate = asyncio.Semaphore(max_inflight)
    inflight: set[asyncio.Task[None]] = set()
    hooks = sorted(at_second.items())

    async def one(k: Key) -> None:
        async with gate:
            t0 = time.perf_counter()
            got = await publish_one(k)
            out.durations.append((time.perf_counter() - t0) * 1000)
        if got is None:
            out.failures += 1
            return
        seq, at = got
        out.seqs[k].append(seq)
        out.at[(k[0], seq)] = at
        out.stored[(k[0], seq)] = time.time()

    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            out.max_lag = max(out.max_lag, -delay)
        while hooks and time.perf_counter() - start >= hooks[0][0]:
            hooks.pop(0)[1]()
        task = asyncio.create_task(one(rng.choice(keys)))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
        if i % int(rate * 10) == 0:
            print(f"  t={time.perf_counter() - start:.0f}s published {len(out.durations)}", file=sys.stderr)
    while inflight:
        await asyncio.wait(list(inflight), timeout=5)
    for k in out.seqs:
        out.seqs[k].sort()
    return out


# -- orchestration -------------------------------------------------------------------------------


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def _start_baseline(redis_url: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    log = (workdir / f"baseline-{port}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.fanout_baseline", "--port", str(port), "--redis", redis_url],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"baseline server exited; see {workdir}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return proc, port
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("baseline server not ready")


@dataclass
class Target:
    name: str  # "baseline" or "iaze"
    servers: list[tuple[subprocess.Popen[Any], int]]
    urls: list[str]  # per person
    since: bool  # reconnects carry since=
    publish_one: PublishOne


def _instance(person: dict[str, Any], instances: int) -> int:
    # Within a department, agents alternate instances: every department sits on every instance.
    return int(person["rank"]) % instances


async def _phase(
    target: Target,
    people: list[dict[str, Any]],
    keys: list[Key],
    watched_extra: dict[str, int],
    workdir: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    print(f"[{target.name}] connecting {len(target.urls)} sockets", file=sys.stderr)
    per_server = [0] * len(target.servers)
    for person in people:
        per_server[_instance(person, len(target.servers))] += 1
    await asyncio.sleep(1)
    rss0 = [_rss_kb(p.pid) for p, _ in target.servers]
    clients = []
    for c in range(args.client_procs):
        spec = workdir / f"{target.name}-client-{c}.json"
        spec.write_text(json.dumps({"sockets": target.urls[c :: args.client_procs], "since": target.since}))
        out = workdir / f"{target.name}-client-{c}.out.json"
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once per phase, before measuring
            [sys.executable, "-m", "bench.realtime_scale", "--client", str(spec), str(out)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        clients.append((proc, out, c))
    t_connect = time.perf_counter()
    for proc, _, _ in clients:
        assert proc.stdout is not None
        if (line := proc.stdout.readline().strip()) != "ready":
            raise RuntimeError(f"client process failed to connect: {line!r}")
    connect_seconds = time.perf_counter() - t_connect
    await asyncio.sleep(args.settle)  # idle: sockets open, nothing published
    rss1 = [_rss_kb(p.pid) for p, _ in target.servers]
    print(f"[{target.name}] connected in {connect_seconds:.1f}s; RSS kB {rss0} -> {rss1}", file=sys.stderr)

    watched = {f"{target.name}-{i + 1}": p.pid for i, (p, _) in enumerate(target.servers)}
    watched.update(watched_extra)
    watched["producer"] = os.getpid()
    for proc, _, c in clients:
        watched[f"clients-{c + 1}"] = proc.pid
    cpu0 = {k: _cpu_seconds(pid) for k, pid in watched.items()}
    cpu_steady: dict[str, float] = {}
    storm_epoch = [0.0]
    load = [os.getloadavg()[0]]

    def storm() -> None:
        for k, pid in watched.items():
            cpu_steady[k] = round((_cpu_seconds(pid) - cpu0[k]) / args.seconds * 100, 1)
        load.append(os.getloadavg()[0])
        storm_epoch[0] = time.time()
        for proc, _, _ in clients:
            assert proc.stdin is not None
            proc.stdin.write(f"storm {args.storm_window}\n")
            proc.stdin.flush()
        print(f"[{target.name}] storm: every socket dropped", file=sys.stderr)

    hooks = {args.seconds: storm} if args.storm_seconds > 0 else {}
    gc.collect()
    gc.freeze()
    published = await _produce(
        keys,
        target.publish_one,
        rate=args.rate,
        seconds=args.seconds + args.storm_seconds,
        max_inflight=args.max_inflight,
        at_second=hooks,
    )
    if not cpu_steady:
        cpu_steady = {k: round((_cpu_seconds(pid) - cpu0[k]) / args.seconds * 100, 1) for k, pid in watched.items()}
    load.append(os.getloadavg()[0])
    await asyncio.sleep(args.drain)
    rss2 = [_rss_kb(p.pid) for p, _ in target.servers]
    for proc, _, _ in clients:
        assert proc.stdin is not None
        proc.stdin.write("stop\n")
        proc.stdin.flush()
    for proc, _, _ in clients:
        proc.wait(timeout=300)
    return _check(target, people, published, clients, storm_epoch[0], args) | {
        "connect_seconds": round(connect_seconds, 1),
        "memory": {
            "sockets_per_server": per_server,
            "rss_kb_before": rss0,
            "rss_kb_idle": rss1,
            "rss_kb_after_storm": rss2,
            "kb_per_idle_socket": [
                round((b - a) / s, 1) if s else 0.0 for a, b, s in zip(rss0, rss1, per_server, strict=True)
            ],
        },
        "cpu_percent_of_one_core_steady": cpu_steady,
        "loadavg_1min": {"start": load[0], "storm": load[1] if len(load) > 2 else None, "end": load[-1]},
        "publish_ms": {
            "p50": round(_pct(published.durations, 0.5), 1),
            "p99": round(_pct(published.durations, 0.99), 1),
        },
        "publish_failures": published.failures,
        "producer_max_lag_ms": round(published.max_lag * 1000, 1),
    }


def _check(
    target: Target,
    people: list[dict[str, Any]],
    published: Published,
    clients: list[tuple[subprocess.Popen[str], Path, int]],
    storm_epoch: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    steady: list[float] = []
    storm_live: list[float] = []
    catch_up: list[float] = []
    reconnect: list[float] = []
    lost = dupes = out_of_order = extra = not_back = 0
    closes: dict[str, int] = {}
    reconnected = 0
    by_url = {u: i for i, u in enumerate(target.urls)}
    for _proc, out, c in clients:
        body = json.loads(out.read_text())
        reconnected += body["reconnected"]
        mine = target.urls[c :: args.client_procs]
        for j, url in enumerate(mine):
            person = people[by_url[url]]
            tenant = person["reseller_id"]
            expected = published.seqs[(tenant, person["department_id"])]
            got: list[int] = body["seqs"][j]
            recv: list[float] = body["recv"][j]
            for ms, r in zip(body["lats"][j], recv, strict=True):
                # Steady: delivered live before the drop; what came after it is the storm's.
                (steady if not storm_epoch or r < storm_epoch else storm_live).append(ms)
            dupes += len(got) - len(set(got))
            out_of_order += sum(1 for a, b in itertools.pairwise(got) if b <= a)
            have = set(got)
            conns = body["conns"][j]
            if storm_epoch and len(conns) < 2:
                # Dropped and not back when the phase ended (a loaded machine): what was stored
                # after the drop is not lost, it was never asked for; counted apart.
                not_back += 1
                must = {s for s in expected if published.stored[(tenant, s)] < storm_epoch}
            elif target.since or len(conns) < 2:
                must = set(expected)
            else:  # no replay: what was published while this socket was away is not owed
                back = conns[1][1]
                must = {
                    s
                    for s in expected
                    if published.stored[(tenant, s)] < storm_epoch or published.at[(tenant, s)] > back
                }
            lost += len(must - have)
            extra += len(have - set(expected))
            if body["closes"][j] is not None:
                closes[str(body["closes"][j])] = closes.get(str(body["closes"][j]), 0) + 1
            for t0, t_hello, since in conns[1:]:
                reconnect.append((t_hello - t0) * 1000)
                if not target.since:
                    continue
                owed = [s for s in expected if s > since and published.stored[(tenant, s)] < t0]
                when = {s: r for s, r in zip(got, recv, strict=True)}
                done = max([when[s] for s in owed if s in when], default=t_hello)
                catch_up.append((max(done, t_hello) - t0) * 1000)

    def pcts(xs: list[float]) -> dict[str, float]:
        return {
            "n": len(xs),
            "p50": round(_pct(xs, 0.5), 1),
            "p90": round(_pct(xs, 0.9), 1),
            "p99": round(_pct(xs, 0.99), 1),
            "max": round(max(xs), 1) if xs else 0.0,
        }

    events = sum(len(v) for v in published.seqs.values())
    return {
        "target": target.name,
        "sockets": len(target.urls),
        "events": events,
        "latency_ms_steady": pcts(steady),
        "latency_ms_during_storm": pcts(storm_live),
        "reconnects": reconnected,
        "not_reconnected_by_the_end": not_back,
        "reconnect_to_hello_ms": pcts(reconnect),
        "catch_up_ms": pcts(catch_up) if target.since else None,
        "lost": lost,
        "duplicates": dupes,
        "out_of_order": out_of_order,
        "not_in_audience": extra,
        "closed_sockets": closes,
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    from backend.core.config import Settings
    from backend.core.db import durable_database, make_client
    from backend.core.security import create_access_token
    from backend.realtime import feed
    from backend.realtime.bus import RedisBus
    from backend.tickets.schemas import TicketRead
    from bench.fanout_baseline import CHANNEL

    with stack(args, name="realtime-scale") as st:
        workdir, procs, backends = st.workdir, st.procs, st.backends
        mongo_url, redis_url, db_name = st.mongo_url, st.redis_url, st.db_name
        baselines = [_start_baseline(redis_url, workdir) for _ in range(args.instances)]
        procs.extend(p for p, _ in baselines)
        settings = Settings(_env_file=None, ENV="test", MONGO_URL=mongo_url, MONGO_DB=db_name, JWT_SECRET=JWT_SECRET)
        client = make_client(settings)
        db = durable_database(client, db_name)
        people, tickets = await _seed(db, args.tenants, args.agents, args.departments)
        keys = list(tickets)
        ticket_json = {k: TicketRead.from_doc(t).model_dump(mode="json") for k, t in tickets.items()}

        iaze_urls = []
        base_urls = []
        for person in people:
            n = _instance(person, args.instances)
            token, _ = create_access_token(settings, user_id=person["id"], role="agent")
            iaze_urls.append(f"ws://127.0.0.1:{backends[n][1]}/api/v1/ws?token={token}")
            base_urls.append(f"ws://127.0.0.1:{baselines[n][1]}/ws?g={person['reseller_id']}:{person['department_id']}")

        import redis.asyncio as redis

        raw = redis.Redis.from_url(redis_url)
        base_seq: dict[str, int] = {}
        in_order = asyncio.Lock()  # one publish at a time: per tenant, seqs reach Redis in order

        async def publish_baseline(k: Key) -> tuple[int, float] | None:
            async with in_order:
                return await _publish_baseline(k)

        async def _publish_baseline(k: Key) -> tuple[int, float]:
            seq = base_seq[k[0]] = base_seq.get(k[0], 0) + 1
            at = datetime.now(UTC)
            frame = json.dumps(
                {"type": "event", "seq": seq, "event": "ticket.created",
                 "at": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                 "ticket": ticket_json[k], "message": None, "connection": None},
                separators=(",", ":"),
            )  # fmt: skip
            await raw.publish(CHANNEL, f"{k[0]}:{k[1]}\n{frame}")
            return seq, at.timestamp()

        bus = RedisBus(redis_url, "iaze:realtime", None)
        feed.register_sink(db, bus)

        async def publish_iaze(k: Key) -> tuple[int, float] | None:
            rec = await feed.publish(db, reseller_id=k[0], type_="ticket.created", ticket=tickets[k])
            return None if rec is None else (int(rec["seq"]), rec["at"].timestamp())

        extra = st.services
        phases = []
        for target in (
            Target("iaze", backends, iaze_urls, True, publish_iaze),
            Target("baseline", baselines, base_urls, False, publish_baseline),
        ):
            if args.only and target.name != args.only:
                continue
            phases.append(await _phase(target, people, keys, extra, workdir, args))
            print(json.dumps(phases[-1]), file=sys.stderr, flush=True)  # kept even if a later phase fails
        feed.unregister_sink(db, bus)
        await bus.close()
        await raw.aclose()
        await client.close()
        return {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "sockets_per_event": args.agents // args.tenants // args.departments,
            "machine": {"cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
            "phases": phases,
        }


def render(r: dict[str, Any]) -> str:
    a = r["args"]
    lines = [
        f"Run {r['when']}: `python -m bench.realtime_scale --agents {a['agents']} --tenants {a['tenants']} "
        f"--departments {a['departments']} --instances {a['instances']} --rate {a['rate']} --seconds {a['seconds']} "
        f"--storm-window {a['storm_window']} --storm-seconds {a['storm_seconds']}` "
        f"({r['sockets_per_event']} sockets per event; {r['machine']['cpus']} cores).",
        "",
        "| measure | " + " | ".join(p["target"] for p in r["phases"]) + " |",
        "|---|" + "---|" * len(r["phases"]),
    ]

    def row(label: str, f: Callable[[dict[str, Any]], Any]) -> None:
        lines.append(f"| {label} | " + " | ".join(str(f(p)) for p in r["phases"]) + " |")

    def lat(d: dict[str, Any] | None) -> str:
        return "–" if d is None else f"{d['p50']} / {d['p90']} / **{d['p99']}** / {d['max']} (n={d['n']})"

    row("sockets, connected in", lambda p: f"{p['sockets']} in {p['connect_seconds']} s")
    row("events published (steady + storm)", lambda p: f"{p['events']}, publish p50/p99 {p['publish_ms']['p50']}/"
        f"{p['publish_ms']['p99']} ms, {p['publish_failures']} failed")  # fmt: skip
    row("**latency steady** p50 / p90 / p99 / max ms", lambda p: lat(p["latency_ms_steady"]))
    row("latency of deliveries after the drop (replays included)", lambda p: lat(p["latency_ms_during_storm"]))
    row("reconnects; connect → hello p50 / p90 / p99 / max ms", lambda p: f"{p['reconnects']}; "
        + lat(p["reconnect_to_hello_ms"]))  # fmt: skip
    row("**catch-up** (connect → every missed event) ms", lambda p: lat(p["catch_up_ms"]))
    row("sockets not back when the phase ended", lambda p: p.get("not_reconnected_by_the_end", "–"))
    row("lost / duplicated / out of order / outside audience", lambda p: f"{p['lost']} / {p['duplicates']} / "
        f"{p['out_of_order']} / {p['not_in_audience']}")  # fmt: skip
    row("sockets closed by the server", lambda p: p["closed_sockets"] or "none")
    row("**KB per idle socket**, per server process", lambda p: " · ".join(map(str, p["memory"]["kb_per_idle_socket"])))

    def rss(p: dict[str, Any]) -> str:
        m = p["memory"]
        steps = zip(m["rss_kb_before"], m["rss_kb_idle"], m["rss_kb_after_storm"], strict=True)
        return " · ".join(f"{a / 1024:.0f}→{b / 1024:.0f}→{c / 1024:.0f}" for a, b, c in steps)

    row("RSS MB per server: before → idle → after storm", rss)
    row("CPU % of one core, steady window", lambda p: ", ".join(
        f"{k} {v}" for k, v in p["cpu_percent_of_one_core_steady"].items()))  # fmt: skip
    row("1-min load: start / at storm / end", lambda p: " / ".join(
        "–" if v is None else f"{v:.1f}" for v in p["loadavg_1min"].values()))  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # 5,000 sockets: each client process and server holds thousands of descriptors.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if len(sys.argv) == 4 and sys.argv[1] == "--client":
        _run(_client_main(sys.argv[2], sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--departments", type=int, default=10, help="per tenant; agents spread evenly")
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="steady window")
    parser.add_argument("--storm-window", type=float, default=10.0, help="reconnects spread over this many s")
    parser.add_argument("--storm-seconds", type=float, default=25.0, help="publishing after the drop (0: no storm)")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--max-inflight", type=int, default=32)
    parser.add_argument("--settle", type=float, default=5.0, help="idle seconds before reading RSS")
    parser.add_argument("--drain", type=float, default=5.0)
    parser.add_argument("--only", choices=("baseline", "iaze"), help="one phase only")
    parser.add_argument("--ready-seconds", type=float, default=600, help="wait this long for a backend to start")
    args = parser.parse_args()
    result = _run(_main(args))
    save_result(result, "realtime-scale")
    print(render(result))


if __name__ == "__main__":
    main()
