"""Realtime harness: a real redis-server and real backend processes (uvicorn) on loopback, and a
websocket client helper. Processes started here are stopped here."""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from backend.core.config import Settings
from backend.devtools import ferretdb
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, JWT_SECRET, make_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:  # .ci/run installs it; a developer machine without it must say so loudly
        pytest.fail("redis-server not installed (apt-get install redis-server)")
    port = ferretdb.free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            ok = subprocess.run(
                ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, check=False
            ).stdout.strip()
            if ok == "PONG":
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def settings(mongo_url: str, db_name: str, redis_url: str) -> Settings:
    """The in-test app (used to create data through the API) announces on the same Redis."""
    return make_settings(mongo_url, db_name, REDIS_URL=redis_url, REALTIME_POLL_SECONDS=0.5)


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, token: str, since: int | None = None) -> str:
        url = f"ws://127.0.0.1:{self.port}/api/v1/ws?token={token}"
        return url if since is None else f"{url}&since={since}"

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(mongo_url: str, db_name: str, workdir: Path, **overrides: Any) -> Server:
    port = ferretdb.free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("REALTIME_", "REDIS_", "MONGO_"))},
        "PYTHONPATH": str(ROOT),
        "ENV": "test",
        "MONGO_URL": mongo_url,
        "MONGO_DB": db_name,
        "JWT_SECRET": JWT_SECRET,
        "ADMIN_EMAIL": ADMIN_EMAIL,
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
        "LOG_LEVEL": "WARNING",
        **{k: str(v) for k, v in overrides.items()},
    }
    log_path = workdir / f"server-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "backend.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=workdir,  # no stray .env from the checkout
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(port, proc, log_path)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{server.http}/health/ready", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"server not ready: {log_path.read_text()[-2000:]}")
        time.sleep(0.1)


# Small values so the tests see heartbeats, replay limits, polls and full queues quickly. No
# periodic user re-check within a test: access changes must reach open sockets by notice.
SERVER_OPTIONS = {
    "REALTIME_HEARTBEAT_SECONDS": 1,
    "REALTIME_RECHECK_SECONDS": 3600,
    "REALTIME_QUEUE_SIZE": 16,
    "REALTIME_REPLAY_MAX": 40,
    "REALTIME_POLL_SECONDS": 0.5,
}


@pytest.fixture(scope="module")
def servers(
    app: Any, mongo_url: str, db_name: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Server]]:
    """Two backend processes on one database and one Redis (after the in-test app set it up)."""
    workdir = tmp_path_factory.mktemp("servers")
    started: list[Server] = []
    try:
        for _ in range(2):
            started.append(start_server(mongo_url, db_name, workdir, REDIS_URL=redis_url, **SERVER_OPTIONS))
        yield started
    finally:
        for server in started:
            server.stop()


def bearer(headers: dict[str, str]) -> str:
    return headers["Authorization"].split(" ", 1)[1]


# How long a test waits for what must come (a frame, a close). Only a bound: a wait ends as soon
# as its frame arrives, and what these tests prove never hinges on its size (the mechanisms they
# tell apart, a notice against the periodic re-check, are an hour apart), so it is sized for CI's
# loaded 2-core machine, where a few seconds proved too short. Absence is judged by `drain`.
WAIT = 30.0


@dataclass
class Socket:
    """A websocket client that records what it got; pings are kept apart from the rest."""

    conn: ClientConnection
    frames: list[dict[str, Any]] = field(default_factory=list)
    pings: int = 0

    @property
    def events(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "event"]

    @property
    def seqs(self) -> list[int]:
        return [f["seq"] for f in self.events]

    async def next(self, within: float = WAIT) -> dict[str, Any]:
        """The next frame that is not a ping; `within` bounds the whole wait, pings included."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            left = max(0.0, deadline - loop.time())
            frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.conn.recv(), left))
            if frame["type"] == "ping":
                self.pings += 1
                continue
            self.frames.append(frame)
            return frame

    async def until_seq(self, seq: int, within: float = WAIT) -> list[dict[str, Any]]:
        """Reads until an event with seq >= `seq` arrived; returns the events read."""
        start = len(self.events)
        deadline = asyncio.get_running_loop().time() + within
        while not self.events or self.events[-1]["seq"] < seq:
            await self.next(max(0.01, deadline - asyncio.get_running_loop().time()))
        return self.events[start:]

    async def drain(self, quiet: float = 0.4) -> list[dict[str, Any]]:
        """Reads whatever arrives until nothing did for `quiet` seconds."""
        start = len(self.events)
        try:
            while True:
                await self.next(quiet)
        except TimeoutError:
            pass
        return self.events[start:]

    async def until_ping(self, within: float = WAIT) -> None:
        """Reads until the next ping; the frames before it are kept."""
        async with asyncio.timeout(within):
            while True:
                frame: dict[str, Any] = json.loads(await self.conn.recv())
                if frame["type"] == "ping":
                    self.pings += 1
                    return
                self.frames.append(frame)

    async def close_code(self, within: float = WAIT) -> int | None:
        try:
            while True:
                await self.next(within)
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None

    async def close(self) -> None:
        await self.conn.close()


async def open_socket(url: str, **kwargs: Any) -> Socket:
    conn = await connect(url, open_timeout=10, close_timeout=2, max_size=2**22, **kwargs)
    return Socket(conn)


async def open_greeted(url: str, sockets: list[Socket]) -> Socket:
    """A socket that got its hello, closed after the test by the `sockets` fixture's list."""
    s = await open_socket(url)
    sockets.append(s)
    assert (await s.next())["type"] == "hello"
    return s


@pytest.fixture
async def sockets() -> AsyncIterator[list[Socket]]:
    """Every socket a test opens through this list is closed after it."""
    opened: list[Socket] = []
    yield opened
    for s in opened:
        with contextlib.suppress(Exception):
            await s.close()
