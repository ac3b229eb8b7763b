"""The production stack's files say what DEPLOY_RULES.md promises (the schema itself is checked by
dclint in `make lint`; there is no Docker engine here to start the stack)."""

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from backend.core.indexes import declared
from scripts import gen_mongo_init
from scripts.common import OpsSettings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_mongo_init_indexes_are_exactly_the_declared_ones() -> None:
    text = (ROOT / "mongo-init" / "02-indexes.js").read_text()
    in_js = set()
    for line in text.splitlines():
        line = line.strip().rstrip(",")
        if line.startswith('{"collection"'):
            e = json.loads(line)
            keys = tuple((k, int(v)) for k, v in e["keys"].items())
            in_js.add((e["collection"], keys, e["options"]["name"], bool(e["options"].get("unique", False))))
    in_code = {(s.collection, tuple(s.keys), s.name, s.unique) for s in declared()}
    assert in_js == in_code, "run: python -m scripts.gen_mongo_init"
    assert text == gen_mongo_init.render(declared())


def test_mongo_is_a_replica_set_on_a_named_volume_with_a_healthcheck_that_initiates_it() -> None:
    mongo = _compose()["services"]["mongo"]
    assert re.fullmatch(r"mongo:[78](\.\d+)*", mongo["image"])
    assert "--replSet" in mongo["command"] and "--keyFile" in mongo["command"]
    assert "mongo_data:/data/db" in mongo["volumes"]
    assert "./mongo-init:/docker-entrypoint-initdb.d:ro" in mongo["volumes"]
    check = " ".join(mongo["healthcheck"]["test"])
    assert "rs.initiate" in check and "isWritablePrimary" in check
    assert set(_compose()["volumes"]) >= {"mongo_data", "mongo_config"}


def test_mongo_is_healthy_only_as_a_writable_primary() -> None:
    """The healthcheck's two answers must not contain one another: `grep -q PRIMARY` once matched
    NOT_PRIMARY too, so a secondary or an uninitiated node counted as healthy."""
    check = " ".join(_compose()["services"]["mongo"]["healthcheck"]["test"])
    answers = re.search(r'isWritablePrimary \? "(\w+)" : "(\w+)"', check)
    assert answers is not None, check
    yes, no = answers.groups()
    matcher = re.search(r"\| grep -qx (\w+)$", check.strip())
    assert matcher is not None and matcher.group(1) == yes, "match the whole line, the writable answer only"
    assert yes not in no


def test_public_base_url_in_env_wins_over_compose_default() -> None:
    env = _compose()["services"]["backend"]["environment"]
    assert env["PUBLIC_BASE_URL"] == "${PUBLIC_BASE_URL:-http://backend:8000}"
    example = (ROOT / ".env.example").read_text()
    assert not re.search(r"^PUBLIC_BASE_URL=", example, re.M), "a copied .env.example must not override it"


def test_app_user_cannot_delete_or_drop() -> None:
    users = (ROOT / "mongo-init" / "01-users.js").read_text()
    role = users[users.index("createRole") : users.index("createUser")]
    actions = set(re.findall(r'"(\w+)"', role[role.index("actions") :]))
    assert {"find", "insert", "update", "createIndex"} <= actions
    assert not actions & {"remove", "dropCollection", "dropDatabase", "dropIndex", "renameCollectionSameDB"}


def _users_js_grants(env: dict[str, str]) -> dict[str, list[dict[str, str]]]:
    """mongo-init/01-users.js run by node against a stand-in `db`: each user's roles."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    harness = """
