"""Every command DEPLOY_RULES.md shows, run in the order an operator follows it.

```sh blocks run verbatim in a shell (the only change: the database name `support_chat` becomes this
module's test database). ```compose blocks cannot start containers here (no Docker engine): each line
is checked against docker-compose.yml (known sub-command and service, no volume removal) and the
command an `exec` or `run` runs inside the container is run here, with /backups and
/evolution/instances mapped to local folders. ```make lines are expanded by `make -n` and each
resulting command is checked as a compose line.
"""

import os
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.factories import Tenant, assume, make_tenant, make_ticket
from tests.scripts import pg
from tests.scripts.cli import ROOT, Result, env_for, run_shell
from tests.scripts.redis_server import keys_in, redis_server, seed_keys

pytestmark = pytest.mark.asyncio(loop_scope="session")

RULES = (ROOT / "DEPLOY_RULES.md").read_text()
COMPOSE_SUBCOMMANDS = {"up", "ps", "logs", "exec", "run", "stop", "start"}
# Stand-ins for Evolution's instances volume: what the sessions backup and restore act on.
SESSION_FILES = {
    "cm1abc/creds.json": b'{"me": {"id": "5511988887777:3@s.whatsapp.net"}}',
    "cm1abc/pre-key-1.json": bytes(range(256)),
    "cm2def/session-5511977776666.0.json": b'{"chave": "sess\xc3\xa3o"}',
}


def blocks(kind: str) -> list[list[str]]:
    found = re.findall(rf"```{kind}\n(.*?)```", RULES, re.S)
    return [[line for line in b.splitlines() if line.strip() and not line.startswith("#")] for b in found]


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    t = await make_tenant(client, admin_headers, agents=1)
    for i in range(3):
        ticket = await make_ticket(client, t, message=f"mensagem {i}")
        if i:
            await assume(client, t.agents[0]["headers"], ticket["id"])
    return t


@pytest.fixture(scope="module")
def evolution_pg() -> Iterator[pg.Cluster]:
    """Evolution's PostgreSQL, with the sessions' credentials the backups must carry."""
    yield from pg.cluster()


@pytest.fixture(scope="module")
def evolution_redis_url() -> Iterator[str]:
    """Evolution's Redis, with the sessions' signal keys the backups must carry."""
    yield from redis_server()


class Operator:
    def __init__(self, mongo_url: str, db_name: str, workdir: Path, evolution_db_url: str, redis_url: str) -> None:
        self.db_name = db_name
        self.workdir = workdir
        self.instances = workdir / "instances"
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = env_for(
            mongo_url,
            db_name,
            BACKUP_TOOL="python",
            BACKUP_DIR=str(workdir / "backups"),
            BACKUP_EVOLUTION_INSTANCES_DIR=str(self.instances),
            BACKUP_EVOLUTION_DATABASE_URL=evolution_db_url,
            BACKUP_EVOLUTION_REDIS_URL=redis_url,
            PATH=path,
        )

    def local(self, command: str) -> str:
        return (
            command.replace("support_chat", self.db_name)
            .replace("/backups", str(self.workdir / "backups"))
            .replace("/evolution/instances", str(self.instances))
        )

    async def sh(self, line: str) -> Result:
        return await run_shell(self.local(line), env=self.env, cwd=self.workdir)

    async def compose(self, line: str, services: dict[str, Any]) -> Result | None:
        tokens = shlex.split(line)
        assert tokens[:2] == ["docker", "compose"], line
        sub, rest = tokens[2], tokens[3:]
        assert sub in COMPOSE_SUBCOMMANDS, line
        assert not {"-v", "--volumes"} & set(rest), line
        if sub not in ("exec", "run"):
            for word in rest:
                assert word.startswith("-") or word in services, line
            return None
        while rest[0].startswith("-"):
            rest = rest[2:] if rest[0] in ("-e", "--env") else rest[1:]
        assert rest[0] in services, line
        if sub == "run":  # one-off containers only: a service `up` would never start
            assert services[rest[0]].get("profiles"), line
        inner = rest[1:]
        script = inner[2] if inner[:2] == ["sh", "-c"] else shlex.join(inner)
        return await self.sh(script)


