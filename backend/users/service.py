"""Users: creation with unique emails, agent management, the first admin."""

import asyncio
from collections import Counter
from typing import Any

from pymongo.errors import DuplicateKeyError

from backend.core import natural_keys
from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.errors import Conflict, Forbidden, Unprocessable, or_404
from backend.core.ids import is_valid_id, new_id
from backend.core.pagination import decode_id_cursor, next_id_cursor
from backend.core.security import hash_password, verify_password
from backend.core.tenancy import Actor, Role, TenantScope
from backend.departments import service as departments
from backend.realtime import feed
from backend.users import repository
from backend.users.models import ReleaseOwed as ReleaseOwed  # published: the sweep's list
from backend.users.models import User as User  # published: the stored shape (clients are users too)

# Published to other domains (they never import a repository: docs/ARCHITECTURE.md §2): a user by
# id in any tenant (the caller scopes it), a client's ticket slots (tickets), and the storage of
# client documents, which are users with role "client" (backend/clients).
from backend.users.repository import distinct_with_role as distinct_with_role
from backend.users.repository import get as get
from backend.users.repository import get_internal as get_internal
from backend.users.repository import ids_matching as ids_matching
from backend.users.repository import insert as insert
from backend.users.repository import iter_with_role as iter_with_role
from backend.users.repository import raise_ticket_slot as raise_ticket_slot
from backend.users.schemas import PasswordChange, ProfileUpdate, UserCreate, UserPage, UserRead, UserUpdate

STAFF_ROLES = ("admin", "reseller", "agent")
EMAIL_KEY = "email"
OWNER_KEY = "reseller-owner"  # a company's owner id -> its reseller id (resellers.service.create)
# Published for clients too, named apart from this module's staff-only list_page and update.
list_docs = repository.list_page
update_doc = repository.update


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def claim_email(db: Database, email: str, *, user_id: str | None = None, owner: bool = False) -> str:
    """The id the (normalized) email is bound to, claimed for `user_id` (a new id by default) unless
    an earlier claim won; Conflict when a user holds it. A claim whose user was never written is
    reused, unless a company's creation made it for its owner (OWNER_KEY names it) and this is
    not that creation again (`owner`, or its own `user_id`): the company's documents may be stored
    already, and its repeat writes that owner — taken by anyone else, the company would be left
    without an owner for good."""
    bound, won = await natural_keys.claim(db, EMAIL_KEY, email, target=user_id or new_id())
    if not won and await repository.get_internal(db, bound) is not None:
        raise Conflict("email already in use")
    if not won and not owner and bound != user_id and await natural_keys.lookup(db, OWNER_KEY, bound) is not None:
        raise Conflict("email already in use")
    return bound


async def create_login_user(
    db: Database,
    *,
    role: Role,
    name: str,
    email: str,
    password: str,
    reseller_id: str | None,
    department_ids: list[str] | None = None,
    user_id: str | None = None,
) -> User:
    """Claims the email first (atomic on every store), then writes the user under the claimed id.

    If an earlier attempt claimed the email and died before writing the user, the claim points to
    a missing user: this call completes that user instead of leaving the email unusable.
    """
    email = normalize_email(email)
    bound = await claim_email(db, email, user_id=user_id)
    now = utcnow()
    user = User(
        id=bound,
        role=role,
        name=name,
        email=email,
        password_hash=await asyncio.to_thread(hash_password, password),
        reseller_id=reseller_id,
        department_ids=department_ids or [],
        created_at=now,
        updated_at=now,
    )
    try:
        await repository.insert(db, user)
    except DuplicateKeyError as exc:  # a concurrent completion of the same claim won
        raise Conflict("email already in use") from exc
    return user


async def ensure_first_admin(db: Database, settings: Settings) -> bool:
    """Creates the admin from ADMIN_EMAIL/ADMIN_PASSWORD when none exists; never overwrites."""
    if not settings.ADMIN_EMAIL or not settings.ADMIN_PASSWORD:
        return False
    if await repository.exists_with_role_internal(db, "admin"):
        return False
    try:
        await create_login_user(
            db,
            role="admin",
            name=settings.ADMIN_NAME,
            email=settings.ADMIN_EMAIL,
            password=settings.ADMIN_PASSWORD,
            reseller_id=None,
        )
    except Conflict:  # the email is taken (never overwritten), or a concurrent start created it
        return False
    return True


async def create_agent(db: Database, actor: Actor, *, data: UserCreate) -> UserRead:
    assert actor.reseller_id
    dept_ids = await departments.require_active_ids(db, actor.reseller_id, data.department_ids)
    user = await create_login_user(
        db,
        role=data.role,
        name=data.name,
        email=str(data.email),
        password=data.password,
        reseller_id=actor.reseller_id,
        department_ids=dept_ids,
    )
    return UserRead.of(user)


async def get_or_404(db: Database, actor: Actor, *, user_id: str) -> User:
    user = await repository.get(db, actor.scope, user_id, roles=STAFF_ROLES) if is_valid_id(user_id) else None
    return or_404(user, "user")


async def list_page(
    db: Database, actor: Actor, *, cursor: str | None, limit: int, department_id: str | None, active: bool | None
) -> UserPage:
    before = decode_id_cursor(cursor) if cursor else None
    extra: dict[str, Any] = {}
    if department_id:
        extra["department_ids"] = department_id
    if active is not None:
        extra["active"] = active
    found = await repository.list_page(
        db, actor.scope, roles=STAFF_ROLES, before_id=before, limit=limit + 1, extra=extra
    )
    return UserPage(items=[UserRead.of(u) for u in found[:limit]], next_cursor=next_id_cursor(found, limit))


