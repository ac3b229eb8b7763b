from typing import Any

import httpx
import pytest

from tests.factories import Tenant, make_tenant
from tests.fakes.harness import (
    FakeEvolution,
    app,
    backend_port,
    evolution,
    make_connection,
    settings,
    settings_overrides,
)

__all__ = ["app", "backend_port", "evolution", "settings", "settings_overrides"]


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    """A tenant per test module (a module that needs another kind defines its own)."""
    return await make_tenant(client, admin_headers)


@pytest.fixture(scope="module")
async def conn(client: httpx.AsyncClient, tenant: Tenant, evolution: FakeEvolution) -> dict[str, Any]:
    """The module tenant's WhatsApp connection on the fake Evolution, open."""
    return await make_connection(client, tenant, evolution)
