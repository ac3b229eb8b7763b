"""WhatsApp ingest benchmark: inbound messages through the webhook vs the same documents
inserted directly with the driver, on an empty database and with history already stored.

    .venv/bin/python -m bench.ingest_bench --messages 50000 --conversations 2000 --concurrency 64 \
        --preload 500000

Starts its own FerretDB (unless MONGO_URL is set) and the backend as a separate uvicorn process
(outbound worker off, webhook processor on: the real deployment), creates a tenant and a
connection through the API, then:
  1. webhook: MESSAGES_UPSERT deliveries posted at the given concurrency; the webhook answers once
     the raw delivery is stored (ack msgs/s, p50/p99);
  2. drain: waits until the processor has processed every delivery (per-lane cursors, `_id`
     reads), reporting the time from the first post and processed msgs/s;
  3. driver: the same number of message documents inserted one by one at the same concurrency,
     on the now quiet database;
  4. preload: up to `--preload` message documents bulk-inserted as history (stopping after
     `--preload-seconds`), then 1-3 again with fresh conversations;
and counts afterwards: every delivery stored exactly once (messages by connection, raw events).

Also, in the same run:
  - commands per message (bench/ingest_commands.py, `--count-clients`, 0 to skip): database
    commands per inbound message by phase (ack / processing) and by command name, counted with
    PyMongo's command monitoring on the backend's own client, for a new client's first message and
    for a message in an existing conversation;
  - realtime latency (`--ws-rate`, `--ws-seconds`, 0 to skip): an agent of the tenant connected to
    /api/v1/ws while deliveries are posted at a steady rate; per message, the time from the
    webhook's acknowledgement to the `message.created` frame reaching the agent's socket.
"""

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from backend.core.clock import utcnow
from backend.core.ids import new_id
from backend.devtools import ferretdb
from backend.webhooks.service import message_id_for
from bench import http_load, ingest_commands
from bench.storecheck import launcher_line

ROOT = Path(__file__).resolve().parents[1]
ADMIN = ("bench-admin@example.com", "bench-admin-pass-1")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _payload(phone: str, key_id: str, n: int) -> dict[str, Any]:
    return {
        "event": "messages.upsert",
        "instance": "bench",
        "data": {
            "key": {"remoteJid": f"{phone}@s.whatsapp.net", "fromMe": False, "id": key_id},
            "pushName": f"Cliente {phone[-4:]}",
            "message": {"conversation": f"mensagem {n} do benchmark de ingestão"},
            "messageType": "conversation",
            "messageTimestamp": int(time.time()),
        },
    }