async def update(db: Database, actor: Actor, *, user_id: str, data: UserUpdate) -> UserRead:
    target = await get_or_404(db, actor, user_id=user_id)
    if actor.role == "reseller" and target.role != "agent" and target.id != actor.id:
        raise Forbidden("resellers manage their agents only")
    if target.id == actor.id and data.active is False:
        raise Conflict("you cannot deactivate yourself")
    if target.role == "reseller" and data.active is False:
        # The tenant's owner is the one who sees and moves what its agents cannot (an unstaffed
        # queue): deactivated alone, the tenant would keep receiving conversations nobody can act
        # on. Suspending the tenant (PATCH /resellers/{id}) stops it as a whole instead.
        raise Conflict("a reseller's owner cannot be deactivated alone; suspend the reseller instead")
    changes: dict[str, Any] = data.model_dump(exclude_unset=True, exclude_none=True)
    if "password" in changes:
        changes["password_hash"] = await asyncio.to_thread(hash_password, changes.pop("password"))
    if "department_ids" in changes:
        if target.role != "agent" or target.reseller_id is None:
            raise Conflict("only agents belong to departments")
        changes["department_ids"] = await departments.require_active_ids(
            db, target.reseller_id, changes["department_ids"], kept=target.department_ids
        )
    changes["updated_at"] = utcnow()
    # A new password ends every session of the old one; so do deactivation and reactivation (a
    # token issued before a deactivation must not come back to life with the user).
    revoke = "password_hash" in changes or ("active" in changes and changes["active"] != target.active)
    user = await repository.update(db, actor.scope, user_id, changes, revoke_tokens=revoke)
    assert user is not None
    if user.reseller_id and (revoke or "active" in changes or "department_ids" in changes):
        feed.access_changed(db, reseller_id=user.reseller_id, user_id=user.id)
    return UserRead.of(user)


async def owe_release(db: Database, actor: Actor, *, user_id: str) -> str | None:
    """Before a deactivation's user write (users/deactivation.py): a durable mark that the
    release of the agent's tickets is owed, which the ticket sweep pays when the deactivation's
    own process did not (killed between its two steps). Returns the mark's name for
    `release_paid`; None for someone who holds no tickets to release (not an agent of a tenant)."""
    target = await get_or_404(db, actor, user_id=user_id)
    if target.role != "agent" or target.reseller_id is None:
        return None
    owed = new_id()
    await repository.owe_release(db, target, owed, utcnow())
    return owed


async def owed_releases_internal(db: Database) -> list[ReleaseOwed]:
    """The deactivations whose release may not have run to its end (the ticket sweep's list)."""
    return await repository.owed_releases_internal(db)


async def owe_release_again(db: Database, user_id: str, owed: str) -> None:
    """After deactivation `owed`'s user write landed: its mark owed again (a fresh `owed_at`) if
    the sweep paid it meanwhile, having found the person still active (users/deactivation.py)."""
    await repository.owe_release_again(db, user_id, owed, utcnow())


async def release_paid(db: Database, user_id: str, owed: str) -> None:
    await repository.release_paid(db, user_id, owed, utcnow())


async def update_profile(db: Database, actor: Actor, *, data: ProfileUpdate) -> UserRead:
    user = await repository.update(db, actor.scope, actor.id, {"name": data.name, "updated_at": utcnow()})
    assert user is not None  # the actor was read from the store for this very request
    return UserRead.of(user)


async def change_own_password(db: Database, actor: Actor, *, data: PasswordChange) -> User:
    """Checks the current password, stores the new one and ends every session of the old one
    (this request's token included: the caller issues a fresh one from the returned user)."""
    user = await repository.get_internal(db, actor.id)  # the actor's own user
    assert user is not None
    if not await asyncio.to_thread(verify_password, data.current_password, user.password_hash):
        raise Unprocessable("current password is incorrect")
    new_hash = await asyncio.to_thread(hash_password, data.new_password)
    # Only over the password just checked: another change that landed since (the same person on
    # another device) made it no longer current, and both answering 200 would leave one of them
    # silently replaced, its fresh session revoked.
    changed = await repository.revoke_if_at(
        db, actor.scope, actor.id, user.token_version, {"password_hash": new_hash, "updated_at": utcnow()}
    )
    if changed is None:
        raise Unprocessable("current password is incorrect")
    user = changed
    if user.reseller_id:
        feed.access_changed(db, reseller_id=user.reseller_id, user_id=user.id)
    return user


async def active_agents_by_department(db: Database, scope: TenantScope) -> Counter[str]:
    """How many active agents each department in `scope` has. A department with none is a queue
    that only the owner sees: its waiting conversations reach nobody else (the owner's warning
    and alerts, frontend/src/features/reseller/staffing.ts). A scan of the tenant's agents: tens,
    and read only where departments are listed."""
    staffed: Counter[str] = Counter()
    async for agent in repository.iter_with_role(db, scope, role="agent"):
        if agent.active:
            staffed.update(set(agent.department_ids))
    return staffed


async def name_in_tenant(db: Database, reseller_id: str, user_id: str) -> str | None:
    """A user's name as shown to `reseller_id`'s staff: its own users and the platform admins
    (who act across tenants and belong to none); never another tenant's user."""
    user = await repository.get_internal(db, user_id)
    if user is None or not (TenantScope(reseller_id).owns(user.reseller_id) or user.reseller_id is None):
        return None
    return user.name
