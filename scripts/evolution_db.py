"""Evolution's own PostgreSQL in every backup: where Evolution v2 keeps each WhatsApp session's
Baileys credentials (table Session) and its instances (table Instance). Without those rows a
restored stack asks every customer to scan a QR code again.

dump():    pg_dump --format=custom of the schema Evolution uses (the `schema` parameter of its Prisma
           URL), written under a .partial name, checksummed, and read back in full with pg_restore:
           the rows per table in the manifest are counted from the archive itself.
check():   the checksum, then the same full read-back compared with the manifest's counts.
restore(): into a database whose Evolution tables are absent or empty (a recreated volume, with
           Evolution stopped); any row already there refuses the restore. Nothing is dropped.
"""

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from scripts.restore import sha256_of

SUFFIX = ".evolution.pgdump"
TOOLS = ("pg_dump", "pg_restore", "psql")
TIMEOUT_S = 3600
_COPY = re.compile(r'^COPY (?:"?[^". ]+"?\.)?"?([^"( ]+)"? \(')


class EvolutionDbError(Exception):
    pass


class Refused(EvolutionDbError):
    """The target is not one a restore may write into."""


@dataclass
class Checked:
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    corrupt: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def split_url(url: str) -> tuple[str, str]:
    """Prisma's URL carries `?schema=`; libpq refuses that parameter. Returns (libpq URL, schema)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), "public")
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), schema


def _run(args: list[str], *, stdout: Any = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    done = subprocess.run(args, stdout=stdout, stderr=subprocess.PIPE, text=True, env=env, timeout=TIMEOUT_S)
    if done.returncode != 0:
        raise EvolutionDbError(f"{args[0]} failed: {done.stderr.strip()[-500:]}")
    return done


def live_counts(url: str) -> dict[str, int]:
    """Rows per table of Evolution's schema in a live database ({} when the schema has no tables)."""
    conninfo, schema = split_url(url)
    sql = (
        "select table_name || E'\\t' || (xpath('/row/c/text()', query_to_xml("
        "format('select count(*) as c from %I.%I', table_schema, table_name), false, true, '')))[1]::text "
        "from information_schema.tables where table_schema = :'schema' and table_type = 'BASE TABLE' order by 1"
    )
    done = subprocess.run(
        ["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-v", f"schema={schema}", "-d", conninfo],
        input=sql,
        capture_output=True,
        text=True,
        env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
        timeout=TIMEOUT_S,
    )
    if done.returncode != 0:
        raise EvolutionDbError(f"psql failed: {done.stderr.strip()[-500:]}")
    counts = {}
    for line in done.stdout.splitlines():
        if "\t" in line:
            name, n = line.split("\t", 1)
            counts[name] = int(n)
    return counts


def archive_counts(path: Path) -> dict[str, int]:
    """Reads the whole archive back (pg_restore to SQL): every data block is decompressed, and the
    rows of each table are counted from its COPY section (one line per row in COPY text format)."""
    proc = subprocess.Popen(
        ["pg_restore", "--data-only", "--file=-", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    assert proc.stdout is not None and proc.stderr is not None
    counts: dict[str, int] = {}
    table: str | None = None
    for line in proc.stdout:
        if table is None:
            m = _COPY.match(line)
            if m:
                table = m.group(1)
                counts.setdefault(table, 0)
        elif line.rstrip("\n") == "\\.":
            table = None
        else:
            counts[table] += 1
    err = proc.stderr.read()
    if proc.wait() != 0 or table is not None:
        raise EvolutionDbError(f"pg_restore cannot read {path.name}: {err.strip()[-500:] or 'archive ends mid-table'}")
    return counts


def dump(url: str, dest: Path) -> dict[str, Any]:
    conninfo, schema = split_url(url)
    partial = dest.with_name(dest.name + ".partial")
    _run(["pg_dump", "--format=custom", f"--schema={schema}", f"--file={partial}", f"--dbname={conninfo}"])
    counts = archive_counts(partial)
    digest = sha256_of(partial)
    partial.rename(dest)
    dest.with_name(dest.name + ".sha256").write_text(f"{digest}  {dest.name}\n")
    return {
        "archive": dest.name,
        "sha256": digest,
        "bytes": dest.stat().st_size,
        "schema": schema,
        "counts": counts,
        "tool": _run(["pg_dump", "--version"]).stdout.strip(),
    }


def check(backup_dir: Path, manifest: dict[str, Any]) -> Checked:
    result = Checked()
    path = backup_dir / manifest["archive"]
    if not path.is_file() or sha256_of(path) != manifest["sha256"]:
        result.corrupt = True
        result.problems.append(f"evolution db: {manifest['archive']} is missing or does not match its sha256")
        return result
    try:
        result.counts = archive_counts(path)
    except EvolutionDbError as exc:
        result.corrupt = True
        result.problems.append(f"evolution db: {exc}")
        return result
    for name in sorted(set(manifest["counts"]) | set(result.counts)):
        want, got = manifest["counts"].get(name, 0), result.counts.get(name, 0)
        if want != got:
            result.problems.append(f"evolution db: table {name}: {want} rows in the manifest, {got} in the archive")
    return result


def restore(backup_dir: Path, manifest: dict[str, Any], url: str) -> Checked:
    """Checked archive into a database with no Evolution rows yet; refuses anything else."""
    checked = check(backup_dir, manifest)
    if not checked.ok:
        return checked
    conninfo, _ = split_url(url)
    present = live_counts(url)
    if any(present.values()):
        busy = ", ".join(f"{t}={n}" for t, n in sorted(present.items()) if n)
        raise Refused(f"the target already has Evolution rows ({busy}): restore only into an empty database")
    args = ["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={conninfo}"]
    if present:  # Evolution already created its (empty) tables at start-up: only the rows go in
        args += ["--data-only", "--disable-triggers"]
    _run([*args, str(backup_dir / manifest["archive"])])
    after = Checked(counts=live_counts(url))
    for name, want in sorted(manifest["counts"].items()):
        if after.counts.get(name, 0) != want:
            after.problems.append(
                f"evolution db: table {name}: {want} rows in the backup, {after.counts.get(name, 0)} restored"
            )
    return after
