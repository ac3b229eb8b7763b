"""A real PostgreSQL for the Evolution database backup tests: a scratch cluster on a loopback port,
with the two Evolution v2 tables a WhatsApp session lives in (Prisma's names and shapes, trimmed)."""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from backend.devtools import ferretdb

BIN = Path("/usr/lib/postgresql/15/bin")
SCHEMA = "evolution_api"

EVOLUTION_TABLES = f"""
create schema if not exists {SCHEMA};
create table {SCHEMA}."Instance" (
  id varchar(255) primary key,
  name varchar(255) not null unique,
  "connectionStatus" varchar(20) not null default 'open',
  "ownerJid" varchar(100)
);
create table {SCHEMA}."Session" (
  id varchar(255) primary key,
  "sessionId" varchar(255) not null unique references {SCHEMA}."Instance"(id),
  creds text,
  "createdAt" timestamp default now()
);
"""


def _tool(name: str) -> str:
    found = shutil.which(name) or (str(BIN / name) if (BIN / name).exists() else None)
    assert found, f"{name} is not installed (postgresql-15)"
    return found


class Cluster:
    """initdb + postgres as an unprivileged user (PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        # Its own directory outside pytest's (private to root): the server user must reach it.
        self.root = Path(tempfile.mkdtemp(prefix="iaze-evolution-pg-"))
        self.port = ferretdb.free_port()
        self.data = self.root / "data"
        self.as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        if self.as_user:
            shutil.chown(self.root, "nobody")
        self._run(_tool("initdb"), "-D", str(self.data), "-U", "evolution", "--auth=trust", "-E", "UTF8")
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(_tool("pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        subprocess.run(
            [*self.as_user, _tool("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=120,
            check=False,
        )

    def url(self, db: str = "postgres") -> str:
        """The form Evolution's DATABASE_CONNECTION_URI takes (Prisma's `schema` parameter included)."""
        return f"postgresql://evolution@127.0.0.1:{self.port}/{db}?schema={SCHEMA}"

    def sql(self, db: str, text: str) -> str:
        done = subprocess.run(
            [_tool("psql"), "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-d", self.url(db).split("?")[0]],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return done.stdout


def cluster() -> Iterator[Cluster]:
    c = Cluster()
    c.start()
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(c.root, ignore_errors=True)  # the scratch cluster this fixture created


def seed_sessions(c: Cluster, db: str) -> dict[str, str]:
    """Evolution's tables with two paired instances; returns sessionId -> creds."""
    c.sql("postgres", f"create database {db}")
    creds = {
        "cm1abc": '{"noiseKey": {"private": "AAAA"}, "me": {"id": "5511988887777:3@s.whatsapp.net"}}',
        "cm2def": '{"nome": "sessão ç", "linhas": "a\\nb\\tc"}',
    }
    statements = [EVOLUTION_TABLES]
    for i, (sid, value) in enumerate(creds.items()):
        quoted = value.replace("'", "''")
        statements.append(
            f"insert into {SCHEMA}.\"Instance\" values ('{sid}', 'inst-{i}', 'open', '55119{i}@s.whatsapp.net');"
            f"insert into {SCHEMA}.\"Session\" (id, \"sessionId\", creds) values ('s{i}', '{sid}', '{quoted}');"
        )
    c.sql(db, "\n".join(statements))
    return creds


def sessions_in(c: Cluster, db: str) -> dict[str, str]:
    out = c.sql(db, f'select "sessionId" || E\'\\t\' || creds from {SCHEMA}."Session" order by 1')
    return dict(line.split("\t", 1) for line in out.splitlines() if line)