async def _pool(n: int, concurrency: int, job: Any) -> tuple[float, list[float]]:
    latencies: list[float] = []
    next_i = 0

    async def runner() -> None:
        nonlocal next_i
        while next_i < n:
            i = next_i
            next_i += 1
            t0 = time.perf_counter()
            await job(i)
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(runner() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies


async def webhook_phase(
    bases: list[tuple[str, int]],
    conn_id: str,
    token: str,
    *,
    messages: int,
    conversations: int,
    concurrency: int,
    tag: str,
) -> dict[str, Any]:
    """`bases`: the backends the deliveries go to, connection by connection in turn (several: as
    behind a balancer)."""
    phones = [f"55{tag}{i:07d}" for i in range(conversations)]
    errors: list[str] = []
    tops: dict[int, int] = {}  # highest raw entry per lane ("w:<lane>:<n>")
    pool = [http_load.Connection(*bases[i % len(bases)]) for i in range(concurrency)]
    free = list(pool)
    headers = {"X-Webhook-Token": token}

    async def job(i: int) -> None:
        body = json.dumps(_payload(phones[i % conversations], f"{tag}-{i}", i)).encode()
        conn = free.pop()
        try:
            r = await conn.post(f"/api/v1/webhooks/whatsapp/{conn_id}", body, headers)
        finally:
            free.append(conn)
        answer = json.loads(r.body) if r.status == 200 else {}
        if answer.get("status") != "received":
            errors.append(f"{r.status} {r.body[:200]!r}")
            return
        lane, seq = answer["raw_id"].split(":")[1:]
        tops[int(lane)] = max(tops.get(int(lane), 0), int(seq))

    try:
        elapsed, lat = await _pool(messages, concurrency, job)
    finally:
        for conn in pool:
            await conn.close()
    return {
        "rate": messages / elapsed,
        "p50": _pct(lat, 0.5),
        "p99": _pct(lat, 0.99),
        "elapsed": elapsed,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "tops": tops,
    }


async def drain(db: Any, tops: dict[int, int], *, started: float, messages: int, limit: float) -> dict[str, Any]:
    """Waits until every lane's processed cursor reaches the highest entry the webhook stored."""
    while True:
        behind = 0
        for lane, top in tops.items():
            state = await db.webhook_state.find_one({"_id": f"cursor:{lane}"})
            behind += max(0, top - (int(state["seq"]) if state else 0))
        now = time.perf_counter()
        if behind == 0 or now - started > limit:
            elapsed = now - started
            return {"elapsed": elapsed, "rate": messages / elapsed, "behind": behind}
        await asyncio.sleep(0.5)


async def driver_phase(
    db: Any, conn_id: str, *, messages: int, conversations: int, concurrency: int, tag: str
) -> dict[str, Any]:
    """The same message documents, inserted one at a time (what ingest must write, minimum)."""
    tickets = [new_id() for _ in range(conversations)]
    coll = db["bench_direct_messages"]

    async def job(i: int) -> None:
        await coll.insert_one(
            {
                "_id": message_id_for(conn_id, f"direct-{tag}-{i}"),
                "ticket_id": tickets[i % conversations],
                "reseller_id": "bench",
                "direction": "in",
                "sender_type": "client",
                "sender_id": tickets[i % conversations],
                "sender_name": "Cliente",
                "type": "text",
                "body": f"mensagem {i} do benchmark de ingestão",
                "media": None,
                "status": "received",
                "created_at": utcnow(),
                "connection_id": conn_id,
                "provider_message_id": f"direct-{tag}-{i}",
            }
        )

    elapsed, lat = await _pool(messages, concurrency, job)
    return {"rate": messages / elapsed, "p50": _pct(lat, 0.5), "p99": _pct(lat, 0.99), "elapsed": elapsed}


async def preload(db: Any, n: int, max_seconds: float) -> tuple[int, float]:
    """Bulk-inserts up to n history messages, stopping after max_seconds. Returns (stored, s)."""
    start = time.perf_counter()
    batch: list[dict[str, Any]] = []
    stored = 0
    for i in range(n):
        batch.append(
            {
                "_id": new_id(),
                "ticket_id": f"history-{i % 20000}",
                "reseller_id": "history",
                "direction": "in" if i % 2 else "out",
                "sender_type": "client",
                "type": "text",
                "body": f"histórico {i}",
                "status": "received",
                "created_at": utcnow(),
            }
        )
        if len(batch) == 5000:
            await db.messages.insert_many(batch, ordered=False)
            stored += len(batch)
            batch = []
            if time.perf_counter() - start > max_seconds:
                return stored, time.perf_counter() - start
    if batch:
        await db.messages.insert_many(batch, ordered=False)
        stored += len(batch)
    return stored, time.perf_counter() - start


def _start_backend(
    mongo_url: str, db_name: str, port: int, log: Path, processor: str, module: str = "uvicorn"
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ENV": "test",
        "MONGO_URL": mongo_url,
        "MONGO_DB": db_name,
        "PORT": str(port),
        "ADMIN_EMAIL": ADMIN[0],
        "ADMIN_PASSWORD": ADMIN[1],
        "JWT_SECRET": "bench-" + "x" * 40,
        "OUTBOUND_WORKER_ENABLED": "false",
        "WEBHOOK_PROCESSOR_ENABLED": "true" if processor in ("inline", "twin") else "false",
        "LOG_LEVEL": "WARNING",
        "EVOLUTION_BASE_URL": "",
        "LEDGER_FILE": str(log.parent / "ledger.jsonl"),
    }
    out = open(log, "ab")  # noqa: SIM115 - owned by the child
    if module != "uvicorn":  # the processor alone: python -m backend.webhooks
        env["WEBHOOK_PROCESSOR_ENABLED"] = "true"
        return subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env, stdout=out, stderr=out)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "backend.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=out,
    )


