import asyncio

from backend.auth import throttle
from backend.auth.schemas import TokenRead
from backend.core import natural_keys
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.errors import Unauthorized
from backend.core.security import create_access_token, verify_password
from backend.core.tenancy import Actor
from backend.resellers import service as resellers
from backend.users import service as users
from backend.users.schemas import PasswordChange, UserRead

INVALID = "invalid email or password"
NO_USER = "-"  # not an id any user can have
EXPIRED = "invalid or expired token"


async def _session_version(db: Database, user: users.User) -> int | None:
    """The version a token of `user` must carry now; None while the user may not hold one.

    The user's token version (raised by a password change, a deactivation and a reactivation of
    the user) plus its tenant's token epoch (raised by each deactivation of the tenant,
    backend/resellers). Both only ever rise, so the sum equals a token's exactly when neither
    rose since it was issued: one claim, no new read (the tenant is read for `active` anyway)."""
    if not user.active or user.role == "client":
        return None
    if not user.reseller_id:
        return user.token_version
    epoch = await resellers.session_epoch(db, user.reseller_id)
    return None if epoch is None else user.token_version + epoch


async def login(db: Database, settings: Settings, *, email: str, password: str, address: str) -> TokenRead:
    email = users.normalize_email(email)
    # Counted before the password is checked: concurrent guesses cannot all slip under the limit.
    attempt = await throttle.begin(db, settings, email=email, address=address)
    user_id = await natural_keys.lookup(db, users.EMAIL_KEY, email)
    # The same reads for an unknown email as for a known one (an `_id` that cannot exist), and
    # below the same Argon2 work (a dummy hash): the answer's timing does not tell them apart.
    user = await users.get_internal(db, user_id or NO_USER)
    # Argon2 is deliberately slow CPU work: off the event loop, so one login never stalls the process.
    ok = await asyncio.to_thread(verify_password, password, user.password_hash if user else None)
    version = await _session_version(db, user) if ok and user is not None else None
    if user is None or version is None:
        raise Unauthorized(INVALID)
    await attempt.succeeded(db)
    return _issue_token(settings, user, version=version)


async def change_password(
    db: Database, settings: Settings, actor: Actor, *, data: PasswordChange, address: str
) -> TokenRead:
    """The current password is checked like a login's password, under the same throttle slots
    (this account from this address, and this address): a stolen token must not guess it
    without limit, nor add guesses to those login allows. Answers a fresh token: the change ends
    every session of the old password, the caller's too."""
    own = await users.get_internal(db, actor.id)  # the actor was read from the store for this request
    assert own is not None
    # Keyed like its logins (the email); a user without one cannot log in: its id keys it alone.
    key = users.normalize_email(own.email) if own.email else own.id
    attempt = await throttle.begin(db, settings, email=key, address=address)
    user = await users.change_own_password(db, actor, data=data)
    await attempt.succeeded(db)
    version = await _session_version(db, user)
    if version is None:  # deactivated (or its tenant) while the password was being changed
        raise Unauthorized(EXPIRED)
    return _issue_token(settings, user, version=version)


def _issue_token(settings: Settings, user: users.User, *, version: int) -> TokenRead:
    token, ttl = create_access_token(settings, user_id=user.id, role=user.role, version=version)
    return TokenRead(access_token=token, expires_in=ttl, user=UserRead.of(user))


async def load_active_actor(db: Database, user_id: str, *, token_version: int) -> Actor:
    """The user behind a token, while it is usable and the token is of its current version."""
    user = await users.get_internal(db, user_id)
    if user is None or await _session_version(db, user) != token_version:
        raise Unauthorized(EXPIRED)
    return user.as_actor()
