"""`python -m scripts.restore ARCHIVE --into NAME`: restore a backup into a named database.

Insert-only: a document whose `_id` already exists in the target is kept, never replaced, and
nothing is dropped — except the one documented exception below. Restoring into the live database
(MONGO_DB) needs --over-live and first takes a fresh backup of it.

The only destructive call in the project lives here: drop_scratch_database(), which drops a
scratch database `backup verify` restores into ("<BACKUP_VERIFY_DB>_0" … "_3", the base name
defaulting to "<MONGO_DB>_verify", or an older version's leftover; OpsSettings.is_scratch) and
refuses every other name.
"""

import contextlib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient, IndexModel
from pymongo.errors import BulkWriteError, CollectionInvalid

from backend.core.db import Database
from scripts import archive, dumptools
from scripts.common import Exit, OpsSettings, connect, console, database, fail, load_settings, out, run
from scripts.common import user_collections as _user_collections

BATCH = 1000
DUPLICATE_KEY = 11000

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@dataclass
class Restored:
    inserted: dict[str, int] = field(default_factory=dict)
    kept_existing: dict[str, int] = field(default_factory=dict)
    tool: str = "python"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def check_checksum(path: Path) -> None:
    """Refuses an archive whose .sha256 is missing or different: a damaged backup must not be
    restored as if it were whole."""
    side = path.with_name(path.name + ".sha256")
    try:
        expected = side.read_text().split()[0]
    except (OSError, IndexError):
        fail(Exit.FILE, f"checksum file {side} is missing or empty")
    actual = sha256_of(path)
    if actual != expected:
        fail(Exit.FILE, f"{path.name}: sha256 {actual} does not match {side.name} ({expected})")


def source_database(path: Path) -> str:
    with archive.open_gzip(str(path), "rb") as fh:
        prelude = next(archive.read(fh))
    assert isinstance(prelude, archive.Prelude)
    names = {c.db for c in prelude.collections}
    if len(names) != 1:
        fail(Exit.FILE, f"{path.name} holds {len(names)} databases; expected exactly one")
    return names.pop()


def _index_models(meta: archive.CollectionMeta) -> list[IndexModel]:
    models = []
    for spec in meta.indexes:
        if spec.get("name") == "_id_":
            continue
        options = {k: v for k, v in spec.items() if k not in ("v", "key", "name", "ns")}
        models.append(IndexModel(list(spec["key"].items()), name=spec["name"], **options))
    return models


async def _insert(db: Database, collection: str, docs: list[RawBSONDocument], result: Restored) -> None:
    if not docs:
        return
    try:
        # Raw documents carry their own _id, so the driver reports no inserted_ids for them.
        await db[collection].insert_many(docs, ordered=False)
        inserted = len(docs)
        kept = 0
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        kept = len(errors)
        inserted = len(docs) - kept
    result.inserted[collection] = result.inserted.get(collection, 0) + inserted
    result.kept_existing[collection] = result.kept_existing.get(collection, 0) + kept
    docs.clear()


async def _finish_collection(db: Database, meta: archive.CollectionMeta | None, name: str) -> None:
    if name not in await db.list_collection_names(filter={"name": name}):
        with contextlib.suppress(CollectionInvalid):  # created meanwhile by another restorer
            await db.create_collection(name)
    for model in _index_models(meta) if meta else []:
        await db[name].create_indexes([model])


async def python_restore(db: Database, path: Path) -> Restored:
    """Streams the archive into `db`: batches of raw BSON, insert-only, then the indexes."""
    result = Restored(tool="python")
    metas: dict[str, archive.CollectionMeta] = {}
    batches: dict[str, list[RawBSONDocument]] = {}
    with archive.open_gzip(str(path), "rb") as fh:
        for event in archive.read(fh):
            if isinstance(event, archive.Prelude):
                metas = {c.collection: c for c in event.collections}
            elif isinstance(event, archive.Document):
                batch = batches.setdefault(event.collection, [])
                batch.append(RawBSONDocument(event.raw))
                if len(batch) >= BATCH:
                    await _insert(db, event.collection, batch, result)
            else:
                await _insert(db, event.collection, batches.pop(event.collection, []), result)
                result.inserted.setdefault(event.collection, 0)
                await _finish_collection(db, metas.get(event.collection), event.collection)
    return result


