"""The first admin: created from ADMIN_EMAIL/ADMIN_PASSWORD once, never overwritten."""

from typing import Any

import httpx

from backend.app import create_app
from backend.users.service import ensure_first_admin
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, make_settings

LOGIN = "/api/v1/auth/login"


async def _start_and_login(settings: Any, email: str, password: str) -> tuple[bool, int]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        ready = bool(app.state.startup.ready)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            r = await c.post(LOGIN, json={"email": email, "password": password})
            return ready, r.status_code


async def test_restart_with_a_different_admin_password_does_not_overwrite(
    client: httpx.AsyncClient, mongo_url: str, db_name: str, db: Any
) -> None:
    assert (await client.post(LOGIN, json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})).status_code == 200
    admin_before = await db.users.find_one({"role": "admin"})
    # A second app on the same database: a restart, or another instance behind the load balancer.
    changed = make_settings(mongo_url, db_name, ADMIN_PASSWORD="a-different-pass-9")
    ready, status = await _start_and_login(changed, ADMIN_EMAIL, "a-different-pass-9")
    assert ready and status == 401
    ready, status = await _start_and_login(changed, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert ready and status == 200
    assert await db.users.count_documents({"role": "admin"}) == 1
    assert await db.users.find_one({"role": "admin"}) == admin_before


async def test_another_admin_email_on_restart_creates_no_second_admin(mongo_url: str, db_name: str, db: Any) -> None:
    other = make_settings(mongo_url, db_name, ADMIN_EMAIL="second-admin@test.iaze")
    ready, status = await _start_and_login(other, "second-admin@test.iaze", ADMIN_PASSWORD)
    assert ready and status == 401
    assert await db.users.count_documents({"role": "admin"}) == 1


async def test_first_admin_step_is_idempotent(mongo_url: str, db_name: str, db: Any) -> None:
    settings = make_settings(mongo_url, db_name)
    assert await ensure_first_admin(db, settings) is False
    assert await ensure_first_admin(db, settings) is False
    assert await db.users.count_documents({"role": "admin"}) == 1


async def test_fresh_database_gets_exactly_one_admin_even_with_two_starts(mongo_url: str, db_name: str) -> None:
    from pymongo import AsyncMongoClient

    fresh = f"{db_name}_fresh"
    first = make_settings(mongo_url, fresh, ADMIN_PASSWORD="first-pass-123")
    second = make_settings(mongo_url, fresh, ADMIN_PASSWORD="second-pass-123")
    assert await _start_and_login(first, ADMIN_EMAIL, "first-pass-123") == (True, 200)
    assert await _start_and_login(second, ADMIN_EMAIL, "second-pass-123") == (True, 401)
    assert await _start_and_login(second, ADMIN_EMAIL, "first-pass-123") == (True, 200)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        assert await mongo[fresh].users.count_documents({"role": "admin"}) == 1
    finally:
        await mongo.close()


async def test_no_admin_settings_means_no_admin_and_still_ready(mongo_url: str, db_name: str) -> None:
    from pymongo import AsyncMongoClient

    empty = f"{db_name}_noadm"
    settings = make_settings(mongo_url, empty, ADMIN_EMAIL="", ADMIN_PASSWORD="")
    ready, status = await _start_and_login(settings, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert ready and status == 401
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        assert await mongo[empty].users.count_documents({}) == 0
    finally:
        await mongo.close()
