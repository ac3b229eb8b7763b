"""Queries on `users` (admins, resellers' owners, agents and clients)."""

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from backend.core import group_commit
from backend.core.conditional import one_writer, update_if
from backend.core.db import Database
from backend.core.indexes import ASC, DESC, declare
from backend.core.schemas import readable
from backend.core.tenancy import TenantScope
from backend.users.models import ReleaseOwed, User

COLLECTION = "users"
RELEASES = "user_releases"  # read by the ticket sweep only: a handful of documents, one per person

declare(
    COLLECTION,
    [("reseller_id", ASC), ("role", ASC), ("_id", DESC)],
    name="tenant_role_id",
    purpose="user and client lists of a tenant, newest first",
)


async def get_internal(db: Database, user_id: str) -> User | None:
    return User.load(await db[COLLECTION].find_one({"_id": user_id}))


async def get(db: Database, scope: TenantScope, user_id: str, *, roles: tuple[str, ...] | None = None) -> User | None:
    user = User.load(await scope.get(db[COLLECTION], user_id))
    return user if user is not None and (roles is None or user.role in roles) else None


async def insert(db: Database, user: User) -> None:
    # Group-committed: a burst of new clients (a backlog's lanes) shares insert commands.
    await group_commit.insert_one(db[COLLECTION], user.stored())


async def exists_with_role_internal(db: Database, role: str) -> bool:
    return await db[COLLECTION].find_one({"role": role}, projection={"_id": 1}) is not None


async def list_page(
    db: Database,
    scope: TenantScope,
    *,
    roles: tuple[str, ...],
    before_id: str | None,
    limit: int,
    extra: dict[str, Any] | None = None,
) -> list[User]:
    query = {"role": {"$in": list(roles)}, **(extra or {})}
    return await scope.page_by_id(db[COLLECTION], User, query, before_id=before_id, limit=limit)


async def update(
    db: Database, scope: TenantScope, user_id: str, changes: dict[str, Any], *, revoke_tokens: bool = False
) -> User | None:
    update: dict[str, Any] = {"$set": changes}
    if revoke_tokens:
        # In the same write as the change itself: no moment where the new password (or the
        # reactivated user) is in place and the old tokens still count.
        update["$inc"] = {"token_version": 1}  # User.token_version
    async with one_writer(db, COLLECTION, user_id):  # with `raise_ticket_slot`, which can land at the same moment
        await db[COLLECTION].update_one(scope.filter({"_id": user_id}), update)
    return await get(db, scope, user_id)


async def revoke_if_at(
    db: Database, scope: TenantScope, user_id: str, version: int, changes: dict[str, Any]
) -> User | None:
    """`update` with the tokens revoked, only while the user's token version is still `version`
    (None otherwise): no other password change, deactivation or reactivation landed since the
    caller read the user."""
    at = {"token_version": version} if version else {"token_version": {"$in": [0, None]}}
    async with one_writer(db, COLLECTION, user_id):
        doc = await update_if(
            db, COLLECTION, user_id, scope.filter(at), {"$set": changes, "$inc": {"token_version": 1}}
        )
    return User.model_validate(doc) if doc is not None else None


async def raise_ticket_slot(db: Database, client_id: str, *, channel: str, slot: int) -> None:
    """A hint of where the client's open-ticket slots on `channel` start (tickets.service
    open_for_client): `slot` is one past a finalized slot, or an open slot, so it never points
    beyond the first open one. Moves forward only; FerretDB's whole-document write-back can put back an older,
    lower value, which costs the next walk a few reads and nothing else. It takes turns with `update`
    (`one_writer`): written as a client's ticket opens, it would otherwise, on FerretDB, undo an
    edit of the client's name or tags saved at the same moment."""
    async with one_writer(db, COLLECTION, client_id):
        await db[COLLECTION].update_one({"_id": client_id}, {"$max": {f"ticket_slots.{channel}": slot}})


async def iter_with_role(db: Database, scope: TenantScope, *, role: str, batch: int = 500) -> AsyncIterator[User]:
    """Every user of one role in scope, oldest first, read in keyset batches (exports). Thousands:
    built without validation (`User.trusted`), as the store's own documents."""
    last: str | None = None
    while True:
        query: dict[str, Any] = scope.filter({"role": role})
        if last is not None:
            query["_id"] = {"$gt": last}
        docs = await db[COLLECTION].find(query).sort("_id", ASC).limit(batch).to_list(length=batch)
        for doc in docs:
            yield User.trusted(doc)
        if len(docs) < batch:
            return
        last = docs[-1]["_id"]


async def distinct_with_role(db: Database, scope: TenantScope, field: str, *, role: str) -> list[Any]:
    return list(await db[COLLECTION].distinct(field, scope.filter({"role": role})))


async def ids_matching(db: Database, scope: TenantScope, query: dict[str, Any], *, role: str, limit: int) -> list[str]:
    scoped_query = scope.filter({**query, "role": role})
    docs = await db[COLLECTION].find(scoped_query, projection={"_id": 1}).limit(limit).to_list(length=limit)
    return [d["_id"] for d in docs]


async def owe_release(db: Database, user: User, owed: str, at: datetime) -> None:
    """Marks `user`'s release as owed by deactivation `owed` (one document per person, rewritten
    by each deactivation: the collection stays as small as the staff)."""
    assert user.reseller_id is not None
    changes = {"reseller_id": user.reseller_id, "owed": owed, "owed_at": at, "paid_at": None}
    async with one_writer(db, RELEASES, user.id):
        await db[RELEASES].update_one({"_id": user.id}, {"$set": changes}, upsert=True)


async def owed_releases_internal(db: Database) -> list[ReleaseOwed]:
    """Every unpaid mark. One that does not read is logged and passed over (core.schemas.readable),
    left owed: the others are still paid, and it is read again at every sweep until it is mended."""
    docs = await db[RELEASES].find({"owed": {"$ne": None}}).to_list(None)
    return readable(ReleaseOwed, docs, what="owed release")


async def release_paid(db: Database, user_id: str, owed: str, at: datetime) -> None:
    """Only the deactivation `owed`'s mark: a later deactivation's stays owed until its own release."""
    async with one_writer(db, RELEASES, user_id):
        await update_if(db, RELEASES, user_id, {"owed": owed}, {"$set": {"owed": None, "paid_at": at}})


async def owe_release_again(db: Database, user_id: str, owed: str, at: datetime) -> None:
    """Deactivation `owed`'s mark again, only over a paid one (`owed` None: the sweep paid it
    meanwhile); a later deactivation's mark, which names that one, stays as it is."""
    async with one_writer(db, RELEASES, user_id):
        await update_if(db, RELEASES, user_id, {"owed": None}, {"$set": {"owed": owed, "owed_at": at, "paid_at": None}})
