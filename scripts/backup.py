"""`python -m scripts.backup [run|verify|prune|list|schedule]`: mongodump archives that count.

run      writes <BACKUP_DIR>/iaze-<db>-<UTC time>.archive.gz (+ .sha256) and a .manifest.json with
         the documents per collection read back from the archive; with BACKUP_EVOLUTION_INSTANCES_DIR
         set, also <base>.sessions.tar.gz (+ .sha256) of the WhatsApp sessions, every file's path,
         size and sha256 in the same manifest; with BACKUP_EVOLUTION_DATABASE_URL set, also
         <base>.evolution.pgdump (+ .sha256), Evolution's PostgreSQL (the Baileys credentials), its
         rows per table counted back from the archive; with BACKUP_EVOLUTION_REDIS_URL set, also
         <base>.evolution-redis.jsonl.gz (+ .sha256), the Baileys signal keys kept in Evolution's
         Redis, each key's content hashed in the manifest. Then applies retention.
verify   restores the newest archive into a scratch database (the next of a fixed set of four, the
         backup user's only writable databases), compares its counts with the
         manifest, reads every media file (GridFS) back and hashes it against its record's sha256,
         drops the scratch database; checks the sessions tar's checksum and extracts it
         into a scratch directory, comparing every file with the manifest; records the result.
restore-sessions  puts a checked sessions archive back into the instances directory (Evolution
         stopped); keeps an archive of what the directory held before.
restore-evolution-db  puts a checked Evolution database dump into a database with no Evolution
         rows yet (a recreated volume); refuses any other target.
restore-evolution-redis  puts the checked signal keys back, only keys the Redis does not have.
prune    keeps the newest backup, the newest of each of the last BACKUP_KEEP_DAILY days and of the
         last BACKUP_KEEP_WEEKLY ISO weeks; deletes only backups this script made (their manifest
         says so), never any other file.
schedule run + verify + prune every BACKUP_INTERVAL_SECONDS (the compose `backup` service).
"""

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient
from redis import exceptions as redis_errors
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from backend.media import service as media
from scripts import archive, dumptools, evolution_db, evolution_redis, retention, sessions
from scripts.common import Exit, OpsSettings, connect, console, database, fail, load_settings, out, run
from scripts.restore import database_counts, drop_scratch_database, restore_archive, sha256_of

FORMAT = "iaze-backup/1"
MADE_BY = "iaze-backup"
TOOL_VERSION = "iaze-archive/1"
RAW = CodecOptions(document_class=RawBSONDocument)

app = typer.Typer(
    help="Backups as mongodump archives with checksum, manifest, verified restore and retention.",
    add_completion=False,
    pretty_exceptions_enable=False,
)

MongoUrl = Annotated[str | None, typer.Option("--mongo-url", help="Overrides MONGO_URL.", show_default=False)]
DbName = Annotated[str | None, typer.Option("--db", help="Overrides MONGO_DB.", show_default=False)]
Dir = Annotated[Path | None, typer.Option("--dir", help="Backup directory (default BACKUP_DIR).", show_default=False)]
Tool = Annotated[str | None, typer.Option("--tool", help="auto | mongo-tools | python (default BACKUP_TOOL).")]
EnvFile = Annotated[Path | None, typer.Option("--env-file", help="Settings file (default ./.env).")]


def _stamp(at: datetime) -> str:
    return at.strftime("%Y%m%dT%H%M%S") + f".{at.microsecond // 1000:03d}Z"


def _parse_stamp(stamp: str) -> datetime:
    return datetime.strptime(stamp.removesuffix("Z"), "%Y%m%dT%H%M%S.%f").replace(tzinfo=UTC)


def _uuid_hex(info: Mapping[str, Any]) -> str | None:
    """mongodump writes the collection UUID as 32 hex digits; servers return a UUID or Binary."""
    value = info.get("info", {}).get("uuid")
    if value is None:
        return None
    return value.hex if isinstance(value, UUID) else bytes(value).hex()


