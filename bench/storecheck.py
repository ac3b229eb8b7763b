"""Reads the benchmark's own FerretDB SQLite files (read-only) to confirm the launcher's extra `_id`
index exists on every collection table before anything is timed.

FerretDB v1.24.2 looks `_id` up as `_ferretdb_sjson->'$._id' = ?` while its own `_id` index is on
`_ferretdb_sjson->"_id"`; tools/ferretdb keeps an index named `<table>_iaze_id` on the exact
expression (created by a once-a-second keeper for new tables). Without it every `_id` lookup scans,
so a run measured without it would say nothing about the backend.
"""

import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend.devtools import ferretdb

# The expression FerretDB's pushed-down `{_id}` filter uses (metadata.IDColumn in v1.24.2).
ID_EXPR = "_ferretdb_sjson->'$._id'"
MISSING_ID = '"bench-no-such-id"'


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


def _inspect(path: Path) -> dict[str, dict[str, Any]]:
    con = _connect(path)
    try:
        tables = con.execute("SELECT name, table_name FROM _ferretdb_collections ORDER BY name").fetchall()
        out: dict[str, dict[str, Any]] = {}
        for collection, table in tables:
            row = con.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (f"{table}_iaze_id",)
            ).fetchone()
            has_index = bool(row and ID_EXPR in (row[0] or ""))
            plan = con.execute(
                f'EXPLAIN QUERY PLAN SELECT _ferretdb_sjson FROM "{table}" WHERE {ID_EXPR} = ?', (MISSING_ID,)
            ).fetchall()
            out[collection] = {
                "table": table,
                "iaze_id_index": has_index,
                "plan": "; ".join(str(r[-1]) for r in plan),
            }
        return out
    finally:
        con.close()


def _rows(path: Path, tables: dict[str, dict[str, Any]]) -> None:
    con = _connect(path)
    try:
        for info in tables.values():
            # max(rowid): the benchmark never deletes, so it is the row count without a scan.
            info["rows"] = int(con.execute(f'SELECT coalesce(max(rowid), 0) FROM "{info["table"]}"').fetchone()[0])
    finally:
        con.close()


def id_indexes(data_dir: Path, database: str, *, wait_seconds: float = 30.0) -> dict[str, Any]:
    """Polls until every collection table of `database` has its `_iaze_id` index or the wait is
    over, then reports per collection: table, rows, index present, SQLite's plan for a missing `_id`."""
    path = data_dir / f"{database}.sqlite"
    started = time.monotonic()
    while True:
        tables = _inspect(path)
        missing = [c for c, info in tables.items() if not info["iaze_id_index"]]
        if not missing or time.monotonic() - started >= wait_seconds:
            break
        time.sleep(0.5)
    _rows(path, tables)
    return {
        "file": path.name,
        "waited_s": round(time.monotonic() - started, 1),
        "collections": tables,
        "missing": missing,
    }


def launcher_line() -> str:
    """Which local store a run measured: the launcher binary's build time (a benchmark rebuilds it
    when a Go source is newer, so a series run while tools/ferretdb changes shows it here) and the
    launcher's knobs from the environment."""
    if not ferretdb.BINARY.exists():
        return "launcher not built"
    built = datetime.fromtimestamp(ferretdb.BINARY.stat().st_mtime, UTC)
    knobs = [f"{k}={os.environ[k]}" for k in ("FERRETDB_SQLITE_PARAMS", "FERRETDB_SQLITE_BUSY") if k in os.environ]
    return " ".join([f"launcher built {built:%Y-%m-%d %H:%M:%S} UTC", *knobs])