async def test_every_command_in_deploy_rules_works(
    tenant: Tenant,
    mongo_url: str,
    db_name: str,
    db: Any,
    raw_mongo: Any,
    tmp_path: Path,
    evolution_pg: pg.Cluster,
    evolution_redis_url: str,
) -> None:
    creds = pg.seed_sessions(evolution_pg, "evolution")
    signal_keys = seed_keys(evolution_redis_url)
    op = Operator(mongo_url, db_name, tmp_path, evolution_pg.url("evolution"), evolution_redis_url)
    for rel, data in SESSION_FILES.items():
        (op.instances / rel).parent.mkdir(parents=True, exist_ok=True)
        (op.instances / rel).write_bytes(data)
    sh = blocks("sh")
    assert len(sh) == 4 and sum(len(b) for b in sh) == 8

    for line in sh[0]:  # before the deploy
        res = await op.sh(line)
        assert res.code == 0, (line, res.output)
        if "backup verify" in line:
            assert "OK" in res.stdout
    for line in sh[1]:  # after a clean deploy
        res = await op.sh(line)
        assert res.code == 0 and "ANTES" in res.stdout and "OK" in res.stdout, res.output

    # A deploy that lost data: verify must say so, then section 5 brings it back.
    lost = await db.messages.find_one({})
    await db.messages.delete_one({"_id": lost["_id"]})
    res = await op.sh(sh[1][0])
    assert res.code == 1 and "collection messages" in res.stdout, res.output
    for line in sh[2]:  # inspect in a side database
        res = await op.sh(line)
        assert res.code == 0, (line, res.output)
    side = raw_mongo[f"{db_name}_restore"]
    assert await side.messages.find_one({"_id": lost["_id"]}) == lost
    for line in sh[3]:  # bring back what is missing, then verify again
        res = await op.sh(line)
        assert res.code == 0, (line, res.output)
    assert await db.messages.find_one({"_id": lost["_id"]}) == lost

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    make = [line for b in blocks("make") for line in b]
    assert len(make) == 3
    for line in make:
        dry = await run_shell(f"make -n --no-print-directory {shlex.join(shlex.split(line)[1:])}", env=op.env, cwd=ROOT)
        assert dry.code == 0, (line, dry.output)
        expanded = dry.stdout.splitlines()
        assert expanded and all(e.startswith("docker compose ") for e in expanded), (line, expanded)
        for command in expanded:
            assert await op.compose(command, services) is None, (line, command)

    compose = [line for b in blocks("compose") for line in b]
    assert len(compose) == 16
    ran = 0
    for line in compose:
        res = await op.compose(line, services)
        if res is not None:
            ran += 1
            assert res.code == 0, (line, res.output)
        if line == "docker compose stop evolution":
            # While Evolution is stopped its sessions turn out lost: one file gone, one damaged.
            (op.instances / "cm1abc" / "pre-key-1.json").unlink()
            (op.instances / "cm2def" / "session-5511977776666.0.json").write_bytes(b"")
            # ... and Evolution's database volume was recreated: an empty database.
            evolution_pg.sql("evolution", f"drop schema {pg.SCHEMA} cascade")
            # ... and so was its Redis volume.
            assert keys_in(evolution_redis_url) and _flush(evolution_redis_url)
    assert ran == 9
    assert pg.sessions_in(evolution_pg, "evolution") == creds
    assert keys_in(evolution_redis_url) == signal_keys
    # The restore section put every session file back, byte for byte, and kept what it replaced.
    assert _tree(op.instances) == SESSION_FILES
    assert list((tmp_path / "backups").glob("pre-restore-*.sessions.tar.gz"))


def _flush(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return bool(client.flushdb())
    finally:
        client.close()


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
