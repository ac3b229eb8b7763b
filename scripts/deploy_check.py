"""`python -m scripts.deploy_check snapshot|verify`: prove a deploy touched code, never data.

snapshot: counts per collection, tickets per state, a streamed fingerprint of every ticket's id,
state and version, the database's identity, and a `deploy_ledger` entry naming the snapshot.
verify --against FILE: every count equal or greater, every ticket still there, no finalizado ticket
reopened, and any other ticket that moved explained by `ticket_events` newer than the snapshot.

After a restart the same verify also checks what lives outside the database (scripts/post_restart.py):
every WhatsApp connection the provider reported `open` at the snapshot is `open` again, asked from the
provider, on the same number and without a new QR code; and the backend's /health/ready answers ready
(--backend-url or DEPLOY_CHECK_BACKEND_URL). Stored attachments: the snapshot names up to
MEDIA_SAMPLE media records with their sha256; verify reads their bytes back from GridFS and hashes
them again ("Anexo baixa idêntico"); "n/a (sem mídia)" when the snapshot had none. Media counts
(`media`, `media.files`, `media.chunks`) are compared like every other collection.

A ticket is judged as its `ticket_events` say it is: the stored ticket is their projection and can
be a moment behind them (see `_as_logged`).
"""

import json
import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pymongo import AsyncMongoClient
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from backend.audit.repository import event_id
from backend.core.db import Database
from backend.media import service as media
from scripts import fingerprint, post_restart
from scripts.common import (
    Exit,
    OpsSettings,
    connect,
    console,
    database,
    fail,
    load_settings,
    out,
    run,
    user_collections,
)

FORMAT = "iaze-deploy-snapshot/1"
LEDGER = "deploy_checks"
STATES = ("espera", "atendendo", "finalizado")
MAX_LISTED = 200

app = typer.Typer(
    help="Pre/post-deploy data check: snapshot before the deploy, verify after it (see DEPLOY_RULES.md).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

MongoUrl = Annotated[str | None, typer.Option("--mongo-url", help="Overrides MONGO_URL.", show_default=False)]
DbName = Annotated[str | None, typer.Option("--db", help="Overrides MONGO_DB.", show_default=False)]
EnvFile = Annotated[Path | None, typer.Option("--env-file", help="Settings file (default ./.env).")]
BackendUrl = Annotated[
    str | None,
    typer.Option(
        "--backend-url",
        help="Backend whose /health/ready is asked (default DEPLOY_CHECK_BACKEND_URL).",
        show_default=False,
    ),
]
NO_MEDIA = "n/a (sem mídia)"
MEDIA_SAMPLE = 20


def _http(settings: OpsSettings) -> httpx.AsyncClient:
    t = settings.EVOLUTION_TIMEOUT_SECONDS
    return httpx.AsyncClient(timeout=httpx.Timeout(t, connect=min(5.0, t)))


def _evolution(settings: OpsSettings, http: httpx.AsyncClient) -> post_restart.Evolution | None:
    if not settings.EVOLUTION_BASE_URL:
        return None
    return post_restart.Evolution(http, settings.EVOLUTION_BASE_URL, settings.EVOLUTION_API_KEY)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


async def _identity(client: AsyncMongoClient[dict[str, Any]], db: Database) -> dict[str, Any]:
    hello = await client.admin.command("hello")
    build = await client.admin.command("buildInfo")
    return {
        "name": db.name,
        "server_version": build.get("version"),
        "replica_set": hello.get("setName"),
        "hosts": sorted(f"{h}:{p}" for h, p in client.nodes) or None,
    }


async def _counts(db: Database) -> dict[str, int]:
    return {name: await db[name].count_documents({}) for name in await user_collections(db)}


async def take_snapshot(
    client: AsyncMongoClient[dict[str, Any]],
    db: Database,
    out_path: Path,
    *,
    ledger: bool = True,
    settings: OpsSettings | None = None,
    backend_url: str = "",
) -> dict[str, Any]:
    snapshot_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)
    taken_at = datetime.now(UTC)
    counts = await _counts(db)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fp_path = out_path.with_name(out_path.name.removesuffix(".json") + ".tickets.gz")
    writer = fingerprint.Writer(fp_path)
    states: Counter[str] = Counter()
    with _progress() as progress:
        task = progress.add_task("fingerprinting tickets", total=counts.get("tickets", 0))
        async for e in fingerprint.stream_tickets(db):
            writer.add(e)
            states[e.status] += 1
            progress.advance(task)
    digest = writer.close()
    snap: dict[str, Any] = {
        "format": FORMAT,
        "id": snapshot_id,
        "taken_at": taken_at.isoformat(),
        "database": await _identity(client, db),
        "collections": counts,
        "tickets_by_state": {s: states.get(s, 0) for s in sorted(set(STATES) | set(states))},
        "fingerprint": {"file": fp_path.name, "sha256": digest, "tickets": writer.count},
        "ledger": ledger,
        "whatsapp": {"asked": False, "connections": None, "instances": []},
        "backend_ready": None,
        "media": [ref.model_dump() for ref in await media.sample(db, limit=MEDIA_SAMPLE)],
    }
    if settings is not None:
        async with _http(settings) as http:
            snap["whatsapp"] = await post_restart.snapshot_whatsapp(db, _evolution(settings, http))
            if backend_url:
                snap["backend_ready"] = (await post_restart.ready(http, backend_url, 0))[0]
    if ledger:
        # The database itself remembers the snapshot, so verify can tell this database from a
        # swapped, emptied or restored-from-elsewhere one even when the counts look plausible.
        # Counts as a list: collection names such as GridFS's `media.files` are not valid keys
        # of a stored document on FerretDB.
        listed = [{"collection": name, "count": n} for name, n in sorted(counts.items())]
        await db[LEDGER].insert_one(
            {"_id": f"snapshot:{snapshot_id}", "kind": "snapshot", "at": taken_at, "counts": listed, "sha256": digest}
        )
    return snap


