"""Where ledger entries live: the `deploy_ledger` collection and, when LEDGER_FILE is set, an
append-only JSON-lines file outside the database.

The database copy travels with the data (backups, every instance sees it); the file copy survives
the database being emptied or swapped for another, which is exactly when it is needed. Both are
append-only with unique ids, so instances starting at once never overwrite each other.
"""

import contextlib
import json
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from pymongo import uri_parser
from pymongo.errors import DuplicateKeyError

from backend.core.clock import json_default, utcnow
from backend.core.db import Database
from backend.ledger import model

COLLECTION = "deploy_ledger"
# One document, `_id: "identity"`, with a random id: which database this is (model.same_database).
IDENTITY_COLLECTION = "database_identity"
IDENTITY_ID = "identity"
RECENT = 200  # entries read per source; one per start, so this spans a long history


def new_entry_id(at: datetime) -> str:
    # Time first so ids sort by start; the random suffix keeps simultaneous starts distinct.
    return f"{at.strftime('%Y-%m-%dT%H:%M:%S.%f')}Z-{secrets.token_hex(4)}"


def server_of(url: str) -> str:
    """The servers a MONGO_URL names (hosts and replica set), without credentials or options."""
    try:
        parsed = uri_parser.parse_uri(url)
    except Exception:  # a URL the driver rejects never gets this far; this is only a label
        return "?"
    hosts = ",".join(f"{host}:{port}" for host, port in parsed["nodelist"])
    replica_set = parsed["options"].get("replicaSet")
    return f"{hosts}/{replica_set}" if replica_set else hosts


async def read_identity(db: Database) -> str | None:
    doc = await db[IDENTITY_COLLECTION].find_one({"_id": IDENTITY_ID})
    return str(doc["id"]) if doc else None


async def ensure_identity(db: Database) -> str:
    """The database's identity, created at its first recorded start. Instances starting at once
    race on the unique `_id`: one insert wins and everyone reads the winner."""
    found = await read_identity(db)
    if found is not None:
        return found
    with contextlib.suppress(DuplicateKeyError):
        await db[IDENTITY_COLLECTION].insert_one(
            {"_id": IDENTITY_ID, "id": secrets.token_hex(16), "db": db.name, "created_at": utcnow()}
        )
    found = await read_identity(db)
    if found is None:  # a majority read right after our own majority write: cannot happen
        raise RuntimeError("database identity vanished right after it was written")
    return found


# Only accepted starts can be a baseline; reading just those keeps a run of refused restarts from
# pushing the real baseline out of the window.
ACCEPTED = (model.OK, model.OVERRIDE)


async def read_db(db: Database) -> list[dict[str, Any]]:
    cursor = db[COLLECTION].find({"outcome": {"$in": list(ACCEPTED)}}).sort("_id", -1).limit(RECENT)
    return await cursor.to_list(length=RECENT)


async def append_db(db: Database, entry: dict[str, Any]) -> None:
    await db[COLLECTION].insert_one(dict(entry))


def read_file(path: str) -> list[dict[str, Any]]:
    """The file's accepted entries, whatever database they are about, newest first; a torn last
    line (crash mid-append) is skipped. One line per start, so reading it all stays small."""
    p = Path(path)
    if not path or not p.exists():
        return []
    entries: list[dict[str, Any]] = []
    with p.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and "_id" in entry and entry.get("outcome") in ACCEPTED:
                entries.append(entry)
    entries.sort(key=lambda e: str(e["_id"]), reverse=True)
    return entries


def append_file(path: str, entry: dict[str, Any]) -> None:
    """One write() of one line with O_APPEND, then fsync: concurrent appenders on the same volume
    interleave whole lines, and the entry is on disk before the instance serves."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(entry, default=json_default, sort_keys=True) + "\n").encode()
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
