"""Inbound media benchmark: image messages through the webhook with their fetch, beside a raw
GridFS put of the same files in the same run; Range download throughput; the backend's memory
while it serves a 100 MB document.

    .venv/bin/python -m bench.media_bench --messages 1000 --min-kb 100 --max-kb 1024 --concurrency 16

Starts its own FerretDB (unless MONGO_URL is set), the fake Evolution API (tests/fakes, its own
process, holding the images the "phone" received) and the backend as a uvicorn process (media
fetcher on, outbound worker off), creates a tenant and a connection through the API, then:
  1. webhook + fetch: one MESSAGES_UPSERT imageMessage per file posted to the webhook (no inline
     base64), and the clock stops when every message's media is "ready" (the fetcher asked the
     fake's /chat/getBase64FromMediaMessage, stored the bytes in GridFS, moved the message);
  2. raw: the same files put with PyMongo's AsyncGridFSBucket into another bucket of the same
     database, at the same concurrency; the ratio webhook/raw is what the product keeps of what
     the store can take. Both run in `--rounds` slices of the files (default 4), each slice through
     both sides back to back in ABBA order, so a load that drifts during the run weighs on both;
  2b. store path: the same files through media.store_bytes (another tenant), same concurrency;
  3. range: GET /api/v1/messages/{id}/media with 256 KiB Range requests over every file;
  4. memory: a 100 MB document streamed through GET .../media while the backend's RSS is sampled.
Every download is compared with the bytes sent. Each phase prints the CPU seconds the backend,
the fake and FerretDB spent in it; `--profile FILE` runs the backend under cProfile;
`--count-commands` counts its database commands per message in phase 1, filed by who sent them
(bench/media_commands.py).
"""

import argparse
import asyncio
import base64
import hashlib
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
from pathlib import Path
from typing import Any

import httpx
from gridfs import AsyncGridFSBucket
from pymongo import AsyncMongoClient

from backend.devtools import ferretdb
from backend.media import service as media
from backend.webhooks.service import message_id_for
from bench import media_commands
from bench.storecheck import launcher_line

ROOT = Path(__file__).resolve().parents[1]
ADMIN = ("bench-admin@example.com", "bench-admin-pass-1")
MB = 1024 * 1024


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (FerretDB's launcher
    runs the server as a child): what each side of a phase cost, whatever the machine's load."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


class _Cpu:
    """CPU seconds spent by named processes between `start()` and `stop()`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before: dict[str, float] = {}

    def start(self) -> None:
        self.before = {name: _cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> str:
        spent = {name: _cpu_seconds(pid) - self.before[name] for name, pid in self.pids.items()}
        return ", ".join(f"{name} {seconds:.1f}" for name, seconds in spent.items())


async def _pool(items: list[Any], concurrency: int, job: Any) -> float:
    queue = list(reversed(items))
    started = time.perf_counter()

    async def worker() -> None:
        while queue:
            await job(queue.pop())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def _counts(backend: subprocess.Popen[bytes], count_file: Path | None) -> dict[str, int]:
    """The counted backend's commands so far (bench/media_commands.py), once the webhook + fetch
    phase's stragglers are in: a snapshot it writes on SIGUSR1."""
    if count_file is None:
        return {}
    await asyncio.sleep(1.0)
    return await asyncio.to_thread(_snapshot, backend, count_file)


def _snapshot(backend: subprocess.Popen[bytes], count_file: Path) -> dict[str, int]:
    count_file.unlink(missing_ok=True)
    backend.send_signal(signal.SIGUSR1)
    while not count_file.exists():
        time.sleep(0.05)
    counts: dict[str, int] = json.loads(count_file.read_text())
    return counts


