"""A real redis-server on a loopback port, standing in for Evolution's Redis (evolution-redis)."""

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from backend.devtools import ferretdb


def redis_server() -> Iterator[str]:
    """Yields the URL of database 6, the one Evolution's CACHE_REDIS_URI names in compose."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server not installed (apt-get install redis-server)"
    port = ferretdb.free_port()
    workdir = Path(tempfile.mkdtemp(prefix="iaze-evolution-redis-"))
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            said = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, check=False)
            if said.stdout.strip() == "PONG":
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/6"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def seed_keys(url: str) -> dict[bytes, dict[bytes, bytes]]:
    """Two instances' auth-state hashes as Evolution writes them, plus cache entries that are not."""
    import redis

    keys = {
        b"evolution:instance:cm1abc": {
            b"pre-key-1": b'{"private": {"type": "Buffer", "data": "AAEC"}}',
            b"session-5511977776666.0": '{"sessão": "ç"}'.encode(),
            b"app-state-sync-key-AAAAAJ2V": b"",
            b"raw": b"\xff\xfe not utf-8",
        },
        b"evolution:instance:cm2def": {b"sender-key-x": bytes(range(32, 127))},
    }
    client = redis.Redis.from_url(url)
    try:
        for key, fields in keys.items():
            client.hset(key, mapping=fields)  # type: ignore[arg-type]
        client.set(b"evolution:instance:plain-string", b"not a hash")
        client.hset(b"evolution:baileys:cm1abc", mapping={b"retry": b"1"})  # another module's cache
    finally:
        client.close()
    return keys


def keys_in(url: str, pattern: str = "evolution:instance:*") -> dict[bytes, dict[bytes, bytes]]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return {k: client.hgetall(k) for k in client.scan_iter(match=pattern) if client.type(k) == b"hash"}  # type: ignore[misc]
    finally:
        client.close()
