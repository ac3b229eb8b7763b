"""The production stack's files say what DEPLOY_RULES.md promises (the schema itself is checked by
dclint in `make lint`; there is no Docker engine here to start the stack)."""

import json
import re
from pathlib import Path
from typing import Any

import yaml

import backend.app  # noqa: F401 - imports every repository, so declared() is complete
from backend.core.indexes import declared
from scripts import gen_mongo_init

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


def test_app_user_cannot_delete_or_drop() -> None:
    users = (ROOT / "mongo-init" / "01-users.js").read_text()
    role = users[users.index("createRole") : users.index("createUser")]
    actions = set(re.findall(r'"(\w+)"', role[role.index("actions") :]))
    assert {"find", "insert", "update", "createIndex"} <= actions
    assert not actions & {"remove", "dropCollection", "dropDatabase", "dropIndex", "renameCollectionSameDB"}


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