def write_snapshot(path: Path, snap: dict[str, Any]) -> None:
    path.write_text(json.dumps(snap, indent=2, sort_keys=True) + "\n")


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    violation_count: int = 0
    collections_after: dict[str, int] = field(default_factory=dict)
    states_after: Counter[str] = field(default_factory=Counter)
    moved_with_events: int = 0
    new_tickets: int = 0
    # The ANTES/APÓS lines of what lives outside the database: (label, before, after, note).
    outside: list[tuple[str, str, str, str]] = field(default_factory=list)
    behind_log: int = 0

    def add(self, message: str) -> None:
        self.violation_count += 1
        if len(self.violations) < MAX_LISTED:
            self.violations.append(message)

    @property
    def ok(self) -> bool:
        return self.violation_count == 0


async def _as_logged(db: Database, live: fingerprint.Entry, report: Report) -> fingerprint.Entry:
    """The ticket as its event log says it is. The stored ticket is a projection of the log that
    writers and the sweep keep up (backend/tickets/projection.py); a moment behind it — a writer
    that died between its event and the ticket, or on FerretDB a concurrent whole-document
    write-back — is no data lost, and must not read as "version went back" or "reopened"."""
    version, last = live.version, None
    while (nxt := await db.ticket_events.find_one({"_id": event_id(live.id, version + 1)}, {"state": 1})) is not None:
        version, last = version + 1, nxt
    if last is None:
        return live
    report.behind_log += 1
    state = last.get("state") or {}
    return fingerprint.Entry(live.id, str(state.get("status")), version, fingerprint.state_hash(state))


async def _explained(db: Database, old: fingerprint.Entry, live: fingerprint.Entry) -> str | None:
    """None when events newer than the snapshot account for the move; else why not."""
    if live.version <= old.version:
        return f"state changed from {old.status} to {live.status} without a new version (no ticket_events entry)"
    last: dict[str, Any] | None = None
    for version in range(old.version + 1, live.version + 1):
        last = await db.ticket_events.find_one({"_id": event_id(old.id, version)}, {"state": 1, "to_status": 1})
        if last is None:
            return f"version {version} has no ticket_events entry (moved {old.status} -> {live.status})"
    assert last is not None
    if fingerprint.state_hash(last.get("state") or {}) != live.state:
        return f"ticket shows {live.status} but its event log at version {live.version} says {last.get('to_status')}"
    return None


