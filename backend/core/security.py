"""Password hashing (Argon2) and access tokens (JWT)."""

from datetime import timedelta
from typing import Any

import jwt
from pwdlib import PasswordHash

from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.core.errors import Unauthorized

_hasher = PasswordHash.recommended()
# Verifying against a real hash even for unknown emails keeps login timing uniform.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    if not password_hash:
        _hasher.verify(password, _DUMMY_HASH)
        return False
    try:
        return _hasher.verify(password, password_hash)
    except Exception:  # malformed stored hash: treat as a failed login, never a 500
        return False


# The user's token version when the token was issued: a password change, a deactivation and a
# reactivation bump the user's version, and a token carrying another one is refused (revocation
# without a list of revoked tokens). Tokens from before versions existed have none: version 0.
VERSION_CLAIM = "ver"


def create_access_token(settings: Settings, *, user_id: str, role: str, version: int = 0) -> tuple[str, int]:
    now = utcnow()
    ttl = timedelta(minutes=settings.ACCESS_TOKEN_MINUTES)
    claims = {"sub": user_id, "role": role, "iat": now, "exp": now + ttl, VERSION_CLAIM: version}
    token = jwt.encode(claims, settings.JWT_SECRET, algorithm=settings.JWT_ALGORITHM)
    return token, int(ttl.total_seconds())


def decode_access_token(settings: Settings, token: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            settings.JWT_SECRET,
            algorithms=[settings.JWT_ALGORITHM],
            options={"require": ["sub", "exp", "iat"]},
        )
    except jwt.PyJWTError as exc:
        raise Unauthorized("invalid or expired token") from exc
    version = claims.setdefault(VERSION_CLAIM, 0)
    if not isinstance(claims.get("sub"), str) or type(version) is not int:
        raise Unauthorized("invalid or expired token")
    return claims
