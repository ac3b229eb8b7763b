"""A connection as the per-message work reads it (connections.get_cached_internal): the webhook's
authentication from this process's copy for SETUP_CACHE_SECONDS; a token changed by this process
refused at once, one changed elsewhere never refusing the new token; a copy saying "inactive"
never drops a delivery (none is dropped for being inactive; whether automatic messages go out is
asked of the store: tests/automation/test_inactive_connection.py)."""

import json
import secrets
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from backend.connections import repository as connection_store
from backend.connections import service as connections
from backend.core.errors import Unauthorized
from backend.core.tenancy import TenantScope
from backend.webhooks import service as webhooks
from backend.webhooks.models import RawEvent
from tests.core.counted_process import counted_process
from tests.factories import make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.webhooks.helpers import text_upsert

CONNECTIONS = "whatsapp_connections"


async def _token(db: Any, connection_id: str) -> str:
    return str((await db.whatsapp_connections.find_one({"_id": connection_id}))["webhook_token"])


async def test_deliveries_authenticate_from_the_copy_and_a_token_rotated_here_is_refused_at_once(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any, settings: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    old = await _token(db, conn["id"])
    async with counted_process(settings, SETUP_CACHE_SECONDS=60) as (here, reads):
        for _ in range(4):  # four deliveries, one after the other
            assert (await webhooks.authenticate(here, conn["id"], old)).id == conn["id"]
        assert reads.take(CONNECTIONS) == 1  # the old code read it four times

        new = secrets.token_urlsafe(32)
        await connection_store.update(here, TenantScope(tenant.id), conn["id"], {"webhook_token": new})
        reads.take(CONNECTIONS)  # the update's own read-back
        with pytest.raises(Unauthorized):
            await webhooks.authenticate(here, conn["id"], old)
        assert (await webhooks.authenticate(here, conn["id"], new)).id == conn["id"]
        with pytest.raises(Unauthorized):  # a wrong token reads the store, like a missing connection
            await webhooks.authenticate(here, conn["id"], "x" * 43)
        assert reads.take(CONNECTIONS) == 2


async def test_a_token_rotated_elsewhere_is_taken_at_once_and_the_old_one_refused_once_the_copy_expires(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Any,
    raw_mongo: AsyncMongoClient[Any],
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    old, new = await _token(db, conn["id"]), secrets.token_urlsafe(32)
    async with (
        counted_process(settings, SETUP_CACHE_SECONDS=60) as (slow, _),
        counted_process(settings, SETUP_CACHE_SECONDS=0.3) as (quick, _),
    ):
        for process in (slow, quick):
            await webhooks.authenticate(process, conn["id"], old)
        # Another process (a second client) writes the document itself.
        await raw_mongo[settings.MONGO_DB].whatsapp_connections.update_one(
            {"_id": conn["id"]}, {"$set": {"webhook_token": new}}
        )
        # Within its time the copy still takes the old token (the staleness allowed) ...
        await webhooks.authenticate(slow, conn["id"], old)
        # ... never refuses the new one (a refused token is checked against the store) ...
        await webhooks.authenticate(slow, conn["id"], new)
        # ... which refreshed the copy: the old one is refused from then on.
        with pytest.raises(Unauthorized):
            await webhooks.authenticate(slow, conn["id"], old)

        async def refused() -> bool:
            try:
                await webhooks.authenticate(quick, conn["id"], old)
            except Unauthorized:
                return True
            return False

        assert await wait_for(refused, timeout=5)  # once the copy expired, without the new token


async def test_a_copy_saying_inactive_does_not_drop_a_delivery_of_a_connection_reactivated_elsewhere(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any, settings: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    conn = await make_connection(client, tenant, evolution)
    url = f"/api/v1/whatsapp-connections/{conn['id']}"
    async with counted_process(settings, SETUP_CACHE_SECONDS=60) as (here, _):
        r = await client.patch(url, json={"active": False}, headers=tenant.headers)  # the API's process
        assert r.status_code == 200, r.text
        copy = await connections.get_cached_internal(here, conn["id"])
        assert copy is not None and not copy.active
        r = await client.patch(url, json={"active": True}, headers=tenant.headers)
        assert r.status_code == 200, r.text
        assert (await connections.get_cached_internal(here, conn["id"])) == copy  # still this process's copy

        body = json.dumps(text_upsert(unique_phone(), "3EB0REACTIVATED", "oi", stamped=True)).encode()
        _, raw_id = await webhooks.receive(
            here, connection_id=conn["id"], token=copy.webhook_token, event_hint=None, body=body, lanes=1
        )
        raw = RawEvent.model_validate(await db.webhook_events_raw.find_one({"_id": raw_id}))
        # Handed the inactive copy, as a walk of this process would be: processed all the same.
        assert (await webhooks.process(here, raw, conn=copy)).outcome == "processed"

        async def stored() -> Any:
            return await db.messages.find_one({"_id": webhooks.message_id_for(conn["id"], "3EB0REACTIVATED")})

        assert await wait_for(stored, timeout=10)