async def _python_dump(client: AsyncMongoClient[dict[str, Any]], db_name: str, path: Path) -> None:
    db = database(client, db_name)
    infos = [i async for i in await db.list_collections() if not i["name"].startswith("system.")]
    infos.sort(key=lambda i: i["name"])
    metas: list[archive.CollectionMeta] = []
    counts: dict[str, int] = {}
    for info in infos:
        name = info["name"]
        indexes = [{k: v for k, v in ix.items() if k != "ns"} async for ix in await db[name].list_indexes()]
        meta_json = archive.metadata_json(
            name, options=dict(info.get("options") or {}), indexes=indexes, uuid=_uuid_hex(info)
        )
        metas.append(archive.CollectionMeta(db_name, name, meta_json))
        counts[name] = await db[name].estimated_document_count()
    build = await client.admin.command("buildInfo")
    with (
        archive.open_gzip(str(path), "wb") as fh,
        Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as progress,
    ):
        writer = archive.Writer(fh)
        writer.prelude(server_version=str(build.get("version", "")), tool_version=TOOL_VERSION, collections=metas)
        for meta in metas:
            task = progress.add_task(f"dump {meta.collection}", total=counts[meta.collection] or None)
            ns = writer.namespace(db_name, meta.collection)
            raw_coll = db[meta.collection].with_options(codec_options=RAW)
            async for doc in raw_coll.find({}, batch_size=2000):
                ns.add(bytes(doc.raw))
                progress.advance(task)
            ns.close()