async def _compare(db: Database, old: fingerprint.Entry, live: fingerprint.Entry, report: Report) -> None:
    if live.version < old.version:
        report.add(f"ticket {old.id}: version went back from {old.version} to {live.version} (older data restored?)")
        return
    if old.status == "finalizado" and live.status != "finalizado":
        report.add(f"ticket {old.id}: finalizado ticket reopened as {live.status}")
        return
    if live.state == old.state and live.version == old.version:
        return
    why = await _explained(db, old, live)
    if why is None:
        if live.state != old.state:
            report.moved_with_events += 1
    else:
        report.add(f"ticket {old.id}: {why}")


async def verify_against(db: Database, snap: dict[str, Any], snap_dir: Path) -> Report:
    report = Report()
    identity = snap["database"]
    if identity.get("name") != db.name:
        report.add(f"database: snapshot was taken of {identity.get('name')!r}, verifying {db.name!r}")
    if snap.get("ledger", True):
        marker = await db[LEDGER].find_one({"_id": f"snapshot:{snap['id']}"})
        if marker is None:
            report.add(
                f"database identity: no {LEDGER} entry for snapshot {snap['id']} "
                "(a different, emptied or restored database?)"
            )
    report.collections_after = await _counts(db)
    for name, before in sorted(snap["collections"].items()):
        after = report.collections_after.get(name, 0)
        if after < before:
            report.add(f"collection {name}: {before} before, {after} now ({before - after} missing)")
    fp = snap["fingerprint"]
    old_entries = fingerprint.read(snap_dir / fp["file"], fp["sha256"])
    old = next(old_entries, None)
    live_stream = fingerprint.stream_tickets(db)
    live = await anext(live_stream, None)
    with _progress() as progress:
        total = max(fp["tickets"], report.collections_after.get("tickets", 0))
        task = progress.add_task("comparing tickets", total=total)
        while old is not None or live is not None:
            if live is None or (old is not None and old.id < live.id):
                assert old is not None
                report.add(f"ticket {old.id}: missing (was {old.status})")
                old = next(old_entries, None)
            elif old is None or live.id < old.id:
                report.new_tickets += 1
                report.states_after[(await _as_logged(db, live, report)).status] += 1
                live = await anext(live_stream, None)
            else:
                logged = live if live == old else await _as_logged(db, live, report)
                report.states_after[logged.status] += 1
                await _compare(db, old, logged, report)
                old, live = next(old_entries, None), await anext(live_stream, None)
            progress.advance(task)
    return report


