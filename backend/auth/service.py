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
from backend.users.schemas import UserRead

INVALID = "invalid email or password"
NO_USER = "-"  # not an id any user can have


async def _usable(db: Database, user: users.User) -> bool:
    if not user.active or user.role == "client":
        return False
    if user.reseller_id:
        tenant = await resellers.get(db, user.reseller_id)
        return bool(tenant and tenant.active)
    return True


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
    if not ok or user is None or not await _usable(db, user):
        raise Unauthorized(INVALID)
    await attempt.succeeded(db)
    return issue_token(settings, user)


def issue_token(settings: Settings, user: users.User) -> TokenRead:
    """A token for the user at its current token version."""
    token, ttl = create_access_token(settings, user_id=user.id, role=user.role, version=user.token_version)
    return TokenRead(access_token=token, expires_in=ttl, user=UserRead.of(user))


async def load_active_actor(db: Database, user_id: str, *, token_version: int) -> Actor:
    """The user behind a token, while it is usable and the token is of its current version."""
    user = await users.get_internal(db, user_id)
    if user is None or not await _usable(db, user) or user.token_version != token_version:
        raise Unauthorized("invalid or expired token")
    return Actor(
        id=user.id,
        role=user.role,
        name=user.name,
        reseller_id=user.reseller_id,
        department_ids=tuple(user.department_ids),
    )
