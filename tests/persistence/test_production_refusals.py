"""Item 6: ENV=production refuses default secrets, a missing or local development store, and a
database that cannot give journaled majority writes — each with a message saying what to fix."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from pymongo import AsyncMongoClient

from backend.app import create_app
from backend.core.config import DEV_JWT_SECRET, Settings
from backend.production.store import store_problems
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]
GOOD_SECRET = "p" * 48


def production(**values: Any) -> Settings:
    base = {"ENV": "production", "JWT_SECRET": GOOD_SECRET, "MONGO_URL": "mongodb://db:27017/?replicaSet=rs0"}
    return Settings(_env_file=None, **{**base, **values})  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"JWT_SECRET": DEV_JWT_SECRET}, "JWT_SECRET must be set"),
        ({"JWT_SECRET": "short-secret"}, "JWT_SECRET must be set"),
        ({"JWT_SECRET": ""}, "JWT_SECRET must be set"),
        ({"MONGO_URL": ""}, "MONGO_URL is required in production"),
        ({"ADMIN_PASSWORD": "change-me-now"}, "ADMIN_PASSWORD is the .env.example default"),
    ],
)
def test_settings_refuse_defaults_in_production(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        production(**values)


def test_sound_production_settings_pass() -> None:
    assert production().ENV == "production"


def development(data_dir: Path, **values: Any) -> Settings:
    return Settings(_env_file=None, ENV="development", FERRETDB_DATA_DIR=str(data_dir), **values)  # type: ignore[call-arg]


def test_development_signs_with_a_random_secret_kept_per_data_directory(tmp_path: Path) -> None:
    first = development(tmp_path / "a" / "ferretdb")
    assert first.JWT_SECRET != DEV_JWT_SECRET and len(first.JWT_SECRET) >= 32
    kept = tmp_path / "a" / "jwt-secret"
    assert kept.read_text() == first.JWT_SECRET and kept.stat().st_mode & 0o077 == 0
    # Kept: the next start (or another worker process) signs with the same one, so tokens survive
    # a restart; another checkout's data directory gets its own.
    assert development(tmp_path / "a" / "ferretdb").JWT_SECRET == first.JWT_SECRET
    assert development(tmp_path / "b" / "ferretdb").JWT_SECRET != first.JWT_SECRET
    # With a real database it is generated the same way when none is given.
    assert development(tmp_path / "a" / "ferretdb", MONGO_URL="mongodb://db/").JWT_SECRET == first.JWT_SECRET


def test_the_repository_secret_is_refused_whenever_mongo_url_is_set(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="repository's development constant"):
        development(tmp_path / "ferretdb", MONGO_URL="mongodb://db/", JWT_SECRET=DEV_JWT_SECRET)
    # Against the checkout's own local store it harms no one; test harnesses use fixed secrets.
    assert development(tmp_path / "ferretdb", JWT_SECRET=DEV_JWT_SECRET).JWT_SECRET == DEV_JWT_SECRET
    test = Settings(_env_file=None, ENV="test", MONGO_URL="mongodb://db/", JWT_SECRET=DEV_JWT_SECRET)  # type: ignore[call-arg]
    assert test.JWT_SECRET == DEV_JWT_SECRET
    assert not (tmp_path / "jwt-secret").exists()


def test_python_m_backend_refuses_the_repository_secret_with_a_database(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "MONGO_URL": "mongodb://127.0.0.1:1/", "JWT_SECRET": DEV_JWT_SECRET}
    done = subprocess.run(
        [sys.executable, "-m", "backend"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "refusing to start" in done.stderr and "repository's development constant" in done.stderr


def test_python_m_backend_exits_with_the_reason() -> None:
    env = {"PATH": "/usr/bin:/bin", "ENV": "production", "MONGO_URL": "mongodb://db/", "JWT_SECRET": ""}
    done = subprocess.run(
        [sys.executable, "-m", "backend"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "refusing to start" in done.stderr and "JWT_SECRET must be set" in done.stderr


async def test_ferretdb_is_refused_for_real_in_production(mongo_url: str) -> None:
    settings = make_settings(
        mongo_url, "prod_refusal", ENV="production", JWT_SECRET=GOOD_SECRET, ADMIN_PASSWORD="x" * 20
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert not app.state.startup.ready
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            r = await http.get("/health/ready")
            assert (await http.get("/api/v1/auth/me")).status_code == 503
    errors = " ".join(r.json()["errors"])
    assert r.status_code == 503
    assert "production-store" in errors and "FerretDB, a local development store" in errors
    assert "not a replica set member" in errors


async def test_decision_on_the_real_ferretdb_answers(raw_mongo: AsyncMongoClient[dict[str, Any]]) -> None:
    hello = await raw_mongo.admin.command("hello")
    build_info = await raw_mongo.admin.command("buildInfo")
    problems = store_problems(hello, build_info)
    assert len(problems) == 2
    assert "ferretdbVersion" in problems[0] and "no setName" in problems[1]


# Documented MongoDB 7 shapes (abridged to the fields the decision reads).
MONGO_BUILD_INFO = {"version": "7.0.14", "gitVersion": "ce59cfc6a3c5e5c067dca0d30697edd68d4f5188", "ok": 1.0}
REPLICA_PRIMARY = {"isWritablePrimary": True, "setName": "rs0", "hosts": ["mongo:27017"], "primary": "mongo:27017"}
REPLICA_SECONDARY = {"isWritablePrimary": False, "secondary": True, "setName": "rs0", "hosts": ["a", "b", "c"]}
STANDALONE = {"isWritablePrimary": True, "maxWireVersion": 21, "ok": 1.0}
MONGOS = {"isWritablePrimary": True, "msg": "isdbgrid", "ok": 1.0}


def test_decision_on_documented_mongodb_shapes() -> None:
    assert store_problems(REPLICA_PRIMARY, MONGO_BUILD_INFO) == []  # single-node replica set included
    assert store_problems(MONGOS, MONGO_BUILD_INFO) == []
    (standalone,) = store_problems(STANDALONE, MONGO_BUILD_INFO)
    assert "not a replica set member" in standalone and "--replSet" in standalone
    (secondary,) = store_problems(REPLICA_SECONDARY, MONGO_BUILD_INFO)
    assert "non-primary" in secondary
