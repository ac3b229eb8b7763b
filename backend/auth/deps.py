"""FastAPI dependencies for the acting user, by role."""

from typing import Annotated, Any

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend.auth.service import load_active_actor
from backend.core.db import Database
from backend.core.deps import AppSettings, Db
from backend.core.errors import Forbidden, Unauthorized
from backend.core.security import VERSION_CLAIM, decode_access_token
from backend.core.tenancy import Actor

_bearer = HTTPBearer(auto_error=False)


async def actor_from_claims(db: Database, claims: dict[str, Any]) -> Actor:
    """Every request re-reads the user, so deactivation or a password change (which bump the
    user's token version) takes effect on old tokens at once."""
    return await load_active_actor(db, claims["sub"], token_version=claims[VERSION_CLAIM])


async def get_current_actor(
    db: Db,
    settings: AppSettings,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("not authenticated")
    return await actor_from_claims(db, decode_access_token(settings, credentials.credentials))


CurrentActor = Annotated[Actor, Depends(get_current_actor)]


def require_roles(*roles: str) -> Any:
    async def _check(actor: CurrentActor) -> Actor:
        if actor.role not in roles:
            raise Forbidden("role not allowed")
        return actor

    return Depends(_check)


AdminActor = Annotated[Actor, require_roles("admin")]
ResellerActor = Annotated[Actor, require_roles("reseller")]
StaffActor = Annotated[Actor, require_roles("admin", "reseller", "agent")]
TenantStaffActor = Annotated[Actor, require_roles("reseller", "agent")]
ResellerOrAdminActor = Annotated[Actor, require_roles("admin", "reseller")]