def _table(snap: dict[str, Any], report: Report) -> Table:
    table = Table(title="ANTES / APÓS (before / after the deploy)")
    for col, justify in (("", "left"), ("ANTES", "right"), ("APÓS", "right"), ("Δ", "right"), ("", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    before_states: dict[str, int] = snap["tickets_by_state"]
    for state in sorted(set(before_states) | set(report.states_after), key=lambda s: (s not in STATES, s)):
        b, a = before_states.get(state, 0), report.states_after.get(state, 0)
        note = "MANTIDO" if a == b else "mudou por eventos" if report.ok else "ver violações"
        table.add_row(f"Tickets em {state}", str(b), str(a), f"{a - b:+d}", note)
    table.add_section()
    after = report.collections_after
    for name in sorted(set(snap["collections"]) | set(after)):
        b, a = snap["collections"].get(name, 0), after.get(name, 0)
        note = "✅ MANTIDO" if a == b else "✅ MAIOR" if a > b else "❌ MENOR"
        table.add_row(name, str(b), str(a), f"{a - b:+d}", note)
    if report.outside:
        table.add_section()
        for label, was, now, remark in report.outside:
            table.add_row(label, was, now, "", remark)
    return table


async def check_outside(
    db: Database, snap: dict[str, Any], settings: OpsSettings, report: Report, *, backend_url: str, wait: float
) -> None:
    """The post-restart lines: backend readiness, every WhatsApp connection, attachments."""
    async with _http(settings) as http:
        if backend_url:
            ok, said = await post_restart.ready(http, backend_url, wait)
            before = {True: "ready", False: "not ready", None: "—"}[snap.get("backend_ready")]
            report.outside.append(
                ("Backend /health/ready", before, "ready" if ok else "NOT READY", "✅" if ok else "❌")
            )
            if not ok:
                report.add(f"backend {backend_url.rstrip('/')}/health/ready: not ready ({said})")
        else:
            report.outside.append(("Backend /health/ready", "—", "não verificado", "sem --backend-url"))
        await _check_whatsapp(db, snap, settings, http, report, wait)
    await _check_media(db, snap, report)


async def _check_media(db: Database, snap: dict[str, Any], report: Report) -> None:
    """The snapshot's sample of stored media, read back from GridFS and hashed again."""
    sample = [media.MediaRef.model_validate(ref) for ref in snap.get("media") or []]
    if not sample:
        report.outside.append(("Anexo baixa idêntico", NO_MEDIA, NO_MEDIA, "nenhuma mídia no snapshot"))
        return
    checked = await media.check_stored(db, records=sample)
    for problem in checked.problems:
        report.add(problem)
    same = checked.records - len(checked.problems)
    note = "✅ sha256 conferido" if checked.ok else "❌ bytes diferentes ou ausentes"
    report.outside.append(("Anexo baixa idêntico", f"{checked.records} arquivos", f"{same} idênticos", note))


async def _check_whatsapp(
    db: Database, snap: dict[str, Any], settings: OpsSettings, http: httpx.AsyncClient, report: Report, wait: float
) -> None:
    wa = snap.get("whatsapp") or {}
    evo = _evolution(settings, http)
    if not wa.get("asked"):
        known = len(await post_restart.connections(db))
        note = "provedor não consultado no snapshot (EVOLUTION_BASE_URL vazio)" if known else "nenhuma conexão"
        report.outside.append(("Conexões WhatsApp", "não consultado", str(known), note))
        return
    entries: list[dict[str, Any]] = wa.get("instances") or []
    if not entries:
        report.outside.append(("Conexões WhatsApp", "0", "—", "nenhuma conexão no snapshot"))
        return
    was_open = [e for e in entries if e["state"] == post_restart.OPEN]
    if evo is None:
        for e in was_open:
            report.add(f"{post_restart.label(e)}: was open; EVOLUTION_BASE_URL is empty, the provider cannot be asked")
        return
    seen, waited = await post_restart.wait_open(evo, [e["instance"] for e in was_open], wait)
    for e in entries:
        after = seen.get(e["instance"]) or await evo.seen(e["instance"])
        why = post_restart.problem(e, after, waited) if e in was_open else None
        if why is not None:
            report.add(why)
        if e not in was_open:
            note = "não estava open antes"
        elif why is None:
            note = "✅ open, mesmo número, sem novo QR"
        else:
            note = "❌ " + (
                "novo QR" if after.state in ("connecting", "close", "refused") or after.number else after.state
            )
        report.outside.append((post_restart.label(e), e["state"], after.state, note))


@app.command()
def snapshot(
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Snapshot JSON to write (default var/deploy/snapshot-<time>.json).")
    ] = None,
    no_ledger: Annotated[
        bool, typer.Option("--no-ledger", help=f"Do not record the snapshot in {LEDGER} (read-only users).")
    ] = False,
    backend_url: BackendUrl = None,
    mongo_url: MongoUrl = None,
    db: DbName = None,
    env_file: EnvFile = None,
) -> None:
    """Record counts, tickets per state, a ticket fingerprint and every WhatsApp connection's state."""
    settings = load_settings(mongo_url, db, env_file)
    path = out_file or Path("var/deploy") / f"snapshot-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"

    async def body() -> dict[str, Any]:
        client = connect(settings)
        try:
            return await take_snapshot(
                client,
                database(client, settings.MONGO_DB),
                path,
                ledger=not no_ledger,
                settings=settings,
                backend_url=backend_url if backend_url is not None else settings.DEPLOY_CHECK_BACKEND_URL,
            )
        finally:
            await client.close()

    snap = run(body())
    write_snapshot(path, snap)
    out.print(f"snapshot {snap['id']} of {settings.MONGO_DB}: {snap['fingerprint']['tickets']} tickets")
    for state, n in snap["tickets_by_state"].items():
        out.print(f"  Tickets em {state}: {n}")
    for name, n in snap["collections"].items():
        out.print(f"  {name}: {n}")
    wa = snap["whatsapp"]
    if wa["asked"]:
        for e in wa["instances"]:
            out.print(f"  {post_restart.label(e)}: {e['state']}")
        unknown = [e for e in wa["instances"] if e["state"] in ("unreachable", "missing")]
        if unknown:
            # Only connections seen open here are checked after the restart: say what is not covered.
            console.print(
                f"[yellow]warning:[/] the provider gave no state for {len(unknown)} connection(s); "
                "they will not be checked after the restart"
            )
    elif wa["connections"]:
        out.print(
            f"  [yellow]WhatsApp: {wa['connections']} connection(s), provider not asked (EVOLUTION_BASE_URL empty)[/]"
        )
    out.print(f"written {path}")


@app.command()
def verify(
    against: Annotated[Path, typer.Option("--against", help="Snapshot JSON written by `snapshot` before the deploy.")],
    backend_url: BackendUrl = None,
    wait: Annotated[
        float | None,
        typer.Option(
            "--wait",
            help="Seconds a connection that was open (and the backend) may take to be ready again "
            "(default DEPLOY_CHECK_WHATSAPP_WAIT_SECONDS).",
            show_default=False,
        ),
    ] = None,
    mongo_url: MongoUrl = None,
    db: DbName = None,
    env_file: EnvFile = None,
) -> None:
    """Compare the live database, WhatsApp connections and readiness with a snapshot; exit 1 on any problem."""
    settings = load_settings(mongo_url, db, env_file)
    try:
        snap = json.loads(against.read_text())
    except (OSError, ValueError) as exc:
        fail(Exit.FILE, f"cannot read snapshot {against}: {exc}")
    if snap.get("format") != FORMAT:
        fail(Exit.FILE, f"{against} is not a deploy snapshot ({FORMAT})")

    async def body() -> Report:
        client = connect(settings)
        try:
            d = database(client, settings.MONGO_DB)
            report = await verify_against(d, snap, against.parent)
            await check_outside(
                d,
                snap,
                settings,
                report,
                backend_url=backend_url if backend_url is not None else settings.DEPLOY_CHECK_BACKEND_URL,
                wait=settings.DEPLOY_CHECK_WHATSAPP_WAIT_SECONDS if wait is None else wait,
            )
            await d[LEDGER].insert_one(
                {
                    "_id": f"verify:{snap['id']}:{secrets.token_hex(6)}",
                    "kind": "verify",
                    "snapshot": snap["id"],
                    "at": datetime.now(UTC),
                    "ok": report.ok,
                    "violations": report.violation_count,
                }
            )
            return report
        finally:
            await client.close()

    try:
        report = run(body())
    except (ValueError, fingerprint.OutOfOrder) as exc:
        fail(Exit.FILE, str(exc))
    out.print(_table(snap, report))
    out.print(f"{report.new_tickets} new tickets; {report.moved_with_events} moved by events after the snapshot")
    if report.behind_log:
        out.print(
            f"{report.behind_log} ticket(s) stored a moment behind their ticket_events (a write in flight or "
            "a writer that died); read as the log says, which the backend repairs within seconds"
        )
    if report.ok:
        out.print(
            "[bold green]OK[/]: every count equal or greater, no ticket lost, no ticket moved by the deploy, "
            "every WhatsApp connection checked is open again"
        )
        return
    out.print(f"[bold red]FAILED[/]: {report.violation_count} violation(s)")
    for line in report.violations:
        out.print(f"  - {line}")
    if report.violation_count > len(report.violations):
        out.print(f"  ... and {report.violation_count - len(report.violations)} more")
    raise typer.Exit(int(Exit.VIOLATIONS))


if __name__ == "__main__":
    app()
