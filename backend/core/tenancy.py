"""Tenant scoping, in one form: every repository read of a tenant-owned collection takes a
`TenantScope` and starts from it; reads done for no user are named `*_internal`
(tests/core/test_tenancy_form.py holds every repository to it; docs/ARCHITECTURE.md, Tenancy)."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Literal, TypeVar

from pydantic import BaseModel
from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from backend.core.schemas import readable

Role = Literal["admin", "reseller", "agent", "client"]
Doc = dict[str, Any]
M = TypeVar("M", bound=BaseModel)

# Collections whose documents carry the owning reseller's id. Not here: `resellers` (the tenants
# themselves) and the provider-side logs (webhook_events_raw, outbox*), read by workers only.
_CONVERSATIONS = ("tickets", "messages", "ticket_events", "ticket_tags")
_PEOPLE_AND_SETUP = ("users", "departments", "quick_replies", "whatsapp_connections", "reseller_configs")
TENANT_OWNED = frozenset(_CONVERSATIONS + _PEOPLE_AND_SETUP)


@dataclass(frozen=True)
class TenantScope:
    """The tenants a read may return: one (`reseller_id`, also built from a known tenant for work
    done with no user, e.g. a webhook's connection), or every one (`every`: the admin)."""

    reseller_id: str | None
    every: bool = False

    def owns(self, reseller_id: str | None) -> bool:
        return self.every or reseller_id == self.reseller_id

    def filter(self, query: Doc | None = None) -> Doc:
        return {**(query or {})} if self.every else {**(query or {}), "reseller_id": self.reseller_id}

    async def get(self, collection: AsyncCollection[Doc], doc_id: str) -> Doc | None:
        """By `_id` alone, the tenant checked on the document: `{_id}` is the only filter FerretDB
        hands to its index, so adding the tenant to the query made it scan."""
        doc = await collection.find_one({"_id": doc_id})
        return doc if doc is not None and self.owns(doc.get("reseller_id")) else None

    async def page_by_id(
        self, collection: AsyncCollection[Doc], model: type[M], query: Doc, *, before_id: str | None, limit: int
    ) -> list[M]:
        """Newest `_id` first, below `before_id` when given (the id-cursor lists), as `model`s: up
        to `limit`, passing over documents that do not read (`readable_page`)."""

        async def read(after: Doc | None, n: int) -> list[Doc]:
            below = before_id if after is None else after["_id"]
            scoped = self.filter({**query, "_id": {"$lt": below}} if below else query)
            return await collection.find(scoped).sort("_id", DESCENDING).limit(n).to_list(length=n)

        return await readable_page(read, model, limit, what=collection.name)

    async def page_by_time(
        self,
        collection: AsyncCollection[Doc],
        model: type[M],
        query: Doc,
        key: str,
        *,
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> list[M]:
        """Newest (`key`, `_id`) first, strictly before `before` when given (the time-cursor
        lists), as `model`s: up to `limit`, passing over documents that do not read
        (`readable_page`). One whose `key` is no time ends the read: newest first, the store puts
        every time before what a slip leaves there instead (text, a number, null, nothing)."""

        async def read(after: Doc | None, n: int) -> list[Doc]:
            at_and_id = before if after is None else _time_of(after, key)
            scoped = self.filter(query)
            if at_and_id is not None:
                at, last_id = at_and_id
                scoped = {"$and": [scoped, {"$or": [{key: {"$lt": at}}, {key: at, "_id": {"$lt": last_id}}]}]}
            cursor = collection.find(scoped).sort([(key, DESCENDING), ("_id", DESCENDING)]).limit(n)
            return await cursor.to_list(length=n)

        return await readable_page(read, model, limit, what=collection.name, ends=lambda d: _time_of(d, key) is None)


def _time_of(doc: Doc, key: str) -> tuple[datetime, str] | None:
    at = doc.get(key)
    return (at, doc["_id"]) if isinstance(at, datetime) else None


async def readable_page(
    read: Callable[[Doc | None, int], Awaitable[list[Doc]]],
    model: type[M],
    limit: int,
    *,
    what: str,
    ends: Callable[[Doc], bool] = lambda _: False,
    unreadable: list[str] | None = None,
) -> list[M]:
    """Up to `limit` documents that read as `model`, from `read(after, n)` (the next at most `n`
    documents after `after`, the last one read, or from the start for None), in either order. One
    that does not read is logged, passed over and added to `unreadable` (core.schemas.readable),
    and the read goes on past it: the page still fills, so the cursor the list builds from its
    last item leads past the bad one. Without this, one unreadable document failed the page for
    everyone who sees it, and no cursor could get past it. `ends(doc)`: nothing after `doc`."""
    found: list[M] = []
    after: Doc | None = None
    while limit > 0:  # (a limit of 0 is no limit to the store)
        # `limit` at a time, also past unreadable ones: a run of them costs a read per `limit`.
        docs = await read(after, limit)
        for doc in docs:
            found.extend(readable(model, [doc], what=what, unreadable=unreadable))
            if len(found) == limit:
                return found
        if len(docs) < limit or ends(docs[-1]):
            return found
        after = docs[-1]
    return found


@dataclass(frozen=True)
class Actor:
    """The authenticated user a request acts for."""

    id: str
    role: Role
    name: str
    reseller_id: str | None = None
    department_ids: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @cached_property
    def scope(self) -> TenantScope:
        """Built once per request, with the principal: admins see every tenant, the rest their own."""
        return TenantScope(None, every=True) if self.is_admin else TenantScope(self.reseller_id)
