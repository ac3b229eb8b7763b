"""FastAPI dependencies shared by every router: the database and the acting user."""

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend.core.config import Settings
from backend.core.db import Database
from backend.core.errors import Forbidden, Unauthorized
from backend.core.security import VERSION_CLAIM, decode_access_token
from backend.core.tenancy import Actor

_bearer = HTTPBearer(auto_error=False)


# `async def` although they never await: FastAPI runs a plain `def` dependency in its thread
# pool, a thread hand-off on every request for what is an attribute read.
async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


Db = Annotated[Database, Depends(get_db)]
AppSettings = Annotated[Settings, Depends(get_app_settings)]


async def actor_from_claims(db: Database, claims: dict[str, Any]) -> Actor:
    """Every request re-reads the user, so deactivation or a password change (which bump the
    user's token version) takes effect on old tokens at once."""
    from backend.auth.service import load_active_actor  # auth depends on core, not the reverse

    return await load_active_actor(db, claims["sub"], token_version=claims[VERSION_CLAIM])


async def actor_from_token(db: Database, settings: Settings, token: str) -> Actor:
    return await actor_from_claims(db, decode_access_token(settings, token))


async def get_current_actor(
    db: Db,
    settings: AppSettings,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("not authenticated")
    return await actor_from_token(db, settings, credentials.credentials)


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
