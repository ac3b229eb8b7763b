import contextlib
from collections.abc import Awaitable
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pymongo.errors import DuplicateKeyError

from backend.core import natural_keys
from backend.core.clock import utcnow
from backend.core.db import Database
from backend.core.errors import Conflict, or_404
from backend.core.ids import is_valid_id, new_id
from backend.core.pagination import decode_id_cursor, every_item, next_id_cursor
from backend.core.tenancy import Actor, TenantScope
from backend.realtime import feed
from backend.resellers import repository
from backend.resellers.models import DEFAULT_TIMEZONE, Reseller
from backend.resellers.models import ResellerConfig as ResellerConfig  # published: the stored settings
from backend.resellers.repository import get as get  # published: a tenant by id
from backend.resellers.repository import session_epoch as session_epoch  # published: auth's check of a tenant
from backend.resellers.schemas import (
    ResellerConfigRead,
    ResellerConfigUpdate,
    ResellerCreate,
    ResellerPage,
    ResellerRead,
    ResellerUpdate,
)
from backend.tickets import counters
from backend.users import service as users

OWNER_KEY = users.OWNER_KEY


async def _insert_once(insert: Awaitable[None]) -> None:
    """A racer or an earlier, interrupted attempt may have written this very document already."""
    with contextlib.suppress(DuplicateKeyError):
        await insert


async def create(db: Database, actor: Actor, *, data: ResellerCreate) -> ResellerRead:
    """The tenant's documents are written before its owner, whose insert decides who gets 201
    (racing or repeated creations for one owner email converge on one reseller id); the winner
    then writes its form's name over what an earlier attempt (a lost one, retyped, or another
    admin's) left in them, so the 201 is the tenant its form says, and the loser writes nothing
    after losing. A repeat after the owner was stored is told which tenant it made (409 naming it).

    Where it ends: an email claimed earlier by an agent's creation that never wrote its user is
    reused here; an agent's creation reusing that same claim at the same moment can still win the
    user insert, and the company stays stored without its owner (answered 409)."""
    email = users.normalize_email(str(data.email))
    # An email a user holds is refused before anything is written.
    bound = await natural_keys.lookup(db, users.EMAIL_KEY, email)
    if bound is not None and await users.get_internal(db, bound) is not None:
        raise await _taken(db, email)
    # A new owner's id is reserved for a company before the email names it: an agent's creation
    # that finds the email claimed and its user not yet written then sees that reservation
    # (users.claim_email) and is refused, instead of taking the email from this company.
    candidate, reseller_id = bound or new_id(), None
    if bound is None:
        reseller_id, _ = await natural_keys.claim(db, OWNER_KEY, candidate, target=new_id())
    # The email is claimed before the tenant's documents: a taken email leaves nothing half-written.
    try:
        owner_id = await users.claim_email(db, email, user_id=candidate, owner=True)
    except Conflict:
        raise await _taken(db, email) from None
    if owner_id != candidate or reseller_id is None:
        # One tenant per owner: racing or retried creations for the same email get the same
        # reseller id (an earlier attempt's claim is reused with its reservation), so they converge
        # on one reseller and config; the owner user's insert decides who gets 201.
        reseller_id, _ = await natural_keys.claim(db, OWNER_KEY, owner_id, target=new_id())
    now = utcnow()
    reseller = Reseller(
        id=reseller_id,
        name=data.name,
        owner_id=owner_id,
        owner_email=email,
        created_by=actor.id,
        created_at=now,
        updated_at=now,
    )
    # Before the tenant exists, so its counters cover every ticket it will have.
    await counters.start_tenant(db, reseller_id)
    await _insert_once(repository.insert(db, reseller))
    config = ResellerConfig(
        id=reseller_id, reseller_id=reseller_id, company_name=data.name, created_at=now, updated_at=now
    )
    await _insert_once(repository.insert_config(db, config))
    try:
        await users.create_login_user(
            db,
            role="reseller",
            name=data.owner_name or data.name,
            email=email,
            password=data.password,
            reseller_id=reseller_id,
            user_id=owner_id,
        )
    except (Conflict, DuplicateKeyError):
        raise await _taken(db, email) from None
    stored = await repository.get(db, reseller_id)
    assert stored is not None
    if stored.name != data.name:  # left by an earlier attempt at this owner: the winner's form stands
        await repository.update_config(
            db, TenantScope(reseller_id), reseller_id, {"company_name": data.name, "updated_at": utcnow()}
        )
        stored = await repository.update(db, reseller_id, {"name": data.name, "updated_at": utcnow()}) or stored
    return ResellerRead.of(stored)


