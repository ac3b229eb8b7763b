"""A local FerretDB (MongoDB wire protocol on SQLite files) for development and tests.

Built on first use from the launcher in tools/ferretdb (Go module proxy only), then started as a
child process. Never used in production: ENV=production requires MONGO_URL.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIR = ROOT / "tools" / "ferretdb"
BINARY = ROOT / "var" / "bin" / "ferretdb-launcher"


def ensure_built(*, quiet: bool = False) -> Path:
    sources = [*SOURCE_DIR.glob("*.go"), SOURCE_DIR / "go.mod", SOURCE_DIR / "go.sum"]
    newest_source = max(p.stat().st_mtime for p in sources if p.exists())
    if BINARY.exists() and BINARY.stat().st_mtime >= newest_source:
        return BINARY
    if shutil.which("go") is None:
        raise RuntimeError("Go is needed to build the local FerretDB (tools/ferretdb); install Go or set MONGO_URL")
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    if not quiet:
        print("building local FerretDB (first run downloads modules; a few minutes)...", file=sys.stderr, flush=True)
    cmd = ["go", "build", "-v", "-o", str(BINARY), "."]
    out = None if not quiet else subprocess.DEVNULL
    subprocess.run(cmd, cwd=SOURCE_DIR, check=True, stdout=out, stderr=out)
    if not quiet:
        print(f"built {BINARY}", file=sys.stderr, flush=True)
    return BINARY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(host: str, port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"FerretDB exited with code {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"FerretDB did not listen on {host}:{port} within {timeout}s")


def start(listen: str, data_dir: str | os.PathLike[str], *, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    binary = ensure_built()
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [str(binary), "-listen", listen, "-data", str(data_dir)],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    host, port = listen.rsplit(":", 1)
    wait_listening(host, int(port), proc=proc)
    return proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
