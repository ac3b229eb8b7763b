"""Where ledger entries live: the `deploy_ledger` collection and, when LEDGER_FILE is set, an
append-only JSON-lines file outside the database.

The database copy travels with the data (backups, every instance sees it); the file copy survives
the database being emptied or swapped for another, which is exactly when it is needed. Both are
append-only with unique ids, so instances starting at once never overwrite each other.
"""

import json
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from backend.core.clock import utcnow
from backend.core.db import Database
from backend.ledger import model

COLLECTION = "deploy_ledger"
RECENT = 200  # entries read per source; one per start, so this spans a long history


def new_entry_id(at: datetime) -> str:
    # Time first so ids sort by start; the random suffix keeps simultaneous starts distinct.
    return f"{at.strftime('%Y-%m-%dT%H:%M:%S.%f')}Z-{secrets.token_hex(4)}"


def make_entry(
    *,
    db_name: str,
    version: str,
    counts: dict[str, int],
    outcome: str,
    shrinks: list[dict[str, Any]],
    override: dict[str, str] | None,
    schema_version: int | None,
) -> dict[str, Any]:
    at = utcnow()
    return {
        "_id": new_entry_id(at),
        "db": db_name,
        "at": at,
        "version": version,
        "host": os.uname().nodename,
        "pid": os.getpid(),
        "counts": counts,
        "outcome": outcome,
        "shrinks": shrinks,
        "override": override,
        "schema_version": schema_version,
    }


# Only accepted starts can be a baseline; reading just those keeps a run of refused restarts from
# pushing the real baseline out of the window.
ACCEPTED = (model.OK, model.OVERRIDE)


async def read_db(db: Database) -> list[dict[str, Any]]:
    cursor = db[COLLECTION].find({"outcome": {"$in": list(ACCEPTED)}}).sort("_id", -1).limit(RECENT)
    return await cursor.to_list(length=RECENT)


async def append_db(db: Database, entry: dict[str, Any]) -> None:
    await db[COLLECTION].insert_one(dict(entry))


def read_file(path: str, db_name: str) -> list[dict[str, Any]]:
    """Entries of this database from the file; a torn last line (crash mid-append) is skipped."""
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
            if isinstance(entry, dict) and entry.get("db") == db_name and entry.get("outcome") in ACCEPTED:
                entries.append(entry)
    entries.sort(key=lambda e: str(e["_id"]), reverse=True)
    return entries[:RECENT]


def append_file(path: str, entry: dict[str, Any]) -> None:
    """One write() of one line with O_APPEND, then fsync: concurrent appenders on the same volume
    interleave whole lines, and the entry is on disk before the instance serves."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(entry, default=_json_default, sort_keys=True) + "\n").encode()
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
