"""Fixtures for WhatsApp tests: the fake Evolution API as a real process on loopback, and the
backend served by uvicorn on a real loopback port so the fake can post webhooks to it.

A test directory's conftest imports these; a test module may define `settings_overrides`."""

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from backend.app import create_app
from backend.core.config import Settings
from backend.devtools import ferretdb
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]


class FakeEvolution:
    """Handle on the fake's process. stop()/start() on the same port is "provider down"."""

    def __init__(self, log_path: Path) -> None:
        self.port = ferretdb.free_port()
        self.api_key = "fake-evolution-global-key"
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.evolution_fake", "--port", str(self.port), "--api-key", self.api_key],
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fake Evolution exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/_control/health", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("fake Evolution did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    async def control(self, method: str, path: str, json: Any = None) -> Any:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as c:
            r = await c.request(method, f"/_control/{path}", json=json)
            r.raise_for_status()
            return r.json()

    async def mode(self, mode: str, **extra: Any) -> None:
        await self.control("POST", "mode", {"mode": mode, **extra})

    async def sent(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.control("GET", "sent")
        return result

    async def calls_to(self, path: str) -> int:
        """How many calls the fake took whose path contains `path`."""
        return len([c for c in await self.control("GET", "calls") if path in c["path"]])

    async def set_webhook(self, instance: str, webhook: dict[str, Any]) -> None:
        """Through Evolution's own /webhook/set, as an operator in its manager would."""
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as c:
            r = await c.post(f"/webhook/set/{instance}", json={"webhook": webhook}, headers={"apikey": self.api_key})
            assert r.status_code == 201, r.text

    async def delete_instance(self, instance: str) -> None:
        """Through Evolution's own /instance/delete (its store lost would answer the same since)."""
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as c:
            r = await c.delete(f"/instance/delete/{instance}", headers={"apikey": self.api_key})
            assert r.status_code == 200, r.text

    async def inbound(self, instance: str, phone: str, text: str, **extra: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.control(
            "POST", "inbound", {"instance": instance, "phone": phone, "text": text, **extra}
        )
        return result


@pytest.fixture(scope="module")
def evolution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeEvolution]:
    fake = FakeEvolution(tmp_path_factory.mktemp("evolution") / "fake.log")
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture(scope="module")
def backend_port() -> int:
    return ferretdb.free_port()


@pytest.fixture(scope="module")
def settings(
    mongo_url: str, db_name: str, evolution: FakeEvolution, backend_port: int, settings_overrides: dict[str, Any]
) -> Settings:
    values: dict[str, Any] = {
        "EVOLUTION_BASE_URL": evolution.url,
        "EVOLUTION_API_KEY": evolution.api_key,
        "EVOLUTION_TIMEOUT_SECONDS": 5.0,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{backend_port}",
        "OUTBOUND_POLL_SECONDS": 0.1,
        "OUTBOUND_BACKOFF_BASE_SECONDS": 0.1,
        "OUTBOUND_BACKOFF_MAX_SECONDS": 1.0,
        "OUTBOUND_MAX_ATTEMPTS": 3,
        "OUTBOUND_LEASE_SECONDS": 10.0,
        "WEBHOOK_WAITING_CHECK_SECONDS": 0.5,
        **settings_overrides,
    }
    return make_settings(mongo_url, db_name, **values)


@pytest.fixture(scope="module")
async def app(settings: Settings, backend_port: int) -> AsyncIterator[Any]:
    """The backend on a real port (uvicorn runs the lifespan, so the worker runs too)."""
    application = create_app(settings)
    config = uvicorn.Config(application, host="127.0.0.1", port=backend_port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(600):
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    assert server.started, "backend did not start"
    assert application.state.startup.ready, application.state.startup.errors
    try:
        yield application
    finally:
        server.should_exit = True
        await task


async def wait_for(predicate: Any, *, timeout: float = 15.0, interval: float = 0.05) -> Any:  # noqa: ASYNC109
    """Polls an async predicate until it returns something truthy (no fixed sleeps in tests)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(interval)


async def last_within(probe: Any, *, timeout: float) -> Any:  # noqa: ASYNC109
    """Polls `probe` until it answers something truthy or `timeout` passes; answers its last value
    (the caller asserts on it, with a message of its own, rather than wait_for's)."""
    try:
        return await wait_for(probe, timeout=timeout)
    except AssertionError:
        return await probe()


async def make_connection(
    client: httpx.AsyncClient, tenant: Any, evolution: FakeEvolution, *, open_: bool = True, processed: bool = True
) -> dict[str, Any]:
    """A connection created through the API; `open_`: the fake phone scans the QR code, and,
    with `processed`, the connection reads "open" before this returns: the phone's webhook is
    acknowledged before it is processed, and a conversation started in between is refused (409,
    rightly). Modules that run no processor (they process what is pending themselves) pass
    `processed=False`."""
    from tests.factories import unique

    instance = unique("inst-")
    r = await client.post(
        "/api/v1/whatsapp-connections",
        json={
            "name": unique("Loja "),
            "provider": "evolution",
            "instance_name": instance,
            "default_department_id": tenant.departments[0]["id"],
        },
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    conn: dict[str, Any] = r.json()
    if open_:
        result = await evolution.control("POST", "state", {"instance": instance, "state": "open"})
        assert result["status_code"] == 200, result
        conn["status"] = "open"
        if processed:

            async def stored_open() -> bool:
                got = await client.get(f"/api/v1/whatsapp-connections/{conn['id']}", headers=tenant.headers)
                return got.status_code == 200 and got.json()["status"] == "open"

            await wait_for(stored_open)
    return conn