const users = {};
const sibling = { createRole() {}, createUser(u) { users[u.user] = u.roles; } };
const [script, env] = process.argv.slice(1);
Object.assign(process.env, JSON.parse(env));
globalThis.db = { getSiblingDB() { return sibling; } };
require(script);
console.log(JSON.stringify(users));
"""
    script = str(ROOT / "mongo-init" / "01-users.js")
    done = subprocess.run([node, "-e", harness, script, json.dumps(env)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    grants: dict[str, list[dict[str, str]]] = json.loads(done.stdout)
    return grants


@pytest.mark.parametrize("verify_db", ["", "elsewhere_scratch"])
def test_the_backup_user_owns_exactly_the_databases_verify_may_use(verify_db: str) -> None:
    """`backup verify` creates, fills and drops only names OpsSettings gives it, and the backup
    user is granted dbOwner on exactly those (a grant names one whole database): the two cannot
    drift apart again, as when verify moved to per-run names nobody was granted."""
    env = {"MONGO_DB": "shop", "MONGO_APP_USER": "app", "MONGO_BACKUP_USER": "bk", "BACKUP_VERIFY_DB": verify_db}
    roles = _users_js_grants(env)["bk"]
    owned = {r["db"] for r in roles if r["role"] == "dbOwner"}
    settings = OpsSettings(_env_file=None, ENV="test", MONGO_DB="shop", BACKUP_VERIFY_DB=verify_db)  # type: ignore[call-arg]
    assert owned == {settings.verify_db, *settings.scratch_names()}
    assert all(settings.is_scratch(name) for name in owned) and "shop" not in owned
    assert {"role": "read", "db": "shop"} in roles and not {r["role"] for r in roles} & {"readWrite", "root"}
    # every name verify may pick next is one of them, whatever the previous one was
    for previous in (None, "shop", *settings.scratch_names()):
        assert settings.next_scratch(previous) in owned


def test_backend_image_is_non_root_with_readiness_healthcheck() -> None:
    services = _compose()["services"]
    for name in ("backend", "backup"):
        assert services[name]["build"] == {"context": ".", "dockerfile": "docker/backend.Dockerfile"}
    dockerfile = (ROOT / "docker" / "backend.Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    assert "HEALTHCHECK" in dockerfile and "/health/ready" in dockerfile
    assert services["backend"]["environment"]["ENV"] == "production"
    assert "replicaSet=rs0" in services["backend"]["environment"]["MONGO_URL"]


def test_frontend_and_backup_services() -> None:
    services = _compose()["services"]
    assert services["frontend"]["build"] == "./frontend"
    backup = services["backup"]
    assert backup["command"] == ["python", "-m", "scripts.backup", "schedule"]
    # Unhealthy when backups stop verifying (scripts.backup health), not disabled.
    assert backup["healthcheck"]["test"] == ["CMD", "python", "-m", "scripts.backup", "health"]
    assert "./backups:/backups" in backup["volumes"]
    assert backup["environment"]["BACKUP_DIR"] == "/backups"


def _commands(path: Path) -> str:
    """The file without its comment lines: what would actually run."""
    return "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))


def test_nothing_removes_volumes_or_data_directories() -> None:
    files = [ROOT / "docker-compose.yml", ROOT / "Makefile", *sorted((ROOT / "docker").iterdir())]
    files += sorted((ROOT / "scripts").glob("*.py")) + sorted((ROOT / "mongo-init").iterdir())
    forbidden = re.compile(r"down\s+(-\w*v|--volumes)|volume\s+(rm|prune)|system\s+prune|rm\s+-\w*r\w*\s+\S*(data|db)")
    for f in files:
        assert not forbidden.search(_commands(f)), f"{f} removes volumes or data"


def test_thin_wrappers_run_the_clis() -> None:
    import subprocess

    for name, word in (("deploy_check", "snapshot"), ("backup", "schedule"), ("restore", "--over-live")):
        res = subprocess.run([str(ROOT / "scripts" / name), "--help"], capture_output=True, text=True, check=False)
        assert res.returncode == 0 and word in res.stdout, res.stderr


EVOLUTION_SERVICES = ("evolution", "evolution-postgres", "evolution-redis")


def test_evolution_api_v2_is_pinned_with_its_postgres_and_redis_on_named_volumes() -> None:
    compose = _compose()
    services, volumes = compose["services"], compose["volumes"]
    evo = services["evolution"]
    assert re.fullmatch(r"evoapicloud/evolution-api:v2\.\d+\.\d+", evo["image"]), "official image, exact v2 version"
    env = evo["environment"]
    assert env["DATABASE_PROVIDER"] == "postgresql"
    assert env["DATABASE_CONNECTION_URI"].startswith("postgresql://evolution:${EVOLUTION_DB_PASSWORD:?")
    assert "@evolution-postgres:5432/evolution" in env["DATABASE_CONNECTION_URI"]
    assert env["CACHE_REDIS_ENABLED"] == "true" and env["CACHE_REDIS_URI"].startswith("redis://evolution-redis:6379/")
    assert env["DATABASE_SAVE_DATA_INSTANCE"] == "true"  # the Baileys credentials row survives restarts
    assert env["DEL_INSTANCE"] == "false"  # a disconnected instance is never deleted by Evolution
    # A delivery IAZE could not take is posted again for about a day, not Evolution's ~20 minutes
    # (5 s doubling to 300 s: 9 attempts reach the cap, then one every 5 minutes).
    attempts, cap = int(env["WEBHOOK_RETRY_MAX_ATTEMPTS"]), int(env["WEBHOOK_RETRY_MAX_DELAY_SECONDS"])
    assert (attempts - 9) * cap >= 24 * 3600 - 600, "retries cover a day of downtime"
    assert set(env["WEBHOOK_RETRY_NON_RETRYABLE_STATUS_CODES"].split(",")) == {"400", "401", "403", "404", "413", "422"}
    # The key is this installation's secret from .env, never a value written in the file.
    assert env["AUTHENTICATION_API_KEY"].startswith("${EVOLUTION_API_KEY:?")
    assert "evolution_instances:/evolution/instances" in evo["volumes"]
    assert set(evo["depends_on"]) == {"evolution-postgres", "evolution-redis"}
    assert all(d["condition"] == "service_healthy" for d in evo["depends_on"].values())

    pg = services["evolution-postgres"]
    assert re.fullmatch(r"postgres:\d+(\.\d+)?(-alpine)?", pg["image"])
    assert "evolution_postgres:/var/lib/postgresql/data" in pg["volumes"]
    assert pg["environment"]["POSTGRES_PASSWORD"].startswith("${EVOLUTION_DB_PASSWORD:?")
    redis = services["evolution-redis"]
    assert "evolution_redis:/data" in redis["volumes"]
    # AOF on (the seed's "appendonly yes"), and no flag later on the line turning it off again.
    cmd = redis["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes" and cmd.count("--appendonly") == 1
    for name in EVOLUTION_SERVICES:
        assert "healthcheck" in services[name] and services[name]["restart"] == "unless-stopped"
    for volume in ("evolution_instances", "evolution_postgres", "evolution_redis"):
        assert volumes[volume] == {"name": f"iaze_{volume}"}, "named volumes with fixed names"


def test_evolution_is_reachable_only_inside_the_stack() -> None:
    compose = _compose()
    services = compose["services"]
    for name in EVOLUTION_SERVICES:
        assert "ports" not in services[name], f"{name} publishes a port"
    assert services["evolution"]["expose"] == ["8080"]
    # Its database and cache sit on a network with no way in or out of the host.
    assert compose["networks"]["evolution"] == {"internal": True}
    for name in ("evolution-postgres", "evolution-redis"):
        assert services[name]["networks"] == ["evolution"]
    assert set(services["evolution"]["networks"]) == {"default", "evolution"}
    published = {name for name, s in services.items() if "ports" in s}
    assert published == {"frontend"}, "only nginx is published"


def test_backend_uses_the_stacks_evolution_and_the_installation_key() -> None:
    services = _compose()["services"]
    for name in ("backend", "backup"):
        env = services[name]["environment"]
        assert env["EVOLUTION_BASE_URL"] == "${EVOLUTION_BASE_URL:-http://evolution:8080}"
        assert env["EVOLUTION_API_KEY"].startswith("${EVOLUTION_API_KEY:?")
    assert services["backend"]["environment"]["PUBLIC_BASE_URL"] == "${PUBLIC_BASE_URL:-http://backend:8000}"
    example = (ROOT / ".env.example").read_text()
    assert re.search(r"^EVOLUTION_API_KEY=$", example, re.M) and "openssl rand -hex 32" in example
    assert re.search(r"^EVOLUTION_DB_PASSWORD=$", example, re.M)


def test_backup_service_reads_the_sessions_volume_and_only_restore_writes_it() -> None:
    services = _compose()["services"]
    backup = services["backup"]
    assert "evolution_instances:/evolution/instances:ro" in backup["volumes"]
    assert backup["environment"]["BACKUP_EVOLUTION_INSTANCES_DIR"] == "/evolution/instances"
    assert backup["environment"]["DEPLOY_CHECK_BACKEND_URL"] == "http://backend:8000"
    writers = {
        name
        for name, s in services.items()
        for v in s.get("volumes", [])
        if v.split(":")[0] == "evolution_instances" and not v.endswith(":ro")
    }
    assert writers == {"evolution", "sessions-restore"}
    restore = services["sessions-restore"]
    assert restore["profiles"] == ["restore"], "never started by `docker compose up`"
    assert restore["command"][:4] == ["python", "-m", "scripts.backup", "restore-sessions"]


def test_backup_dumps_evolutions_database_with_a_matching_client() -> None:
    services = _compose()["services"]
    evolution_uri = services["evolution"]["environment"]["DATABASE_CONNECTION_URI"]
    for name in ("backup", "sessions-restore"):
        # The very database Evolution uses, same schema, reached over the internal network.
        assert services[name]["environment"]["BACKUP_EVOLUTION_DATABASE_URL"] == evolution_uri
        assert "evolution" in services[name]["networks"]
    assert services["backup"]["depends_on"]["evolution-postgres"]["condition"] == "service_healthy"
    # And its Redis: the same database Evolution's cache uses, keys under its prefix.
    env = services["evolution"]["environment"]
    for name in ("backup", "sessions-restore"):
        assert services[name]["environment"]["BACKUP_EVOLUTION_REDIS_URL"] == env["CACHE_REDIS_URI"]
    assert OpsSettings.model_fields["BACKUP_EVOLUTION_REDIS_PATTERN"].default == (
        f"{env['CACHE_REDIS_PREFIX_KEY']}:instance:*"
    )
    # pg_dump must not be older than the server: bookworm ships client 15, the server image is 15.
    dockerfile = (ROOT / "docker" / "backend.Dockerfile").read_text()
    assert "postgresql-client" in dockerfile and "FROM python:3.11-slim-bookworm" in dockerfile
    assert services["evolution-postgres"]["image"].startswith("postgres:15")


def _make_n(*args: str) -> str:
    import subprocess

    res = subprocess.run(
        ["make", "-n", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_make_operator_targets_run_docker_compose() -> None:
    assert _make_n("up") == "docker compose up -d --build"
    assert _make_n("ps") == "docker compose ps"
    assert _make_n("logs") == "docker compose logs -f --tail=200"
    assert _make_n("logs", "S=backend") == "docker compose logs -f --tail=200 backend"


def test_no_make_target_removes_volumes() -> None:
    """Every recipe line of every target: no `down`, no -v/--volumes, no volume rm/prune."""
    recipes = [line for line in _commands(ROOT / "Makefile").splitlines() if line.startswith("\t")]
    for line in recipes:
        tokens = line.split()
        assert not {"-v", "--volumes", "down"} & set(tokens), line
        assert not re.search(r"volume\s+(rm|prune)|system\s+prune|\brm\b.*(volume|data|db)", line), line


def test_the_backend_counts_nginx_as_the_one_proxy_and_a_copied_env_example_keeps_it() -> None:
    """With the private networks trusted (where compose's nginx is), an office-LAN client is
    "trusted" too: the client must be the address nginx appended (TRUSTED_PROXY_HOPS=1), and a
    .env copied from .env.example must not set it back to 0."""
    env = _compose()["services"]["backend"]["environment"]
    assert env["TRUSTED_PROXY_HOPS"] == "${TRUSTED_PROXY_HOPS:-1}"
    example = (ROOT / ".env.example").read_text()
    assert not re.search(r"^TRUSTED_PROXY_HOPS=", example, re.M)


def test_the_frontend_serves_https_from_the_mounted_certificate() -> None:
    frontend = _compose()["services"]["frontend"]
    assert "0.0.0.0:${HTTPS_PORT:-443}:443" in frontend["ports"]
    assert "${TLS_DIR:-./tls}:/etc/nginx/tls:ro" in frontend["volumes"]
    dockerfile = (ROOT / "frontend" / "Dockerfile").read_text()
    assert "COPY docker-entrypoint.d/40-iaze-tls.sh /docker-entrypoint.d/40-iaze-tls.sh" in dockerfile
