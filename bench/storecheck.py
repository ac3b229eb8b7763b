"""Reads the benchmark's own FerretDB SQLite files (read-only) to confirm, before anything is
timed, that FerretDB's pushed-down `{_id}` look-up uses an index on every collection table.

FerretDB v1.24.2 looks `_id` up with an expression its own `_id` index is not on, so every `_id`
look-up scanned; the launcher is built with that look-up changed to the index's expression
(backend/devtools/ferretdb.py, ID_LOOKUP_PATCH). A run measured on a launcher without it would say
nothing about the backend.
"""

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend.devtools import ferretdb

# The expression the launcher's FerretDB pushes `{_id}` filters down as (metadata.IDColumn, patched).
ID_EXPR = '_ferretdb_sjson->"_id"'
MISSING_ID = '"bench-no-such-id"'


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


def id_indexes(data_dir: Path, database: str) -> dict[str, Any]:
    """Per collection of `database`: table, rows, whether SQLite's plan for a missing `_id` uses an
    index, and that plan; `missing` lists the collections whose look-up would scan."""
    path = data_dir / f"{database}.sqlite"
    con = _connect(path)
    try:
        tables = con.execute("SELECT name, table_name FROM _ferretdb_collections ORDER BY name").fetchall()
        out: dict[str, dict[str, Any]] = {}
        for collection, table in tables:
            plan = con.execute(
                f'EXPLAIN QUERY PLAN SELECT _ferretdb_sjson FROM "{table}" WHERE {ID_EXPR} = ?', (MISSING_ID,)
            ).fetchall()
            detail = "; ".join(str(r[-1]) for r in plan)
            # max(rowid): the benchmark never deletes, so it is the row count without a scan.
            rows = int(con.execute(f'SELECT coalesce(max(rowid), 0) FROM "{table}"').fetchone()[0])
            out[collection] = {"table": table, "id_index": "USING INDEX" in detail, "plan": detail, "rows": rows}
    finally:
        con.close()
    return {"file": path.name, "collections": out, "missing": [c for c, i in out.items() if not i["id_index"]]}


def launcher_line() -> str:
    """Which local store a run measured: the launcher binary's build time (a benchmark rebuilds it
    when a Go source is newer, so a series run while tools/ferretdb changes shows it here) and the
    launcher's knobs from the environment."""
    if not ferretdb.BINARY.exists():
        return "launcher not built"
    built = datetime.fromtimestamp(ferretdb.BINARY.stat().st_mtime, UTC)
    knobs = [f"{k}={os.environ[k]}" for k in ("FERRETDB_SQLITE_PARAMS", "FERRETDB_SQLITE_BUSY") if k in os.environ]
    return " ".join([f"launcher built {built:%Y-%m-%d %H:%M:%S} UTC", *knobs])
