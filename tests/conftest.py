"""Test harness: a real MongoDB-protocol server, never a mock.

MONGO_URL when given (e.g. a real MongoDB); otherwise a FerretDB v1.24.2 started here on
loopback, with on-disk storage in a temporary directory. Each test module gets its own database.
"""

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from backend.app import create_app
from backend.core.config import Settings
from backend.core.db import durable_database
from backend.devtools import ferretdb
from tests.monitoring import CommandRecorder
from tests.tcp_relay import browser, direct, store_proxy, store_relay

# The store relay's fixtures, for any module (tests/tcp_relay.py).
__all__ = ["browser", "direct", "store_proxy", "store_relay"]

# The deploy ledger's file copy is on by default in every mode (./var/deploy-ledger.jsonl). Test
# stores are fresh on every run under reused database names, which that file would rightly take
# for a swapped database: off for this process and every backend or worker process a test starts
# with its environment, unless a test asks for one (tests/persistence).
os.environ["LEDGER_FILE"] = ""

ADMIN_EMAIL = "admin@test.iaze"
ADMIN_PASSWORD = "admin-pass-123"
JWT_SECRET = "test-secret-" + "x" * 40


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("MONGO_URL")
    if given:
        yield given
        return
    port = ferretdb.free_port()
    data = tmp_path_factory.mktemp("ferretdb")
    proc = ferretdb.start(f"127.0.0.1:{port}", data, log_path=data / "ferretdb.log")
    try:
        yield f"mongodb://127.0.0.1:{port}/"
    finally:
        ferretdb.stop(proc)


def make_settings(mongo_url: str, db_name: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ENV": "test",
        "MONGO_URL": mongo_url,
        "MONGO_DB": db_name,
        "JWT_SECRET": JWT_SECRET,
        "ADMIN_EMAIL": ADMIN_EMAIL,
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
        "LOG_JSON": True,
        "LOG_LEVEL": "WARNING",
        # The deploy ledger's file copy is off unless a test asks for one (tests/persistence).
        "LEDGER_FILE": "",
        # The connection watch asks the provider on its own schedule: on only where a test drives it.
        "CONNECTION_WATCH_ENABLED": False,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def db_name(request: pytest.FixtureRequest) -> str:
    return f"t_{request.module.__name__.rsplit('.', 1)[-1][:30]}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def settings(mongo_url: str, db_name: str) -> Settings:
    return make_settings(mongo_url, db_name)


@pytest.fixture(scope="module")
async def app(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        assert application.state.startup.ready, application.state.startup.errors
        yield application


@pytest.fixture(scope="module")
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def db(app: Any) -> Any:
    return app.state.db


@pytest.fixture(scope="module")
async def raw_mongo(mongo_url: str) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    c: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    yield c
    await c.close()


@pytest.fixture(scope="module")
async def admin_headers(client: httpx.AsyncClient) -> dict[str, str]:
    from tests.factories import login

    return await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)


@pytest.fixture
async def recorded_and_rival(mongo_url: str) -> AsyncIterator[tuple[Any, Any, CommandRecorder]]:
    """Two processes on a fresh database (a client and a runtime each): the first one's commands
    recorded, the second its rival."""
    recorder = CommandRecorder()
    first: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True, event_listeners=[recorder])
    second: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    name = f"t_rival_{uuid.uuid4().hex[:8]}"
    try:
        yield durable_database(first, name), durable_database(second, name), recorder
    finally:
        await first.close()
        await second.close()
