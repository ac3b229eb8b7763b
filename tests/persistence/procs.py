"""Real processes for the persistence tests: FerretDB on an on-disk data dir and the backend as
`python -m backend`, each on a free loopback port, stopped (or SIGKILLed) by the test."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from backend.devtools import ferretdb
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, JWT_SECRET

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Ferret:
    data_dir: Path
    port: int = field(default_factory=ferretdb.free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self.proc = ferretdb.start(f"127.0.0.1:{self.port}", self.data_dir, log_path=self.data_dir / "ferretdb.log")

    def stop(self) -> None:
        if self.proc is not None:
            ferretdb.stop(self.proc)
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None


@dataclass
class Backend:
    mongo_url: str
    db_name: str
    log_path: Path
    version: str = "test"
    code_dir: Path = ROOT
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=ferretdb.free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
        return {
            **keep,
            "PYTHONPATH": str(self.code_dir),
            "ENV": "test",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "MONGO_URL": self.mongo_url,
            "MONGO_DB": self.db_name,
            "MONGO_TIMEOUT_MS": "3000",
            "JWT_SECRET": JWT_SECRET,
            "ADMIN_EMAIL": ADMIN_EMAIL,
            "ADMIN_PASSWORD": ADMIN_PASSWORD,
            "APP_VERSION": self.version,
            "LOG_LEVEL": "INFO",
            "LOG_JSON": "true",
            "LEDGER_FILE": "",
            **self.extra_env,
        }

    def start(self, *, wait_ready: bool = True, timeout: float = 60) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend"],
            cwd=self.code_dir,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if wait_ready:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"backend exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"backend not ready within {timeout}s:\n{self.log_tail()}")

    def wait_started(self, timeout: float = 60) -> int:
        """Waits until the backend answers /health/ready at all; returns the status code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return httpx.get(f"{self.base_url}/health/ready", timeout=2).status_code
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"backend did not answer within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
