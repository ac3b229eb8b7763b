"""Is this database fit for production? A pure decision over the server's own answers to
`hello` and `buildInfo`, plus the start-up step that asks them.

Expected shapes (MongoDB 7/8):
- replica set member: hello -> {"isWritablePrimary": true, "setName": "rs0", "hosts": [...], ...}
- mongos (sharded cluster): hello -> {"isWritablePrimary": true, "msg": "isdbgrid", ...}
- standalone mongod: hello -> {"isWritablePrimary": true, ...} with no setName: no majority
  commit point, so w:"majority" cannot mean "on a majority of an oplog-replicated set".
- FerretDB: buildInfo -> {"version": "7.0.42", "ferretdbVersion": "...", ...}; hello has no setName.
"""

from collections.abc import Mapping
from typing import Any

from backend.core.config import Settings
from backend.core.db import Database, is_ferretdb


class UnfitStore(RuntimeError):
    pass


def store_problems(hello: Mapping[str, Any], build_info: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    if is_ferretdb(build_info):
        problems.append(
            "MONGO_URL points at FerretDB, a local development store (buildInfo.ferretdbVersion="
            f"{build_info.get('ferretdbVersion')!r}); production needs MongoDB as a replica set"
        )
    if not hello.get("setName") and hello.get("msg") != "isdbgrid":
        problems.append(
            "the database is not a replica set member (hello has no setName), so journaled majority "
            "write concern cannot be guaranteed; run mongod with --replSet and rs.initiate() "
            "(a single-node replica set is enough) and put replicaSet=<name> in MONGO_URL"
        )
    elif hello.get("setName") and not hello.get("isWritablePrimary", hello.get("ismaster")):
        problems.append(f"connected to a non-primary member of replica set {hello.get('setName')!r}")
    return problems


async def check(db: Database, settings: Settings) -> None:
    if settings.ENV != "production":
        return
    hello = await db.client.admin.command("hello")
    build_info = await db.client.admin.command("buildInfo")
    problems = store_problems(hello, build_info)
    if problems:
        raise UnfitStore("ENV=production refuses this database: " + "; ".join(problems))
