"""Queries on `whatsapp_connections`. Looked up by `_id` on the hot path (every webhook)."""

from collections.abc import Mapping
from typing import Any

from backend.connections.models import Connection
from backend.core import single_flight
from backend.core.conditional import one_writer, update_if
from backend.core.db import Database
from backend.core.indexes import ASC, DESC, declare
from backend.core.schemas import readable
from backend.core.tenancy import TenantScope

COLLECTION = "whatsapp_connections"

declare(COLLECTION, [("reseller_id", ASC), ("_id", DESC)], name="tenant_id", purpose="a tenant's connections")


async def get_internal(db: Database, connection_id: str) -> Connection | None:
    """For webhooks and the worker, which act for the provider, not for a user."""
    return Connection.load(await db[COLLECTION].find_one({"_id": connection_id}))


async def get_shared_internal(db: Database, connection_id: str) -> Connection | None:
    """`get_internal`, sharing the read with concurrent callers (webhook bursts, backend/core/single_flight.py)."""
    return Connection.load(await single_flight.find_by_id(db[COLLECTION], connection_id))


async def get_cached_internal(db: Database, connection_id: str) -> Connection | None:
    """The connection as this process read it less than SETUP_CACHE_SECONDS ago, else read (the
    webhook's authentication, the processor, the media fetch: once per message before).

    A change made in this process is seen at once (`update` forgets the copy); one made in another
    process up to SETUP_CACHE_SECONDS later here. Per field, what that allows the readers:
    - `id`, `reseller_id`, `provider`, `instance_name`: never change once written.
    - `webhook_token`: never changed by the application today; a token changed in another process
      would still be accepted here for that long. A token the copy refuses is checked against the
      store before the delivery is refused (webhooks.service.authenticate, with `kept_internal`), so a new
      token is never refused because of the copy.
    - `active`: decides nothing the copy answers. Deliveries are processed whatever it says
      (webhooks.service.process); whether automatic messages are queued is asked of the store
      (automation.service `_speaks`); media is fetched whatever it says (media.worker).
    - `default_department_id`, the menu's fields: settings; a change takes effect that much later
      in the other processes (a delivery processed from a backlog always used the value read at
      its acknowledgement or its walk's start, older still).
    - `status`, `qr_code`: compared before recording the provider's news; those events read the
      store instead (webhooks.service._apply), as a skipped write would leave a wrong status.
    Outbound sending (`of_ticket`) and the API's own reads are not cached."""
    return Connection.load(await single_flight.find_by_id(db[COLLECTION], connection_id, cached=True))


def kept_internal(db: Database, connection_id: str) -> Connection | None:
    """`get_cached_internal`'s copy when there is one, None without reading: for readers that check what
    the copy says before trusting it, and go to the store (`get_shared_internal`) otherwise."""
    return Connection.load(single_flight.kept(db[COLLECTION], connection_id))


async def get(db: Database, scope: TenantScope, connection_id: str) -> Connection | None:
    return Connection.load(await scope.get(db[COLLECTION], connection_id))


async def insert(db: Database, connection: Connection) -> None:
    try:
        await db[COLLECTION].insert_one(connection.stored())
    finally:
        single_flight.forget(db[COLLECTION], connection.id)


async def names_defaulting_to(db: Database, scope: TenantScope, department_id: str) -> list[str]:
    """The names of the scope's connections (active or not) whose new conversations open in
    `department_id` (their default department), oldest first. A tenant has a handful: no index."""
    query = scope.filter({"default_department_id": department_id})
    docs = await db[COLLECTION].find(query, {"name": 1}).sort("_id", ASC).to_list(None)
    return [str(d["name"]) for d in docs]


async def bound_internal(db: Database) -> list[Connection]:
    """Every tenant's connections that have their instance at the provider, deactivated ones too
    (what their clients write is still filed), for the connection watch and
    scripts/catch_up_messages.py: a scan of a collection of thousands at most. A document that
    does not read as a connection is passed over, logged with its `_id` at every scan: one bad
    document must not keep every other tenant's connection from being watched and caught up
    (it stays as it is, for an operator to mend)."""
    docs = await db[COLLECTION].find({"provider_created": True}).sort("_id", ASC).to_list(None)
    return readable(Connection, docs, what="connection", id_as="connection_id")


async def list_page(db: Database, scope: TenantScope, *, before_id: str | None, limit: int) -> list[Connection]:
    return await scope.page_by_id(db[COLLECTION], Connection, {}, before_id=before_id, limit=limit)


async def update(
    db: Database,
    scope: TenantScope,
    connection_id: str,
    changes: dict[str, Any],
    *,
    condition: Mapping[str, Any] | None = None,
) -> Connection:
    """Sets `changes` on a connection of `scope` (read before; never deleted) and reads it back.
    The one write of a stored connection: this process's copy is forgotten once it returned (or
    failed, having maybe written: `get_cached_internal`).

    Its writers take turns (`one_writer`): an admin's settings (`service.update`) and the
    provider's news (`service.record_status`, from a webhook that can land at the same moment)
    would otherwise, on FerretDB, undo each other: a menu switched on, then off again by a status
    write that read before it; or an "open" put back to "connecting", holding every send.
    `condition`: written only while the connection matches it (core/conditional.py); the
    connection is read back either way."""
    async with one_writer(db, COLLECTION, connection_id):
        try:
            if condition is None:
                await db[COLLECTION].update_one({"_id": connection_id}, {"$set": changes})
            else:
                await update_if(db, COLLECTION, connection_id, dict(condition), {"$set": changes})
        finally:
            single_flight.forget(db[COLLECTION], connection_id)
    updated = await get(db, scope, connection_id)
    assert updated is not None
    return updated