async def _wait_http(url: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        for _ in range(900):
            try:
                if (await http.get(path)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url}{path} never answered")


def _backend(
    mongo_url: str,
    db_name: str,
    port: int,
    fake_url: str,
    api_key: str,
    log: Path,
    profile: str = "",
    count_file: Path | None = None,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ENV": "test",
        "MONGO_URL": mongo_url,
        "MONGO_DB": db_name,
        "ADMIN_EMAIL": ADMIN[0],
        "ADMIN_PASSWORD": ADMIN[1],
        "JWT_SECRET": "bench-" + "x" * 40,
        "OUTBOUND_WORKER_ENABLED": "false",
        # MEDIA_FETCH_POLL_SECONDS as shipped: a queued fetch wakes the fetcher, the poll is for
        # other processes' entries and retries (it was 0.2 here until session 15: five polls a
        # second, each reading the queue's cursor and head, ~0.8 commands per message at this rate).
        "EVOLUTION_BASE_URL": fake_url,
        "EVOLUTION_API_KEY": api_key,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "LOG_LEVEL": "WARNING",
        "LEDGER_FILE": "",
    }
    out = open(log, "ab")  # noqa: SIM115 - owned by the child
    # --profile: the backend under cProfile (written when it stops), to see where its CPU goes.
    profiler = ["-m", "cProfile", "-o", profile] if profile else []
    cmd = [sys.executable, *profiler, "-m", "uvicorn", "--factory", "backend.app:create_app", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    if count_file is not None:  # --count-commands: the same backend, its commands counted
        env.update(MEDIA_COUNT_FILE=str(count_file), MEDIA_COUNT_PORT=str(port))
        cmd = [sys.executable, "-m", "bench.media_commands"]
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=out,
    )


async def _setup(http: httpx.AsyncClient) -> tuple[str, dict[str, Any], dict[str, str]]:
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
    body = {"name": "Bench", "provider": "evolution", "instance_name": f"bench-{uuid.uuid4().hex[:6]}"}
    r = await http.post(
        "/api/v1/whatsapp-connections", headers=owner, json={**body, "default_department_id": dept["id"]}
    )
    r.raise_for_status()
    return reseller_id, r.json(), owner


def _upsert(conn: dict[str, Any], key_id: str, phone: str, size: int, mime: str = "image/jpeg") -> dict[str, Any]:
    kind = "imageMessage" if mime.startswith("image/") else "documentMessage"
    return {
        "event": "messages.upsert",
        "instance": conn["instance_name"],
        "data": {
            "key": {"remoteJid": f"{phone}@s.whatsapp.net", "fromMe": False, "id": key_id},
            "pushName": "Cliente",
            "message": {kind: {"mimetype": mime, "fileLength": str(size), "fileName": f"{key_id}.bin"}},
            "messageType": kind,
            "messageTimestamp": int(time.time()),
        },
    }


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="media-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    fdb = None
    mongo_url = os.environ.get("MONGO_URL", "")
    try:
        if not mongo_url:
            port = ferretdb.free_port()
            fdb = ferretdb.start(f"127.0.0.1:{port}", tmp / "ferretdb", log_path=tmp / "ferretdb.log")
            mongo_url = f"mongodb://127.0.0.1:{port}/"
            print(f"store: local FerretDB, {launcher_line()}", flush=True)
        db_name = f"media_bench_{uuid.uuid4().hex[:6]}"
        fake_port, api_key = ferretdb.free_port(), "bench-fake-key"
        fake_cmd = [sys.executable, "-m", "tests.fakes.evolution_fake", "--port", str(fake_port), "--api-key", api_key]
        quiet = subprocess.DEVNULL
        procs.append(subprocess.Popen(fake_cmd, cwd=ROOT, stdout=quiet, stderr=quiet))  # noqa: ASYNC220
        fake_url = f"http://127.0.0.1:{fake_port}"
        await _wait_http(fake_url, "/_control/health")
        backend_port = ferretdb.free_port()
        count_file = tmp / "commands.json" if args.count_commands else None
        backend = _backend(
            mongo_url, db_name, backend_port, fake_url, api_key, tmp / "backend.log", args.profile, count_file
        )
        procs.append(backend)
        base = f"http://127.0.0.1:{backend_port}"
        await _wait_http(base, "/health/ready")
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, w="majority", journal=True)
        db = client[db_name]
        rng = random.Random(args.seed)
        sizes = [rng.randint(args.min_kb * 1024, args.max_kb * 1024) for _ in range(args.messages)]
        files = [rng.randbytes(n) for n in sizes]
        total = sum(sizes)
        print(
            f"{args.messages} files, {total / MB:.1f} MB ({args.min_kb}-{args.max_kb} KB), "
            f"concurrency {args.concurrency}"
        )
        async with (
            httpx.AsyncClient(base_url=base, timeout=120) as http,
            httpx.AsyncClient(base_url=fake_url, timeout=120) as fake,
        ):
            reseller_id, conn, owner = await _setup(http)
            token = (await db.whatsapp_connections.find_one({"_id": conn["id"]}))["webhook_token"]
            keys = [f"3EB0BENCH{i:06d}{uuid.uuid4().hex[:6].upper()}" for i in range(args.messages)]

            async def register(i: int) -> None:
                payload = {
                    "key_id": keys[i],
                    "type": "image",
                    "mimetype": "image/jpeg",
                    "base64": base64.b64encode(files[i]).decode(),
                }
                (await fake.post("/_control/media", json=payload)).raise_for_status()

            await _pool(list(range(args.messages)), 8, register)
            hook = f"/api/v1/webhooks/whatsapp/{conn['id']}?t={token}"
            ids = [message_id_for(conn["id"], k) for k in keys]

            cpu = _Cpu(
                {"backend": backend.pid, "fake": procs[0].pid, "store": fdb.pid if fdb else 0, "bench+all": os.getpid()}
            )
            bucket = AsyncGridFSBucket(db, bucket_name="bench_raw")

            async def post(i: int) -> None:
                phone = f"5511{900000000 + i % 200:09d}"
                (await http.post(hook, json=_upsert(conn, keys[i], phone, sizes[i]))).raise_for_status()

            async def webhook_and_fetch(part: list[int]) -> tuple[float, float]:
                """1. webhook + fetch of `part`: (ack seconds, seconds until every media is ready)."""
                started = time.perf_counter()
                ack = await _pool(part, args.concurrency, post)
                # Polled in posting order, each round stopping at the first message not ready yet:
                # about one read per message in all, so the watcher does not load the store it measures.
                pending = [ids[i] for i in part]
                while pending:
                    doc = await db.messages.find_one({"_id": pending[0]}, {"media": 1})
                    status = ((doc or {}).get("media") or {}).get("status")
                    if status == "failed":
                        raise RuntimeError(f"{pending[0]} failed: {doc}")
                    if status == "ready":
                        pending.pop(0)
                        continue
                    if time.perf_counter() - started > args.limit_seconds:
                        raise RuntimeError(f"{len(pending)} media not ready after {args.limit_seconds}s")
                    await asyncio.sleep(0.1)
                return ack, time.perf_counter() - started

            async def put(i: int) -> None:
                await bucket.upload_from_stream(f"{i}.bin", files[i])

            # The files go in `--rounds` slices, each slice through both sides back to back, the
            # order alternating ABBA: a load that drifts during the run (a shared machine) then
            # weighs on both sides alike instead of on whichever phase came second.
            order = list(range(args.messages))
            rounds = max(1, args.rounds)
            ack_seconds = webhook_seconds = raw_seconds = 0.0
            counted = await _counts(backend, count_file)
            for r in range(rounds):
                part = order[r * len(order) // rounds : (r + 1) * len(order) // rounds]
                part_mb = sum(sizes[i] for i in part) / MB
                sides = ["webhook", "raw"] if r % 4 in (0, 3) else ["raw", "webhook"]
                for side in sides:
                    cpu.start()
                    if side == "webhook":
                        ack, seconds = await webhook_and_fetch(part)
                        ack_seconds, webhook_seconds = ack_seconds + ack, webhook_seconds + seconds
                        label = f"webhook+fetch {part_mb / seconds:.2f} MB/s (acks {ack:.1f} s, ready {seconds:.1f} s)"
                    else:
                        seconds = await _pool(part, args.concurrency, put)
                        raw_seconds += seconds
                        label = f"raw put {part_mb / seconds:.2f} MB/s ({seconds:.1f} s)"
                    print(f"  round {r + 1}/{rounds} ({len(part)} files), load {os.getloadavg()[0]:.1f}: {label}")
                    print(f"    CPU seconds: {cpu.stop()}")
            print(f"webhook acks: {ack_seconds:.1f} s; every media ready after {webhook_seconds:.1f} s in all")
            if count_file is not None:
                print(media_commands.summary(counted, await _counts(backend, count_file), args.messages))
            wmbs, rmbs = total / MB / webhook_seconds, total / MB / raw_seconds
            print(
                f"webhook+fetch {wmbs:.2f} MB/s ({args.messages / webhook_seconds:.1f} msg/s); "
                f"raw GridFS put {rmbs:.2f} MB/s; ratio {wmbs / rmbs:.2f}"
            )

            # 2b. the product's store path alone (media.store_bytes: hash, dedupe look-up, chunks,
            # file, record) for the same files under another tenant, same concurrency: what the
            # store costs beside the raw put, apart from the webhook, ticket and fetch around it.
            async def store(i: int) -> None:
                await media.store_bytes(
                    db, reseller_id="bench-store", data=files[i], mime="image/jpeg", name=f"{i}.jpg"
                )

            cpu.start()
            store_seconds = await _pool(order, args.concurrency, store)
            smbs = total / MB / store_seconds
            print(
                f"media.store_bytes alone {smbs:.2f} MB/s (ratio to raw {smbs / rmbs:.2f}); CPU seconds: {cpu.stop()}"
            )

            # 3. Range downloads, 256 KiB at a time, every file, compared
            step = 256 * 1024
            got_bytes = 0

            async def ranged(i: int) -> None:
                nonlocal got_bytes
                parts = []
                for start in range(0, sizes[i], step):
                    end = min(start + step, sizes[i]) - 1
                    r = await http.get(
                        f"/api/v1/messages/{ids[i]}/media", headers={**owner, "Range": f"bytes={start}-{end}"}
                    )
                    assert r.status_code == 206, r.status_code
                    parts.append(r.content)
                data = b"".join(parts)
                assert data == files[i], f"file {i} differs"
                got_bytes += len(data)

            sample = order[: args.range_files]
            range_seconds = await _pool(sample, args.concurrency, ranged)
            print(
                f"range downloads: {got_bytes / MB:.1f} MB in {range_seconds:.1f} s = "
                f"{got_bytes / MB / range_seconds:.2f} MB/s (256 KiB ranges, {len(sample)} files, all identical)"
            )

            # 4. a 100 MB document streamed while the backend's RSS is sampled
            big_size = args.big_mb * MB

            async def big_pieces() -> Any:
                piece_rng = random.Random(args.seed + 1)
                for _ in range(args.big_mb):
                    yield piece_rng.randbytes(MB)

            record = await media.store_bytes(
                db, reseller_id=reseller_id, data=big_pieces(), mime="application/pdf", name="grande.pdf"
            )
            # The message: a document delivered like any other, then pointed at the stored 100 MB
            # content (bench-only write; the webhook cannot carry 100 MB inline).
            key = "3EB0BENCHBIGDOC"
            (
                await fake.post(
                    "/_control/media",
                    json={
                        "key_id": key,
                        "type": "document",
                        "mimetype": "application/pdf",
                        "base64": base64.b64encode(b"%PDF-1.4 small").decode(),
                    },
                )
            ).raise_for_status()
            (await http.post(hook, json=_upsert(conn, key, "5511988880000", 14, "application/pdf"))).raise_for_status()
            big_id = message_id_for(conn["id"], key)
            for _ in range(600):
                doc = await db.messages.find_one({"_id": big_id})
                if doc and (doc.get("media") or {}).get("status") == "ready":
                    break
                await asyncio.sleep(0.2)
            await db.messages.update_one(
                {"_id": big_id}, {"$set": {"media.sha256": record.sha256, "media.size": big_size}}
            )
            rss_before = _rss_kb(backend.pid)
            peak = rss_before
            digest = hashlib.sha256()
            streamed = 0
            t0 = time.perf_counter()
            async with http.stream("GET", f"/api/v1/messages/{big_id}/media", headers=owner) as r:
                assert r.status_code == 200
                async for chunk in r.aiter_bytes():
                    digest.update(chunk)
                    streamed += len(chunk)
                    peak = max(peak, _rss_kb(backend.pid))
            big_seconds = time.perf_counter() - t0
            assert streamed == big_size and digest.hexdigest() == record.sha256
            print(
                f"{args.big_mb} MB document: streamed in {big_seconds:.1f} s ({streamed / MB / big_seconds:.1f} MB/s); "
                f"backend RSS {rss_before / 1024:.0f} MB before, peak {peak / 1024:.0f} MB while serving "
                f"(+{(peak - rss_before) / 1024:.0f} MB)"
            )
        await client.close()
    finally:
        for proc in reversed(procs):
            # SIGINT: a profiled backend writes its stats on the KeyboardInterrupt uvicorn re-raises.
            proc.send_signal(signal.SIGINT if args.profile else signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if fdb is not None:
            ferretdb.stop(fdb)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--min-kb", type=int, default=100)
    parser.add_argument("--max-kb", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--range-files", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4, help="slices of the files, each timed on both sides (ABBA)")
    parser.add_argument("--big-mb", type=int, default=100)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--count-commands", action="store_true", help="count the backend's commands per message")
    parser.add_argument("--limit-seconds", type=float, default=3600)
    parser.add_argument("--profile", default="", help="write the backend's cProfile stats to this file")
    asyncio.run(main(parser.parse_args()))
