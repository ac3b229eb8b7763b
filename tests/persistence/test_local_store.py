"""The local store belongs to its checkout: it dies with the backend that started it however the
backend dies, a backend never talks to a store it cannot identify as its own data directory, a
taken address gets a clear message, and two checkouts run side by side."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient

from backend.devtools import ferretdb
from tests.persistence.procs import ROOT, Backend


def checkout_backend(home: Path) -> Backend:
    """`python -m backend` as a developer runs it in a checkout whose ./var is `home`: development
    mode, no MONGO_URL, no JWT_SECRET, the ledger file on."""
    home.mkdir(parents=True, exist_ok=True)
    return Backend(
        "",
        "support_chat",
        home / "backend.log",
        extra_env={
            "ENV": "development",
            "MONGO_URL": "",
            "JWT_SECRET": "",
            "FERRETDB_DATA_DIR": str(home / "ferretdb"),
            "LEDGER_FILE": str(home / "deploy-ledger.jsonl"),
        },
    )


def alive(pid: int) -> bool:
    """Running, i.e. neither gone nor a zombie nobody has reaped yet (reparented to a PID 1
    that does not reap, as in some containers)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def store_pid(listen: str) -> int:
    with MongoClient[dict[str, Any]](f"mongodb://{listen}/", serverSelectionTimeoutMS=5000) as c:
        return int(c.admin.command("serverStatus")["pid"])


def until_dead(pid: int, limit_s: float = 60) -> bool:
    """Waits (bounded) for the kernel to deliver the parent-death signal and FerretDB to exit."""
    for _ in range(int(limit_s * 10)):
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_two_checkouts_run_side_by_side_and_a_store_dies_with_its_sigkilled_backend(tmp_path: Path) -> None:
    a, b = checkout_backend(tmp_path / "a"), checkout_backend(tmp_path / "b")
    try:
        a.start(wait_ready=False)
        b.start(wait_ready=False)
        a.wait_ready(120)
        b.wait_ready(120)
        marker_a = json.loads((tmp_path / "a" / "ferretdb" / ferretdb.MARKER).read_text())
        marker_b = json.loads((tmp_path / "b" / "ferretdb" / ferretdb.MARKER).read_text())
        assert marker_a["listen"] != marker_b["listen"] and marker_a["id"] != marker_b["id"]
        pid_a, pid_b = store_pid(marker_a["listen"]), store_pid(marker_b["listen"])
        # Each checkout signs with its own secret.
        assert (tmp_path / "a" / "jwt-secret").read_text() != (tmp_path / "b" / "jwt-secret").read_text()

        a.kill()  # SIGKILL: no shutdown code of the backend runs
        assert until_dead(pid_a), "checkout a's FerretDB outlived its SIGKILLed backend"
        assert alive(pid_b)
        assert httpx.get(f"{b.base_url}/health/ready", timeout=10).status_code == 200

        # The next start of checkout a gets its own store back, with its data and its identity.
        a.start()
        assert json.loads((tmp_path / "a" / "ferretdb" / ferretdb.MARKER).read_text())["id"] == marker_a["id"]
        assert "outcome" in (tmp_path / "a" / "deploy-ledger.jsonl").read_text()
    finally:
        a.stop()
        b.stop()
    assert until_dead(pid_b)


def test_a_second_data_dir_cannot_be_mistaken_for_the_first(tmp_path: Path) -> None:
    first = ferretdb.start_local(tmp_path / "first", log_path=tmp_path / "first.log")
    try:
        assert ferretdb.verify_store(first.url, tmp_path / "first", expect_pid=first.proc.pid) == first.store_id
        # Another data directory, pointed at the first one's address: refused with a clear
        # message, without a single command sent to it that could write.
        second = tmp_path / "second"
        with pytest.raises(ferretdb.StoreUnavailable, match="is taken by a MongoDB-protocol server") as taken:
            ferretdb.start_local(second, listen=first.listen, log_path=tmp_path / "second.log")
        assert f"pid {first.proc.pid}" in str(taken.value) and first.store_id in str(taken.value)
        # Even connected, the second directory's id is not the one this store holds...
        with pytest.raises(ferretdb.StoreUnavailable, match="not this data directory's store"):
            ferretdb.verify_store(first.url, second, expect_pid=None)
        # ...and a server that is not the process started for a directory is not its store.
        with pytest.raises(ferretdb.StoreUnavailable, match="not by the FerretDB started for"):
            ferretdb.verify_store(first.url, tmp_path / "first", expect_pid=first.proc.pid + 1)
        with MongoClient[dict[str, Any]](first.url, serverSelectionTimeoutMS=5000) as c:
            assert [d["id"] for d in c[ferretdb.MARKER_DB].store.find({})] == [first.store_id]

        # The same through `python -m backend`: exit 2 with the reason, no store started.
        env = {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/tmp"),
            "ENV": "development",
            "FERRETDB_DATA_DIR": str(second),
            "FERRETDB_LISTEN": first.listen,
            "LEDGER_FILE": str(tmp_path / "ledger.jsonl"),
            "PORT": str(ferretdb.free_port()),
        }
        done = subprocess.run(
            [sys.executable, "-m", "backend"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 2, done.stderr
        assert "refusing to start: cannot start the local FerretDB" in done.stderr
        assert f"{first.listen} is taken" in done.stderr
    finally:
        ferretdb.stop(first.proc)
    # Restarted, the first directory keeps its address (while free) and its id.
    again = ferretdb.start_local(tmp_path / "first", log_path=tmp_path / "first.log")
    try:
        assert again.store_id == first.store_id and again.listen == first.listen
    finally:
        ferretdb.stop(again.proc)


def test_the_store_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """The mechanism alone: a parent that is SIGKILLed right after starting its store."""
    script = (
        "import sys, pathlib\n"
        "from backend.devtools import ferretdb\n"
        "s = ferretdb.start_local(pathlib.Path(sys.argv[1]))\n"
        "print(s.proc.pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "data")],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert until_dead(child)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