async def _taken(db: Database, email: str) -> Conflict:
    """The answer to a creation whose owner email a user holds: naming the tenant when that user
    is the owner a creation made (the admin's repeat of a creation whose answer was lost), so the
    admin is not sent to make the company again under another email."""
    holder = await natural_keys.lookup(db, users.EMAIL_KEY, email)
    reseller_id = await natural_keys.lookup(db, OWNER_KEY, holder) if holder is not None else None
    if reseller_id is not None and await repository.get(db, reseller_id) is not None:
        return Conflict({"message": "email already in use", "reseller_id": reseller_id})
    return Conflict("email already in use")


async def get_or_404(db: Database, *, reseller_id: str) -> Reseller:
    reseller = await repository.get(db, reseller_id) if is_valid_id(reseller_id) else None
    return or_404(reseller, "reseller")


async def list_page(db: Database, *, cursor: str | None, limit: int) -> ResellerPage:
    before = decode_id_cursor(cursor) if cursor else None
    found = await repository.list_page(db, before_id=before, limit=limit + 1)
    return ResellerPage(items=[ResellerRead.of(r) for r in found[:limit]], next_cursor=next_id_cursor(found, limit))


async def update(db: Database, *, reseller_id: str, data: ResellerUpdate) -> ResellerRead:
    await get_or_404(db, reseller_id=reseller_id)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    changes["updated_at"] = utcnow()
    # A deactivation ends the tenant's sessions for good: its token epoch rises in this same write
    # (repository.update says why no concurrent write can put it back), so tokens issued before
    # it stay refused once the tenant is reactivated. Rather than bumping each user's version:
    # one write instead of one per user, none racing a user's own writes, and no crash midway
    # leaving some of the tenant's sessions alive.
    reseller = await repository.update(db, reseller_id, changes, revoke_tokens=changes.get("active") is False)
    assert reseller is not None
    if "active" in changes:
        feed.access_changed(db, reseller_id=reseller_id)
    return ResellerRead.of(reseller)


async def get_config(db: Database, actor: Actor) -> ResellerConfigRead:
    assert actor.reseller_id
    config = await repository.get_config(db, actor.scope, actor.reseller_id)
    return ResellerConfigRead.of(or_404(config, "config"))


async def update_config(db: Database, actor: Actor, *, data: ResellerConfigUpdate) -> ResellerConfigRead:
    assert actor.reseller_id
    # JSON mode: closed dates are stored as "YYYY-MM-DD" strings (BSON has no date-only type).
    changes = data.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    changes["updated_at"] = utcnow()
    config = await repository.update_config(db, actor.scope, actor.reseller_id, changes)
    return ResellerConfigRead.of(or_404(config, "config"))


async def config_internal(db: Database, reseller_id: str) -> ResellerConfig:
    """The config, for work done for no user (automatic messages, reports, replies' signature); a
    tenant without one reads the defaults. Read by every inbound message (and by the reports per
    recorded message and event), so answered from this process's copy for SETUP_CACHE_SECONDS
    (backend/core/single_flight.py): a change made through `update_config` is seen at once in
    the process that made it, and up to that long later in the others. There, for that long, the
    texts (welcome, away, closing, survey), business hours, closed dates, the survey switch and
    window and the replies' signature are the previous ones, and the reports file a contribution
    under the local day of the previous timezone (the rebuild, an operator's separate process,
    re-buckets in the timezone it reads). None of them decides whether a message is stored,
    nor its ticket beyond what the client was actually sent (a survey asked under the previous
    switch makes the client's digit its rating, as a finalize a moment earlier would have). The
    settings page reads the store (`get_config`)."""
    config = await repository.get_config_cached_internal(db, reseller_id)
    return config or ResellerConfig(id=reseller_id, reseller_id=reseller_id)


async def signature_enabled(db: Database, reseller_id: str) -> bool:
    """Whether agents' WhatsApp replies carry their name."""
    return (await config_internal(db, reseller_id)).signature_enabled


async def read_receipts(db: Database, reseller_id: str) -> bool:
    """Whether a client's phone is told its messages were read (tickets/reads.py)."""
    return (await config_internal(db, reseller_id)).read_receipts


async def timezone_of(db: Database, reseller_id: str) -> str:
    """The reseller's configured timezone name (the reports' and exports' local days)."""
    return (await config_internal(db, reseller_id)).timezone or DEFAULT_TIMEZONE


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """A timezone name as a zone; the default one for a name this machine does not know."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


async def all_ids(db: Database, *, page: int = 200) -> list[str]:
    """Every tenant's id, a page of the list at a time (the admin's platform-wide figures)."""
    return [r.id for r in await every_item(lambda cursor: list_page(db, cursor=cursor, limit=page))]