async def _wait_ready(http: httpx.AsyncClient) -> None:
    for _ in range(600):
        try:
            if (await http.get("/health/ready")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("backend not ready")


async def _setup(http: httpx.AsyncClient, db: Any) -> tuple[str, str, str, dict[str, str], str]:
    r = await http.post("/api/v1/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
    admin = {"Authorization": f"Bearer {r.json()['access_token']}"}
    email = f"bench-{uuid.uuid4().hex[:6]}@example.com"
    r = await http.post(
        "/api/v1/resellers", json={"name": "Bench", "email": email, "password": "owner-pass-1"}, headers=admin
    )
    r.raise_for_status()
    reseller_id = r.json()["id"]
    r = await http.post("/api/v1/auth/login", json={"email": email, "password": "owner-pass-1"})
    owner = {"Authorization": f"Bearer {r.json()['access_token']}"}
    dept = (await http.post("/api/v1/departments", json={"name": "Suporte"}, headers=owner)).json()
    r = await http.post(
        "/api/v1/whatsapp-connections",
        headers=owner,
        json={
            "name": "Bench",
            "provider": "evolution",
            "instance_name": f"bench-{uuid.uuid4().hex[:6]}",
            "default_department_id": dept["id"],
        },
    )
    r.raise_for_status()
    conn_id = r.json()["id"]
    token = (await db.whatsapp_connections.find_one({"_id": conn_id}))["webhook_token"]
    return reseller_id, conn_id, token, owner, dept["id"]


async def ws_phase(
    base: tuple[str, int],
    http: httpx.AsyncClient,
    owner: dict[str, str],
    dept_id: str,
    conn_id: str,
    token: str,
    *,
    rate: float,
    seconds: float,
    conversations: int,
    concurrency: int,
    limit: float,
) -> dict[str, Any]:
    """Deliveries posted at `rate`/s for `seconds` (open loop: each at its scheduled time) while an
    agent of the connection's department listens on the websocket; latency per message = the
    `message.created` frame's arrival − the webhook's 2xx arriving at the poster (one clock)."""
    from websockets.asyncio.client import connect

    email = f"bench-agent-{uuid.uuid4().hex[:6]}@example.com"
    r = await http.post(
        "/api/v1/users",
        json={"name": "Agente", "email": email, "password": "agent-pass-1", "department_ids": [dept_id]},
        headers=owner,
    )
    r.raise_for_status()
    r = await http.post("/api/v1/auth/login", json={"email": email, "password": "agent-pass-1"})
    r.raise_for_status()
    agent_token = r.json()["access_token"]
    received: dict[str, float] = {}
    acked: dict[str, float] = {}
    n = int(rate * seconds)
    phones = [f"5598{i:07d}" for i in range(conversations)]  # digits: a phone number
    pool = [http_load.Connection(*base) for _ in range(concurrency)]
    free = list(pool)
    gate = asyncio.Semaphore(concurrency)
    errors: list[str] = []
    lag: list[float] = []
    async with connect(f"ws://{base[0]}:{base[1]}/api/v1/ws?token={agent_token}", max_size=None) as ws:
        json.loads(await ws.recv())  # hello

        frames: Counter[str] = Counter()

        async def reader() -> None:
            async for frame in ws:
                now = time.perf_counter()
                event = json.loads(frame)
                frames[f"{event.get('type')} {event.get('event') or event.get('reason') or ''}".strip()] += 1
                if event.get("type") == "event" and event.get("event") == "message.created" and event.get("message"):
                    received.setdefault(event["message"]["id"], now)

        reading = asyncio.create_task(reader())
        start = time.perf_counter()

        async def job(i: int) -> None:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            async with gate:
                lag.append(time.perf_counter() - (start + i / rate))
                key = f"ws-{i}"
                body = json.dumps(_payload(phones[i % conversations], key, i)).encode()
                conn = free.pop()
                try:
                    answer = await conn.post(f"/api/v1/webhooks/whatsapp/{conn_id}", body, {"X-Webhook-Token": token})
                finally:
                    free.append(conn)
                if answer.status != 200:
                    errors.append(f"{answer.status} {answer.body[:200]!r}")
                    return
                acked[message_id_for(conn_id, key)] = time.perf_counter()

        await asyncio.gather(*(job(i) for i in range(n)))
        posted = time.perf_counter() - start
        deadline = time.perf_counter() + limit
        while any(m not in received for m in acked) and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        closed = ws.close_code
    for conn in pool:
        await conn.close()
    lat = [received[m] - t for m, t in acked.items() if m in received]
    return {
        "offered": rate,
        "sustained": len(acked) / posted if posted else 0.0,
        "messages": n,
        "acked": len(acked),
        "errors": len(errors),
        "received": len(lat),
        "missing": len(acked) - len(lat),
        "poster_lag_p99": _pct(lag, 0.99),
        "p50": _pct(lat, 0.5),
        "p90": _pct(lat, 0.9),
        "p99": _pct(lat, 0.99),
        "max": max(lat) if lat else float("nan"),
        "frames": dict(frames),
        "socket_closed": closed,
    }


async def _verify(db: Any, conn_id: str, tag: str, messages: int, *, scan: bool) -> dict[str, int]:
    """Lost: expected message `_id`s (derived from the provider ids) not stored, by `_id` reads.
    Duplicated: messages of the connection beyond those expected — a collection scan on FerretDB,
    so only with `scan` (it takes many minutes over a large history)."""
    ids = [message_id_for(conn_id, f"{tag}-{i}") for i in range(messages)]
    found = 0
    for _id in ids:  # `_id` equality: the one filter FerretDB pushes down
        found += await db.messages.find_one({"_id": _id}, projection={"_id": 1}) is not None
    duplicated = -1
    if scan:
        query = {"connection_id": conn_id, "provider_message_id": {"$regex": f"^{tag}-"}}
        stored = await db.messages.count_documents(query)
        duplicated = max(0, stored - found)
    return {"expected": messages, "stored": found, "lost": messages - found, "duplicated": duplicated}


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    fdb = None
    mongo_url = os.environ.get("MONGO_URL", "")
    if not mongo_url:
        port = ferretdb.free_port()
        fdb = ferretdb.start(f"127.0.0.1:{port}", tmp / "data", log_path=tmp / "ferretdb.log")
        mongo_url = f"mongodb://127.0.0.1:{port}/"
        print(f"store: local FerretDB, {launcher_line()}", flush=True)
    db_name = f"bench_ingest_{uuid.uuid4().hex[:6]}"
    bport = ferretdb.free_port()
    backend = _start_backend(mongo_url, db_name, bport, tmp / "backend.log", args.processor)
    second = None  # the processor process ("separate") or the second backend ("twin")
    if args.processor == "separate":
        second = _start_backend(
            mongo_url, db_name, bport, tmp / "processor.log", args.processor, module="backend.webhooks"
        )
    bases = [("127.0.0.1", bport)]
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    db = client[db_name]
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    results: dict[str, Any] = {}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{bport}", timeout=900, limits=limits) as http:
            await _wait_ready(http)
            if args.processor == "twin":  # started once the first is up: one runs the migrations
                bases.append(("127.0.0.1", ferretdb.free_port()))
                second = _start_backend(mongo_url, db_name, bases[1][1], tmp / "twin.log", args.processor)
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{bases[1][1]}", timeout=30) as twin:
                    await _wait_ready(twin)
            _, conn_id, token, owner, dept_id = await _setup(http, db)
            if args.count_clients:
                counted = await ingest_commands.count_commands(
                    mongo_url,
                    db_name,
                    conn_id,
                    token,
                    clients=args.count_clients,
                    backlog=args.count_backlog,
                    store_pid=fdb.pid if fdb is not None else None,
                )
                results["commands"] = counted
                print(ingest_commands.render(counted), flush=True)
                print(ingest_commands.render_traces(counted), flush=True)
            common = {"messages": args.messages, "conversations": args.conversations, "concurrency": args.concurrency}
            for label, tag in (("empty", "1"), ("history", "2")):
                if label == "history":
                    if not args.preload:
                        break
                    stored, secs = await preload(db, args.preload, args.preload_seconds)
                    results["preloaded"] = stored
                    print(f"preloaded {stored} messages in {secs:.0f}s", flush=True)
                started = time.perf_counter()
                hook = await webhook_phase(bases, conn_id, token, tag=tag, **common)
                tops = hook.pop("tops")
                drained = (
                    await drain(db, tops, started=started, messages=args.messages, limit=args.drain_limit)
                    if args.processor != "off"
                    else {"elapsed": float("nan"), "rate": float("nan"), "behind": -1}
                )
                direct = await driver_phase(db, conn_id, tag=tag, **common)
                counts = await _verify(db, conn_id, tag, args.messages, scan=label == "empty" or args.scan_history)
                results[label] = {
                    "webhook": hook,
                    "drain": drained,
                    "driver": direct,
                    "ratio": hook["rate"] / direct["rate"],
                    "counts": counts,
                }
                print(label, results[label], flush=True)
                if label == "empty" and args.ws_rate and args.processor != "off":
                    results["ws"] = await ws_phase(
                        ("127.0.0.1", bport),
                        http,
                        owner,
                        dept_id,
                        conn_id,
                        token,
                        rate=args.ws_rate,
                        seconds=args.ws_seconds,
                        conversations=args.conversations,
                        concurrency=args.concurrency,
                        limit=args.drain_limit,
                    )
                    print("ws", results["ws"], flush=True)
    finally:
        for proc in (backend, second):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        await client.close()
        if fdb is not None:
            ferretdb.stop(fdb)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if "commands" in results:
        print("\n" + ingest_commands.render(results["commands"]))
    print("\n| database | webhook ack msg/s | ack p50 / p99 (ms) | drain (s) | processed msg/s | drain ÷ ack ", end="")
    print("| driver msg/s | driver p99 (ms) | ratio ack/driver | lost | duplicated |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, res in results.items():
        if label not in ("empty", "history"):
            continue
        h, w, d, c = res["webhook"], res["drain"], res["driver"], res["counts"]
        print(
            f"| {label} | {h['rate']:.0f} | {h['p50'] * 1000:.0f} / {h['p99'] * 1000:.0f} | {w['elapsed']:.0f} | "
            f"{w['rate']:.1f} | {w['rate'] / h['rate']:.2f} | {d['rate']:.0f} | {d['p99'] * 1000:.0f} | "
            f"{res['ratio']:.2f} | {c['lost']} | {c['duplicated']} |"
        )
    if "ws" in results:
        w = results["ws"]
        print(
            f"\nack → agent websocket at {w['offered']:.0f} msg/s offered ({w['sustained']:.1f} acked/s, "
            f"{w['acked']}/{w['messages']} acked, {w['errors']} errors, "
            f"poster lag p99 {w['poster_lag_p99'] * 1000:.0f} ms): "
            f"p50 {w['p50'] * 1000:.0f} ms, p90 {w['p90'] * 1000:.0f} ms, p99 {w['p99'] * 1000:.0f} ms, "
            f"max {w['max'] * 1000:.0f} ms; {w['received']} received, {w['missing']} not received"
        )
    print(
        f"\nmessages={args.messages} conversations={args.conversations} concurrency={args.concurrency} "
        f"preload={args.preload} preloaded={results.get('preloaded', 0)} cpus={os.cpu_count()} "
        f"python={sys.version.split()[0]} load={os.getloadavg()}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--conversations", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--preload", type=int, default=500_000)
    parser.add_argument("--preload-seconds", type=float, default=600.0, help="stop preloading after this long")
    parser.add_argument("--drain-limit", type=float, default=3600.0, help="give up waiting for the drain after")
    parser.add_argument(
        "--processor",
        choices=["inline", "separate", "off", "twin"],
        default="inline",
        help="webhook processor in the backend process, in its own process, or none (ack only, no drain); "
        "twin: two backends with their processors, the deliveries alternating between them",
    )
    parser.add_argument("--scan-history", action="store_true", help="also count duplicates by a scan with history")
    parser.add_argument("--count-clients", type=int, default=40, help="clients in the command count (0: skip)")
    parser.add_argument("--count-backlog", type=int, default=400, help="messages in the counted backlog drain")
    parser.add_argument("--ws-rate", type=float, default=200.0, help="msg/s for the websocket latency (0: skip)")
    parser.add_argument("--ws-seconds", type=float, default=30.0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    asyncio.run(main(parser.parse_args()))
