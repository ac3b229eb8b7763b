"""Where an idle realtime socket's memory goes: the backend app served in this process under
tracemalloc, `--sockets` agents' sockets opened from a client process (bench/realtime_scale.py's),
and the allocations still alive once they are idle, per source line.

    .venv/bin/python -m bench.ws_memory --sockets 1000 --tenants 10 [--baseline]

`--baseline` serves bench/fanout_baseline.py instead of the backend (same clients), for the
floor: what uvicorn and the websocket library keep per connection. Starts its own FerretDB and
redis-server; prints traced bytes per socket and the top lines of the difference.
"""

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

from bench.realtime_bench import JWT_SECRET, ROOT, _free_port, _run, _seed, _start_redis


async def _main(args: argparse.Namespace) -> None:
    import uvicorn

    from backend.devtools import ferretdb

    workdir = Path(tempfile.mkdtemp(prefix="ws-memory-", dir=ROOT / "var"))
    ferretdb.ensure_built()
    fport = _free_port()
    fdb = ferretdb.start(f"127.0.0.1:{fport}", workdir / "ferretdb", log_path=workdir / "ferretdb.log")
    redis_proc, redis_url = _start_redis(workdir)
    client_proc = None
    server = None
    serving = None
    try:
        db_name = f"bench_wsm_{uuid.uuid4().hex[:8]}"
        port = _free_port()
        os.environ.update(
            {"ENV": "test", "MONGO_URL": f"mongodb://127.0.0.1:{fport}/", "MONGO_DB": db_name,
             "JWT_SECRET": JWT_SECRET, "LEDGER_FILE": "", "REDIS_URL": redis_url, "LOG_LEVEL": "WARNING",
             "ADMIN_EMAIL": ""}
        )  # fmt: skip
        from backend.core.config import get_settings
        from backend.core.db import durable_database, make_client
        from backend.core.security import create_access_token

        get_settings.cache_clear()
        settings = get_settings()
        client = make_client(settings)
        db = durable_database(client, db_name)
        people, _ = await _seed(db, args.tenants, args.sockets, 2)
        if args.baseline:
            from bench.fanout_baseline import FanOut

            app: Any = FanOut(redis_url)
            urls = [f"ws://127.0.0.1:{port}/ws?g={p['reseller_id']}:{p['department_id']}" for p in people]
        else:
            from backend.app import create_app

            app = create_app()
            urls = []
            for p in people:
                token, _ = create_access_token(settings, user_id=p["id"], role="agent")
                urls.append(f"ws://127.0.0.1:{port}/api/v1/ws?token={token}")
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, log_level="warning", ws_per_message_deflate=False
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
            await asyncio.sleep(0.1)
        # One socket first: the per-process and per-tenant set-up is not per socket.
        for warm in range(2):
            spec = workdir / f"client-{warm}.json"
            spec.write_text(json.dumps({"sockets": urls[:1] if warm == 0 else urls[1:], "since": True}))
            if warm == 0:
                first = subprocess.Popen(  # noqa: ASYNC220 - set-up
                    [sys.executable, "-m", "bench.realtime_scale", "--client", str(spec), str(workdir / "w.out")],
                    cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                )  # fmt: skip
                await _ready(first)
                await asyncio.sleep(1)
                tracemalloc.start(args.frames)
                before = tracemalloc.take_snapshot()
            else:
                client_proc = subprocess.Popen(  # noqa: ASYNC220 - set-up
                    [sys.executable, "-m", "bench.realtime_scale", "--client", str(spec), str(workdir / "c.out")],
                    cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                )  # fmt: skip
                await _ready(client_proc)
        await asyncio.sleep(args.settle)
        after = tracemalloc.take_snapshot()
        n = len(urls) - 1
        stats = after.compare_to(before, "lineno")
        total = sum(s.size_diff for s in stats)
        name = "baseline" if args.baseline else "iaze"
        print(f"{name}: {n} idle sockets, traced {total / n / 1024:.1f} KB per socket")
        for s in stats[: args.top]:
            frame = s.traceback[0]
            where = f"{frame.filename.replace(str(ROOT) + '/', '')}:{frame.lineno}"
            print(f"  {s.size_diff / n:8.0f} B/socket  {s.count_diff / n:6.1f} objects/socket  {where}")
        if args.frames > 1:
            # The same difference by whole traceback, each named by its innermost line of ours
            # (backend/ or bench/): which of our calls left the allocation alive.
            ours: dict[str, int] = {}
            for s in after.compare_to(before, "traceback"):
                mine = next((f for f in s.traceback if f.filename.startswith(str(ROOT))), s.traceback[0])
                key = f"{mine.filename.replace(str(ROOT) + '/', '')}:{mine.lineno}"
                ours[key] = ours.get(key, 0) + s.size_diff
            print("by our innermost line:")
            for key, size in sorted(ours.items(), key=lambda kv: -kv[1])[: args.top]:
                print(f"  {size / n:8.0f} B/socket  {key}")
        if args.by_file:
            print("by file:")
            for s in after.compare_to(before, "filename")[: args.top]:
                name = s.traceback[0].filename.replace(str(ROOT) + "/", "")
                print(f"  {s.size_diff / n:8.0f} B/socket  {name}")
        for proc in (first, client_proc):
            assert proc.stdin is not None
            proc.stdin.write("stop\n")
            proc.stdin.flush()
        await client.close()
    finally:
        for proc in (client_proc, redis_proc):
            if proc is not None and proc.poll() is None:
                proc.terminate()
        if server is not None:
            server.should_exit = True
        if serving is not None:
            await asyncio.wait([serving], timeout=10)
        ferretdb.stop(fdb)
        shutil.rmtree(workdir, ignore_errors=True)


async def _ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
    if line.strip() != "ready":
        raise RuntimeError(f"client process failed: {line!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--by-file", action="store_true")
    args = parser.parse_args()
    _run(_main(args))


if __name__ == "__main__":
    main()
