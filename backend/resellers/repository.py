"""Queries on `resellers` (the tenants) and `reseller_configs` (one per tenant, keyed by its id)."""

from typing import Any

from backend.core import single_flight
from backend.core.conditional import one_writer
from backend.core.db import Database
from backend.core.tenancy import TenantScope
from backend.resellers.models import Reseller, ResellerConfig

COLLECTION = "resellers"
CONFIGS = "reseller_configs"
TOKEN_EPOCH = "token_epoch"  # Reseller.token_epoch; absent on older documents: 0


async def get(db: Database, reseller_id: str) -> Reseller | None:
    return Reseller.load(await db[COLLECTION].find_one({"_id": reseller_id}))


async def insert(db: Database, reseller: Reseller) -> None:
    await db[COLLECTION].insert_one(reseller.stored())


async def list_page(db: Database, *, before_id: str | None, limit: int) -> list[Reseller]:
    """The admin's list, of every tenant: one that does not read is logged and passed over."""
    return await TenantScope(None, every=True).page_by_id(
        db[COLLECTION], Reseller, {}, before_id=before_id, limit=limit
    )


async def update(
    db: Database, reseller_id: str, changes: dict[str, Any], *, revoke_tokens: bool = False
) -> Reseller | None:
    update: dict[str, Any] = {"$set": changes}
    if revoke_tokens:
        # In the same write as the deactivation: no stored state is ever "inactive at the old
        # epoch", so no write that read this document can put the old epoch back while leaving
        # the tenant inactive.
        update["$inc"] = {TOKEN_EPOCH: 1}
    # Writes of a tenant take turns: on FerretDB an update writes the whole document back, so a
    # rename that read the tenant before a deactivation would otherwise write back the old epoch
    # (and `active`) after it, reviving the tokens. MongoDB's update is atomic anyway. Where it
    # ends: across processes on FerretDB such a write-back undoes the deactivation itself as well,
    # the limit every write of this document shares.
    async with one_writer(db, COLLECTION, reseller_id):
        await db[COLLECTION].update_one({"_id": reseller_id}, update)
    return await get(db, reseller_id)


async def session_epoch(db: Database, reseller_id: str) -> int | None:
    """The tenant's token epoch while it is active; None while it is inactive or absent. One read,
    the one every authenticated request makes of its tenant."""
    doc = await db[COLLECTION].find_one({"_id": reseller_id}, projection={"active": 1, TOKEN_EPOCH: 1})
    if doc is None or not doc.get("active", True):  # Reseller.active defaults to True
        return None
    return int(doc.get(TOKEN_EPOCH, 0))


async def insert_config(db: Database, config: ResellerConfig) -> None:
    try:
        await db[CONFIGS].insert_one(config.stored())
    finally:
        single_flight.forget(db[CONFIGS], config.id)


async def get_config(db: Database, scope: TenantScope, reseller_id: str) -> ResellerConfig | None:
    return ResellerConfig.load(await scope.get(db[CONFIGS], reseller_id))


async def get_config_cached_internal(db: Database, reseller_id: str) -> ResellerConfig | None:
    """The config as this process read it less than SETUP_CACHE_SECONDS ago, else read
    (resellers.service.config_internal says what that allows); its absence too (a tenant without
    one reads the defaults: a config created elsewhere is one more change seen that much later)."""
    doc = await single_flight.find_by_id(db[CONFIGS], reseller_id, cached=True, keep_missing=True)
    return ResellerConfig.load(
        doc if doc is not None and TenantScope(reseller_id).owns(doc.get("reseller_id")) else None
    )


async def update_config(
    db: Database, scope: TenantScope, reseller_id: str, changes: dict[str, Any]
) -> ResellerConfig | None:
    """The one write of a stored config: this process's copy is forgotten once it returned (or
    failed, having maybe written)."""
    try:
        async with one_writer(db, CONFIGS, reseller_id):  # two people saving different settings at once
            await db[CONFIGS].update_one({"_id": reseller_id}, {"$set": changes})
    finally:
        single_flight.forget(db[CONFIGS], reseller_id)
    return await get_config(db, scope, reseller_id)
