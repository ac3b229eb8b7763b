"""WORKERS: `python -m backend` serves from several processes (one per core), each a full
stateless backend sharing only the database and Redis; all of them answer, and SIGTERM stops them
all. Without Redis that configuration is refused."""

import subprocess
import time
import uuid
from pathlib import Path

import httpx

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.persistence.procs import Backend
from tests.realtime.conftest import redis_url  # noqa: F401  (the fixture: a real redis-server)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def _serving(pid: int) -> list[int]:
    """Worker processes: children whose command line is a Python process (uvicorn spawns them)."""
    return [c for c in _children(pid) if "python" in Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace")]


def test_two_workers_serve_and_stop_together(mongo_url: str, redis_url: str, tmp_path: Path) -> None:  # noqa: F811
    name = f"t_workers_{uuid.uuid4().hex[:8]}"
    backend = Backend(mongo_url, name, tmp_path / "backend.log", extra_env={"WORKERS": "2", "REDIS_URL": redis_url})
    backend.start(timeout=90)
    try:
        assert backend.proc is not None
        workers = _serving(backend.proc.pid)
        assert len(workers) >= 2, (workers, backend.log_tail())
        with httpx.Client(base_url=backend.base_url, timeout=30) as http:
            for _ in range(20):  # fresh connections, spread over the workers by the kernel
                r = http.post(
                    "/api/v1/auth/login",
                    json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
                    headers={"Connection": "close"},
                )
                assert r.status_code == 200, r.text
    finally:
        backend.stop()
    assert _all_gone(workers), backend.log_tail()


def _all_gone(pids: list[int], within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(_gone(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status  # exited, waiting to be reaped by whoever inherited it


def test_several_workers_without_redis_are_refused_at_start(mongo_url: str, tmp_path: Path) -> None:
    """Revoking a user's access reaches open sockets on other worker processes only through
    Redis: without REDIS_URL, WORKERS>1 refuses to start, saying why, before serving anything."""
    backend = Backend(
        mongo_url, f"t_workers_{uuid.uuid4().hex[:8]}", tmp_path / "backend.log", extra_env={"WORKERS": "2"}
    )
    backend.start(wait_ready=False)
    assert backend.proc is not None
    assert backend.proc.wait(timeout=60) == 2
    assert "WORKERS=2 needs REDIS_URL" in backend.log_tail()
    backend.proc = None