async def restore_archive(
    client: AsyncMongoClient[dict[str, Any]], settings: OpsSettings, path: Path, target: str, *, tool: str
) -> Restored:
    source = source_database(path)
    if dumptools.use_real_tools(tool):
        dumptools.mongorestore(settings.mongo_url, path, source_db=source, target_db=target)
        return Restored(tool=dumptools.version("mongorestore"))
    return await python_restore(database(client, target), path)


async def database_counts(db: Database) -> dict[str, int]:
    return {name: await db[name].count_documents({}) for name in await _user_collections(db)}


async def drop_scratch_database(client: AsyncMongoClient[dict[str, Any]], settings: OpsSettings, name: str) -> None:
    """THE documented destructive exception: drops a backup-verify scratch database, nothing else."""
    if not settings.is_scratch(name) or name == settings.MONGO_DB or name in ("admin", "local", "config"):
        fail(Exit.USAGE, f"refusing to drop {name!r}: only a verify scratch database ({settings.verify_db}_…) may be")
    await client.drop_database(name)


def _print_counts(counts_archive: dict[str, int], counts_target: dict[str, int], restored: Restored) -> bool:
    ok = True
    for name in sorted(counts_archive):
        a, t = counts_archive[name], counts_target.get(name, 0)
        new, kept = restored.inserted.get(name), restored.kept_existing.get(name, 0)
        mark = "ok" if t >= a else "MISSING"
        ok = ok and t >= a
        detail = f" ({new} inserted, {kept} already there)" if new is not None else ""
        out.print(f"  {name}: archive {a}, database {t}{detail} {mark}")
    return ok


@app.command()
def main(
    archive_path: Annotated[Path, typer.Argument(metavar="ARCHIVE", help="A .archive.gz written by scripts.backup.")],
    into: Annotated[str, typer.Option("--into", help="Database to restore into (created when absent).")],
    over_live: Annotated[
        bool, typer.Option("--over-live", help="Allow --into to be the live MONGO_DB (a fresh backup is taken first).")
    ] = False,
    merge: Annotated[
        bool, typer.Option("--merge", help="Allow a non-empty target; existing documents are kept, not replaced.")
    ] = False,
    tool: Annotated[str | None, typer.Option("--tool", help="auto | mongo-tools | python.")] = None,
    mongo_url: Annotated[str | None, typer.Option("--mongo-url", help="Overrides MONGO_URL.")] = None,
    db: Annotated[str | None, typer.Option("--db", help="The live database name; overrides MONGO_DB.")] = None,
    env_file: Annotated[Path | None, typer.Option("--env-file", help="Settings file (default ./.env).")] = None,
) -> None:
    """Restore a backup archive into a named database, insert-only. Exit 0 when every archived
    document is in the target; 1 when some are missing; 2 when refused; 3 database; 4 file."""
    settings = load_settings(mongo_url, db, env_file)
    chosen = tool or settings.BACKUP_TOOL
    if not archive_path.is_file():
        fail(Exit.FILE, f"archive {archive_path} not found")
    if into == settings.MONGO_DB and not over_live:
        fail(Exit.USAGE, f"{into!r} is the live database (MONGO_DB); restoring over it needs --over-live")
    if settings.is_scratch(into):
        fail(Exit.USAGE, f"{into!r} is a backup-verify scratch database's name; pick another name")
    check_checksum(archive_path)
    counts_archive = archive.count_documents(str(archive_path))

    async def body() -> bool:
        client = connect(settings)
        try:
            target = database(client, into)
            existing = await database_counts(target)
            if into == settings.MONGO_DB:
                from scripts.backup import make_backup  # restore <-> backup: imported where needed

                manifest = await make_backup(client, settings, Path(settings.BACKUP_DIR), tool=chosen)
                out.print(f"fresh backup of the live database first: {manifest['archive']}")
            elif any(existing.values()) and not merge:
                fail(Exit.USAGE, f"database {into!r} is not empty; use --merge to add only missing documents")
            console.print(f"restoring {archive_path.name} into {into} ...")
            restored = await restore_archive(client, settings, archive_path, into, tool=chosen)
            counts_target = await database_counts(target)
            out.print(f"restored {archive_path.name} into {into} with {restored.tool}")
            return _print_counts(counts_archive, counts_target, restored)
        finally:
            await client.close()

    try:
        ok = run(body())
    except archive.ArchiveError as exc:
        fail(Exit.FILE, f"{archive_path.name}: {exc}")
    if not ok:
        raise typer.Exit(int(Exit.VIOLATIONS))


if __name__ == "__main__":
    app()