async def make_backup(
    client: AsyncMongoClient[dict[str, Any]], settings: OpsSettings, out_dir: Path, *, tool: str
) -> dict[str, Any]:
    """Writes archive, checksum and manifest; returns the manifest. A half-written archive keeps
    its .partial name, so it can never be taken for a backup."""
    out_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a CLI, nothing else runs on this loop
    sessions_dir = Path(settings.BACKUP_EVOLUTION_INSTANCES_DIR) if settings.BACKUP_EVOLUTION_INSTANCES_DIR else None
    if sessions_dir is not None and not sessions_dir.is_dir():
        # Before anything is written: a misconfigured path must not yield a backup without sessions.
        fail(Exit.FILE, f"BACKUP_EVOLUTION_INSTANCES_DIR={sessions_dir} is not a directory")
    evolution_url = settings.BACKUP_EVOLUTION_DATABASE_URL
    if evolution_url and (missing := evolution_db.missing_tools()):
        fail(Exit.USAGE, f"BACKUP_EVOLUTION_DATABASE_URL is set but {', '.join(missing)} is not installed")
    at = datetime.now(UTC)
    base = f"iaze-{settings.MONGO_DB}-{_stamp(at)}"
    final = out_dir / f"{base}.archive.gz"
    partial = out_dir / f"{base}.archive.gz.partial"
    source_counts = await database_counts(database(client, settings.MONGO_DB))
    if dumptools.use_real_tools(tool):
        dumptools.mongodump(settings.mongo_url, settings.MONGO_DB, partial)
        tool_used = dumptools.version("mongodump")
    else:
        await _python_dump(client, settings.MONGO_DB, partial)
        tool_used = TOOL_VERSION
    counts = archive.count_documents(str(partial))  # reads it all back: CRCs and structure checked
    digest = sha256_of(partial)
    partial.rename(final)
    final.with_name(final.name + ".sha256").write_text(f"{digest}  {final.name}\n")
    sessions_manifest = None
    if sessions_dir is not None:
        written = sessions.write(sessions_dir, out_dir / f"{base}{sessions.SUFFIX}")
        sessions_manifest = written.manifest(sessions_dir)
    evolution_manifest = None
    if evolution_url:
        try:
            evolution_manifest = evolution_db.dump(evolution_url, out_dir / f"{base}{evolution_db.SUFFIX}")
        except evolution_db.EvolutionDbError as exc:
            fail(Exit.DATABASE, f"Evolution's database: {exc}")
    redis_manifest = None
    if settings.BACKUP_EVOLUTION_REDIS_URL:
        try:
            redis_manifest = evolution_redis.dump(
                settings.BACKUP_EVOLUTION_REDIS_URL,
                settings.BACKUP_EVOLUTION_REDIS_PATTERN,
                out_dir / f"{base}{evolution_redis.SUFFIX}",
            )
        except redis_errors.RedisError as exc:
            fail(Exit.DATABASE, f"Evolution's Redis: {exc}")
    # The manifest is written last: it is what makes the files above a backup.
    manifest = {
        "format": FORMAT,
        "made_by": MADE_BY,
        "database": settings.MONGO_DB,
        "created_at": at.isoformat(),
        "stamp": _stamp(at),
        "archive": final.name,
        "sha256": digest,
        "bytes": final.stat().st_size,
        "tool": tool_used,
        "counts": counts,
        "source_counts_before": source_counts,
        "sessions": sessions_manifest,
        "evolution_db": evolution_manifest,
        "evolution_redis": redis_manifest,
    }
    (out_dir / f"{base}.manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def manifests(out_dir: Path, db_name: str) -> list[tuple[Path, dict[str, Any]]]:
    """This script's backups of `db_name`, newest first. Anything else in the directory is ignored."""
    found = []
    for path in out_dir.glob(f"iaze-{db_name}-*.manifest.json"):
        try:
            m = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if (
            m.get("made_by") == MADE_BY
            and m.get("database") == db_name
            and m.get("archive", "").endswith(".archive.gz")
        ):
            found.append((path, m))
    found.sort(key=lambda pm: pm[1]["stamp"], reverse=True)
    return found


def _last_scratch(out_dir: Path, settings: OpsSettings) -> str | None:
    """The scratch database the newest verify record in `out_dir` names (None: no record says)."""
    newest: tuple[str, str] | None = None
    for path in out_dir.glob(f"iaze-{settings.MONGO_DB}-*.verified.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        at, name = record.get("at"), record.get("scratch")
        if isinstance(at, str) and isinstance(name, str) and (newest is None or at > newest[0]):
            newest = (at, name)
    return newest[1] if newest else None


async def verify_newest(
    client: AsyncMongoClient[dict[str, Any]], settings: OpsSettings, out_dir: Path, *, tool: str
) -> bool:
    found = manifests(out_dir, settings.MONGO_DB)
    if not found:
        fail(Exit.FILE, f"no backups of {settings.MONGO_DB} in {out_dir}")
    manifest_path, manifest = found[0]
    path = out_dir / manifest["archive"]
    if not path.is_file() or sha256_of(path) != manifest["sha256"]:
        fail(Exit.FILE, f"{manifest['archive']} is missing or does not match its manifest's sha256")
    leftovers = [n for n in await client.list_database_names() if settings.is_scratch(n)]
    for leftover in leftovers:
        await drop_scratch_database(client, settings, leftover)  # an interrupted verify's
    scratch = settings.next_scratch(_last_scratch(out_dir, settings))
    while scratch in leftovers:  # just dropped: not recreated moments later (OpsSettings.scratch_names)
        scratch = settings.next_scratch(scratch)
    try:
        restored = await restore_archive(client, settings, path, scratch, tool=tool)
        counts = await database_counts(database(client, scratch))
        # Every restored media file read back and hashed against its record's sha256.
        media_checked = await media.check_stored(database(client, scratch))
    finally:
        await drop_scratch_database(client, settings, scratch)
    expected: dict[str, int] = manifest["counts"]
    diffs = {n: (expected.get(n, 0), counts.get(n, 0)) for n in set(expected) | set(counts)}
    bad = {n: d for n, d in diffs.items() if d[0] != d[1]}
    table = Table(title=f"backup verify: {manifest['archive']} restored into {scratch} ({restored.tool})")
    for col in ("collection", "manifest", "restored", ""):
        table.add_column(col)
    for name in sorted(diffs):
        m, r = diffs[name]
        table.add_row(name, str(m), str(r), "ok" if m == r else "DIFFERENT")
    out.print(table)
    out.print(
        f"media: {media_checked.records} files, {media_checked.bytes} bytes read back, "
        + ("every sha256 matches" if media_checked.ok else f"{len(media_checked.problems)} DIFFERENT")
    )
    record: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(),
        "scratch": scratch,
        "ok": not bad and media_checked.ok,
        "restored_counts": counts,
        "tool": restored.tool,
        "media": {"files": media_checked.records, "bytes": media_checked.bytes, "problems": media_checked.problems},
    }
    corrupt: list[str] = list(media_checked.problems)
    checked = _verify_sessions(out_dir, manifest)
    if checked is not None:
        record["sessions"] = {"ok": checked.ok, "files": checked.files, "problems": checked.problems}
        record["ok"] = record["ok"] and checked.ok
        corrupt += checked.problems if checked.corrupt else []
    evo = _verify_evolution_db(out_dir, manifest)
    if evo is not None:
        record["evolution_db"] = {"ok": evo.ok, "counts": evo.counts, "problems": evo.problems}
        record["ok"] = record["ok"] and evo.ok
        corrupt += evo.problems if evo.corrupt else []
    keys = _verify_evolution_redis(out_dir, manifest)
    if keys is not None:
        record["evolution_redis"] = {"ok": keys.ok, "keys": keys.keys, "problems": keys.problems}
        record["ok"] = record["ok"] and keys.ok
        corrupt += keys.problems if keys.corrupt else []
    manifest_path.with_name(manifest_path.name.replace(".manifest.json", ".verified.json")).write_text(
        json.dumps(record, indent=2, sort_keys=True) + "\n"
    )
    if corrupt:
        fail(Exit.FILE, "; ".join(corrupt))
    return bool(record["ok"])


def _verify_evolution_redis(out_dir: Path, manifest: dict[str, Any]) -> evolution_redis.Checked | None:
    """The signal keys of this backup, when it has them: checksum, read back, every key compared."""
    rm = manifest.get("evolution_redis")
    if not rm:
        return None
    checked, _ = evolution_redis.check(out_dir, rm)
    table = Table(title=f"backup verify: {rm['archive']} read back")
    for col in ("", "manifest", "archive", ""):
        table.add_column(col)
    table.add_row("keys", str(rm["key_count"]), str(checked.keys), "ok" if checked.ok else "DIFFERENT")
    out.print(table)
    for problem in checked.problems:
        out.print(f"  - {problem}")
    return checked


def _verify_evolution_db(out_dir: Path, manifest: dict[str, Any]) -> evolution_db.Checked | None:
    """Evolution's database dump of this backup, when it has one: checksum and a full read-back."""
    em = manifest.get("evolution_db")
    if not em:
        return None
    if missing := evolution_db.missing_tools():
        fail(Exit.USAGE, f"{em['archive']} needs {', '.join(missing)} to be verified")
    checked = evolution_db.check(out_dir, em)
    table = Table(title=f"backup verify: {em['archive']} read back with pg_restore")
    for col in ("table", "manifest", "archive", ""):
        table.add_column(col)
    for name in sorted(set(em["counts"]) | set(checked.counts)):
        m, a = em["counts"].get(name, 0), checked.counts.get(name, 0)
        table.add_row(name, str(m), str(a) if checked.counts else "-", "ok" if m == a else "DIFFERENT")
    out.print(table)
    for problem in checked.problems:
        out.print(f"  - {problem}")
    return checked


def _verify_sessions(out_dir: Path, manifest: dict[str, Any]) -> sessions.Checked | None:
    """The sessions archive of this backup, when it has one: checksum, extraction, every file."""
    sm = manifest.get("sessions")
    if not sm:
        out.print("sessions: this backup has none (BACKUP_EVOLUTION_INSTANCES_DIR was empty)")
        return None
    checked = sessions.check(out_dir, sm)
    table = Table(title=f"backup verify: {sm['archive']} extracted into a scratch directory")
    for col in ("", "manifest", "extracted", ""):
        table.add_column(col)
    table.add_row("files", str(len(sm["files"])), str(checked.files), "ok" if checked.ok else "DIFFERENT")
    out.print(table)
    for problem in checked.problems:
        out.print(f"  - {problem}")
    return checked


def prune(out_dir: Path, db_name: str, *, keep_daily: int, keep_weekly: int, dry_run: bool = False) -> list[str]:
    found = manifests(out_dir, db_name)
    _, delete = retention.plan(
        [(_parse_stamp(m["stamp"]), (p, m)) for p, m in found], keep_daily=keep_daily, keep_weekly=keep_weekly
    )
    removed = []
    for manifest_path, m in delete:
        archive_name = m["archive"]
        files = [
            out_dir / archive_name,
            out_dir / f"{archive_name}.sha256",
            *_sessions_files(out_dir, m),
            manifest_path.with_name(manifest_path.name.replace(".manifest.json", ".verified.json")),
            manifest_path,  # last: a crash midway leaves the manifest, so the next prune finishes the job
        ]
        if not dry_run:
            for f in files:
                f.unlink(missing_ok=True)
        removed.append(archive_name)
    return removed


def _sessions_files(out_dir: Path, manifest: dict[str, Any]) -> list[Path]:
    """The WhatsApp session parts of a backup: instances tar and Evolution database dump."""
    files = []
    for key in ("sessions", "evolution_db", "evolution_redis"):
        part = manifest.get(key)
        if part:
            files += [out_dir / part["archive"], out_dir / f"{part['archive']}.sha256"]
    return files


def _settings(mongo_url: str | None, db: str | None, env_file: Path | None) -> OpsSettings:
    return load_settings(mongo_url, db, env_file)


def _do_run(settings: OpsSettings, out_dir: Path, tool: str, *, keep: bool) -> dict[str, Any]:
    async def body() -> dict[str, Any]:
        client = connect(settings)
        try:
            return await make_backup(client, settings, out_dir, tool=tool)
        finally:
            await client.close()

    try:
        manifest = run(body())
    except archive.ArchiveError as exc:
        fail(Exit.FILE, f"the archive just written does not read back: {exc}")
    out.print(f"backup {out_dir / manifest['archive']} ({manifest['bytes']} bytes, {manifest['tool']})")
    for name, n in sorted(manifest["counts"].items()):
        out.print(f"  {name}: {n}")
    sm = manifest["sessions"]
    if sm:
        out.print(f"sessions {out_dir / sm['archive']} ({sm['file_count']} files, {sm['total_bytes']} bytes)")
    em = manifest["evolution_db"]
    if em:
        rows = ", ".join(f"{t} {n}" for t, n in sorted(em["counts"].items()))
        out.print(f"evolution db {out_dir / em['archive']} ({rows})")
    rm = manifest["evolution_redis"]
    if rm:
        out.print(f"evolution redis {out_dir / rm['archive']} ({rm['key_count']} keys)")
    if keep:
        for name in prune(
            out_dir, settings.MONGO_DB, keep_daily=settings.BACKUP_KEEP_DAILY, keep_weekly=settings.BACKUP_KEEP_WEEKLY
        ):
            out.print(f"retention: deleted {name}")
    return manifest


def _do_verify(settings: OpsSettings, out_dir: Path, tool: str) -> bool:
    async def body() -> bool:
        client = connect(settings)
        try:
            return await verify_newest(client, settings, out_dir, tool=tool)
        finally:
            await client.close()

    try:
        return run(body())
    except archive.ArchiveError as exc:
        fail(Exit.FILE, f"newest archive is damaged: {exc}")


@app.callback(invoke_without_command=True)
def default(ctx: typer.Context) -> None:
    """Without a command: `run` with the settings from the environment."""
    if ctx.invoked_subcommand is None:
        s = load_settings()
        _do_run(s, Path(s.BACKUP_DIR), s.BACKUP_TOOL, keep=True)


@app.command("run")
def run_cmd(
    out_dir: Dir = None,
    tool: Tool = None,
    no_prune: Annotated[bool, typer.Option("--no-prune", help="Skip retention after the backup.")] = False,
    mongo_url: MongoUrl = None,
    db: DbName = None,
    env_file: EnvFile = None,
) -> None:
    """Write a timestamped gzip'd mongodump archive, its .sha256 and a manifest of counts."""
    s = _settings(mongo_url, db, env_file)
    _do_run(s, out_dir or Path(s.BACKUP_DIR), tool or s.BACKUP_TOOL, keep=not no_prune)


@app.command()
def verify(
    out_dir: Dir = None, tool: Tool = None, mongo_url: MongoUrl = None, db: DbName = None, env_file: EnvFile = None
) -> None:
    """Restore the newest archive into the scratch database and compare counts with its manifest."""
    s = _settings(mongo_url, db, env_file)
    if _do_verify(s, out_dir or Path(s.BACKUP_DIR), tool or s.BACKUP_TOOL):
        out.print("[bold green]OK[/]: the newest backup restores with the counts its manifest records")
        return
    out.print("[bold red]FAILED[/]: restored counts or session files differ from the manifest")
    raise typer.Exit(int(Exit.VIOLATIONS))


@app.command("prune")
def prune_cmd(
    out_dir: Dir = None,
    keep_daily: Annotated[int | None, typer.Option("--keep-daily", help="Default BACKUP_KEEP_DAILY.")] = None,
    keep_weekly: Annotated[int | None, typer.Option("--keep-weekly", help="Default BACKUP_KEEP_WEEKLY.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be deleted.")] = False,
    db: DbName = None,
    env_file: EnvFile = None,
) -> None:
    """Apply retention to this script's backups (never the newest, never files it did not make)."""
    s = _settings(None, db, env_file)
    removed = prune(
        out_dir or Path(s.BACKUP_DIR),
        s.MONGO_DB,
        keep_daily=s.BACKUP_KEEP_DAILY if keep_daily is None else keep_daily,
        keep_weekly=s.BACKUP_KEEP_WEEKLY if keep_weekly is None else keep_weekly,
        dry_run=dry_run,
    )
    verb = "would delete" if dry_run else "deleted"
    for name in removed:
        out.print(f"{verb} {name}")
    out.print(f"{len(removed)} backup(s) {verb}")


@app.command("list")
def list_cmd(out_dir: Dir = None, db: DbName = None, env_file: EnvFile = None) -> None:
    """The backups of the database, newest first, with their verify result."""
    s = _settings(None, db, env_file)
    d = out_dir or Path(s.BACKUP_DIR)
    table = Table(title=f"backups of {s.MONGO_DB} in {d}")
    for col in ("archive", "tickets", "messages", "bytes", "session files", "verified"):
        table.add_column(col)
    for path, m in manifests(d, s.MONGO_DB):
        vpath = path.with_name(path.name.replace(".manifest.json", ".verified.json"))
        verified = "no"
        if vpath.is_file():
            verified = "ok" if json.loads(vpath.read_text()).get("ok") else "FAILED"
        c = m["counts"]
        sm = m.get("sessions")
        files = str(sm["file_count"]) if sm else "-"
        table.add_row(
            m["archive"], str(c.get("tickets", 0)), str(c.get("messages", 0)), str(m["bytes"]), files, verified
        )
    out.print(table)


def _chosen(s: OpsSettings, out_dir: Path | None, manifest_file: Path | None, part: str, what: str) -> tuple[Path, Any]:
    """The backup directory and `part` of the manifest a restore command works from: the file
    given, else the newest manifest that has `part` (`what` names it in the refusals)."""
    d = out_dir or Path(s.BACKUP_DIR)
    if manifest_file is not None:
        try:
            chosen = json.loads(manifest_file.read_text())
        except (OSError, ValueError) as exc:
            fail(Exit.FILE, f"cannot read {manifest_file}: {exc}")
        d = manifest_file.parent
    else:
        found = [m for _, m in manifests(d, s.MONGO_DB) if m.get(part)]
        if not found:
            fail(Exit.FILE, f"no backups of {s.MONGO_DB} with {what} in {d}")
        chosen = found[0]
    if not chosen.get(part):
        fail(Exit.FILE, f"that manifest has no {what}")
    return d, chosen[part]


def _refuse_unless_ok(problems: list[str], ok: bool, archive: str) -> None:
    for problem in problems:
        out.print(f"  - {problem}")
    if not ok:
        out.print(f"[bold red]FAILED[/]: {archive} was not restored")
        raise typer.Exit(int(Exit.FILE))


@app.command("restore-sessions")
def restore_sessions_cmd(
    into: Annotated[Path, typer.Option("--into", help="The instances directory (Evolution stopped).")],
    out_dir: Dir = None,
    manifest_file: Annotated[
        Path | None, typer.Option("--manifest", help="A .manifest.json (default: the newest with sessions).")
    ] = None,
    db: DbName = None,
    env_file: EnvFile = None,
) -> None:
    """Put the WhatsApp sessions of a backup back: checked first, previous content archived, nothing deleted."""
    s = _settings(None, db, env_file)
    d, sm = _chosen(s, out_dir, manifest_file, "sessions", "sessions")
    checked, before = sessions.restore(d, sm, into, stamp=_stamp(datetime.now(UTC)))
    if before is not None:
        out.print(f"previous content of {into} kept in {d / before}")
    _refuse_unless_ok(checked.problems, checked.ok, sm["archive"])
    out.print(f"[bold green]OK[/]: {checked.files} session files from {sm['archive']} restored into {into}")


@app.command("restore-evolution-db")
def restore_evolution_db_cmd(
    into_url: Annotated[
        str | None,
        typer.Option("--into-url", help="Target database (default BACKUP_EVOLUTION_DATABASE_URL).", show_default=False),
    ] = None,
    out_dir: Dir = None,
    manifest_file: Annotated[
        Path | None, typer.Option("--manifest", help="A .manifest.json (default: the newest with a database dump).")
    ] = None,
    db: DbName = None,
    env_file: EnvFile = None,
) -> None:
    """Put Evolution's database back (Baileys credentials): checked first, only into an empty database."""
    s = _settings(None, db, env_file)
    url = into_url or s.BACKUP_EVOLUTION_DATABASE_URL
    if not url:
        fail(Exit.USAGE, "no target: --into-url or BACKUP_EVOLUTION_DATABASE_URL")
    if missing := evolution_db.missing_tools():
        fail(Exit.USAGE, f"{', '.join(missing)} is not installed")
    d, em = _chosen(s, out_dir, manifest_file, "evolution_db", "Evolution's database")
    try:
        result = evolution_db.restore(d, em, url)
    except evolution_db.Refused as exc:
        fail(Exit.USAGE, str(exc))
    except evolution_db.EvolutionDbError as exc:
        fail(Exit.DATABASE, str(exc))
    _refuse_unless_ok(result.problems, result.ok, em["archive"])
    rows = ", ".join(f"{t} {n}" for t, n in sorted(result.counts.items()))
    out.print(f"[bold green]OK[/]: {em['archive']} restored ({rows})")


@app.command("restore-evolution-redis")
def restore_evolution_redis_cmd(
    into_url: Annotated[
        str | None,
        typer.Option("--into-url", help="Target Redis (default BACKUP_EVOLUTION_REDIS_URL).", show_default=False),
    ] = None,
    out_dir: Dir = None,
    manifest_file: Annotated[
        Path | None, typer.Option("--manifest", help="A .manifest.json (default: the newest with Redis keys).")
    ] = None,
    db: DbName = None,
    env_file: EnvFile = None,
) -> None:
    """Put the Baileys signal keys back into Evolution's Redis: checked first, existing keys untouched."""
    s = _settings(None, db, env_file)
    url = into_url or s.BACKUP_EVOLUTION_REDIS_URL
    if not url:
        fail(Exit.USAGE, "no target: --into-url or BACKUP_EVOLUTION_REDIS_URL")
    d, rm = _chosen(s, out_dir, manifest_file, "evolution_redis", "Evolution's Redis keys")
    try:
        result = evolution_redis.restore(d, rm, url)
    except redis_errors.RedisError as exc:
        fail(Exit.DATABASE, f"Evolution's Redis: {exc}")
    _refuse_unless_ok(result.problems, result.ok, rm["archive"])
    for key in result.kept:
        out.print(f"  kept as it is (already there): {key}")
    out.print(f"[bold green]OK[/]: {result.keys} keys restored from {rm['archive']}, {len(result.kept)} already there")


HEALTH_GRACE_SECONDS = 3600  # a cycle's own run and verify, on top of two intervals


@app.command()
def health(
    max_age: Annotated[
        int | None,
        typer.Option("--max-age", help="Seconds; default two BACKUP_INTERVAL_SECONDS plus an hour."),
    ] = None,
    out_dir: Dir = None,
    db: DbName = None,
    env_file: EnvFile = None,
) -> None:
    """Exit 0 when the newest backup that verified OK is younger than --max-age, else 1 saying
    why: the compose backup service's healthcheck, so a schedule whose cycles keep failing (its
    log says so and it goes on) shows as unhealthy in `docker compose ps` instead of passing for
    weeks. Reads only the backup directory; no database."""
    s = _settings(None, db, env_file)
    d = out_dir or Path(s.BACKUP_DIR)
    limit = max_age if max_age is not None else 2 * s.BACKUP_INTERVAL_SECONDS + HEALTH_GRACE_SECONDS
    newest: datetime | None = None
    for path, _m in manifests(d, s.MONGO_DB):
        vpath = path.with_name(path.name.replace(".manifest.json", ".verified.json"))
        try:
            record = json.loads(vpath.read_text())
        except (OSError, ValueError):
            continue
        if record.get("ok") and isinstance(record.get("at"), str):
            at = datetime.fromisoformat(record["at"])
            newest = at if newest is None or at > newest else newest
    if newest is None:
        out.print(f"[bold red]UNHEALTHY[/]: no backup of {s.MONGO_DB} in {d} has verified OK")
        raise typer.Exit(int(Exit.VIOLATIONS))
    age = (datetime.now(UTC) - newest).total_seconds()
    if age > limit:
        out.print(f"[bold red]UNHEALTHY[/]: the newest verified backup is {int(age)}s old (limit {limit}s)")
        raise typer.Exit(int(Exit.VIOLATIONS))
    out.print(f"ok: the newest verified backup is {int(age)}s old")


@app.command()
def schedule(
    interval: Annotated[int | None, typer.Option("--interval", help="Seconds between backups.")] = None,
    once: Annotated[bool, typer.Option("--once", help="One cycle, then exit (for cron and tests).")] = False,
    env_file: EnvFile = None,
) -> None:
    """run + verify + prune forever, every BACKUP_INTERVAL_SECONDS (the compose backup service)."""
    s = _settings(None, None, env_file)
    every = interval or s.BACKUP_INTERVAL_SECONDS
    while True:
        started = time.monotonic()
        try:
            _do_run(s, Path(s.BACKUP_DIR), s.BACKUP_TOOL, keep=True)
            ok = _do_verify(s, Path(s.BACKUP_DIR), s.BACKUP_TOOL)
            out.print(f"cycle done: verify {'ok' if ok else 'FAILED'}")
        except SystemExit as exc:  # one failed cycle must not stop the schedule
            if once:
                raise
            console.print(f"backup cycle failed (exit {exc.code}); next try in {every}s")
            ok = True
        if once:
            if not ok:
                raise typer.Exit(int(Exit.VIOLATIONS))
            return
        time.sleep(max(every - (time.monotonic() - started), 1))


if __name__ == "__main__":
    app()
