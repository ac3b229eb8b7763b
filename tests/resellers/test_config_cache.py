"""A tenant's config as the per-message work reads it (resellers.service.config_internal): from
this process's copy for SETUP_CACHE_SECONDS, a change through the service seen at once by the
process that made it, and one made elsewhere seen once the copy expired."""

import asyncio
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from backend.core.ids import new_id
from backend.core.tenancy import Actor
from backend.resellers import service as resellers
from backend.resellers.schemas import ResellerConfigUpdate
from tests.core.counted_process import counted_process
from tests.factories import make_tenant
from tests.fakes.harness import wait_for


async def test_a_process_reads_a_config_once_per_ttl_and_its_own_change_at_once(
    client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, departments=0, agents=0)
    owner = Actor(id=tenant.owner_id, role="reseller", name="Dona", reseller_id=tenant.id)
    async with counted_process(settings, SETUP_CACHE_SECONDS=60) as (db, reads):
        for _ in range(5):  # five messages of the tenant
            assert (await resellers.config_internal(db, tenant.id)).welcome_message == ""
        assert reads.take("reseller_configs") == 1  # the old code read it five times

        await resellers.update_config(db, owner, data=ResellerConfigUpdate(welcome_message="Olá!", timezone="UTC"))
        reads.take("reseller_configs")  # the update's own read-back
        assert (await resellers.config_internal(db, tenant.id)).welcome_message == "Olá!"
        assert await resellers.timezone_of(db, tenant.id) == "UTC"  # the reports' read
        assert reads.take("reseller_configs") == 1


async def test_a_change_made_by_another_process_is_seen_once_the_copy_expires(
    client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Any, raw_mongo: AsyncMongoClient[Any]
) -> None:
    tenant = await make_tenant(client, admin_headers, departments=0, agents=0)
    configs = raw_mongo[settings.MONGO_DB].reseller_configs
    async with (
        counted_process(settings, SETUP_CACHE_SECONDS=60) as (slow, _),
        counted_process(settings, SETUP_CACHE_SECONDS=0.3) as (quick, _),
    ):
        for db in (slow, quick):
            assert (await resellers.config_internal(db, tenant.id)).away_message == ""
        # Another process (a second client) writes the document itself.
        await configs.update_one({"_id": tenant.id}, {"$set": {"away_message": "Fechados"}})
        # Within its time the copy answers (the staleness SETUP_CACHE_SECONDS allows) ...
        assert (await resellers.config_internal(slow, tenant.id)).away_message == ""

        # ... and once it expired, the store does.
        async def seen() -> bool:
            return (await resellers.config_internal(quick, tenant.id)).away_message == "Fechados"

        assert await wait_for(seen, timeout=5)


async def test_with_no_cache_time_every_read_goes_to_the_store(
    client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Any, raw_mongo: AsyncMongoClient[Any]
) -> None:
    tenant = await make_tenant(client, admin_headers, departments=0, agents=0)
    async with counted_process(settings, SETUP_CACHE_SECONDS=0) as (db, reads):
        await resellers.config_internal(db, tenant.id)
        await raw_mongo[settings.MONGO_DB].reseller_configs.update_one(
            {"_id": tenant.id}, {"$set": {"csat_enabled": True}}
        )
        assert (await resellers.config_internal(db, tenant.id)).csat_enabled is True
        assert reads.take("reseller_configs") == 2


async def test_a_tenant_without_a_config_reads_the_defaults_once_per_ttl_and_a_config_created_elsewhere_after_it(
    settings: Any, raw_mongo: AsyncMongoClient[Any]
) -> None:
    tenant_id = new_id()
    async with (
        counted_process(settings, SETUP_CACHE_SECONDS=60) as (slow, reads),
        counted_process(settings, SETUP_CACHE_SECONDS=0.3) as (quick, _),
    ):
        for _ in range(3):
            assert (await resellers.config_internal(slow, tenant_id)).welcome_message == ""
        assert reads.take("reseller_configs") == 1
        assert (await resellers.config_internal(quick, tenant_id)).welcome_message == ""
        await raw_mongo[settings.MONGO_DB].reseller_configs.insert_one(
            {"_id": tenant_id, "reseller_id": tenant_id, "welcome_message": "Bem-vindo"}
        )

        async def seen() -> bool:
            return (await resellers.config_internal(quick, tenant_id)).welcome_message == "Bem-vindo"

        assert await wait_for(seen, timeout=5)


async def test_a_read_sent_before_a_change_here_and_answered_after_it_is_not_kept(
    client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The leader's read has its (old) document in hand when the change is written and forgotten;
    # kept, it would answer every read for SETUP_CACHE_SECONDS with the old config.
    tenant = await make_tenant(client, admin_headers, departments=0, agents=0)
    owner = Actor(id=tenant.owner_id, role="reseller", name="Dona", reseller_id=tenant.id)
    read, written = asyncio.Event(), asyncio.Event()
    original = AsyncCollection.find_one
    held: list[Any] = []

    async def held_once(self: AsyncCollection[Any], filter: Any = None, *args: Any, **kwargs: Any) -> Any:
        doc = await original(self, filter, *args, **kwargs)
        if self.name == "reseller_configs" and not held:
            held.append(doc)
            read.set()
            await written.wait()  # answered only after the change was written and forgotten
        return doc

    monkeypatch.setattr(AsyncCollection, "find_one", held_once)
    async with counted_process(settings, SETUP_CACHE_SECONDS=60) as (db, reads):
        leader = asyncio.create_task(resellers.config_internal(db, tenant.id))
        await read.wait()
        await resellers.update_config(db, owner, data=ResellerConfigUpdate(welcome_message="Olá!"))
        written.set()
        assert (await leader).welcome_message == ""  # the answer of a read sent before the change
        reads.take("reseller_configs")
        assert (await resellers.config_internal(db, tenant.id)).welcome_message == "Olá!"
        assert reads.take("reseller_configs") == 1  # from the store, not the leader's old answer
