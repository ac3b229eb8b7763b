"""The start-up guard: count, compare with the ledger, refuse or record.

Order inside `evaluate` is what makes it race-safe without a lock: the ledger is read BEFORE the
collections are counted. Every entry read was written after its own counts were taken, hence
before ours; since nothing is ever deleted, our counts can only be equal or larger — so a start
racing with another never sees a false shrink, and a real loss is never hidden.
"""

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from backend.core.clock import utcnow
from backend.core.conditional import collection_size
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.logging import get_logger
from backend.ledger import model, store

log = get_logger("ledger")


class LedgerRefusal(RuntimeError):
    """The database holds less than a recorded start saw: this instance must not serve."""


@dataclass(frozen=True)
class Evaluation:
    verdict: model.Verdict
    outcome: str  # model.OK, model.OVERRIDE or model.REFUSED
    where: str
    identity: str | None  # this database's, None before its first recorded start
    server: str
    foreign: Mapping[str, Any] | None = None  # the file's newest entry, when about another database
    seen: frozenset[str] = frozenset()  # ids of the accepted entries this evaluation read

    def message(self, settings: Settings) -> str:
        here = model.describe_database(settings.MONGO_DB, self.server, self.identity)
        return model.refusal_message(
            self.verdict, db_name=settings.MONGO_DB, where=self.where, foreign=self.foreign, here=here
        )


async def count(db: Database, baseline: Mapping[str, int] | None = None) -> dict[str, int]:
    """Counts from the store's bookkeeping, without reading documents (conditional.collection_size).
    Such a count can lag the truth, so a collection that looks smaller than the baseline is
    counted exactly before anyone is refused: only a suspected loss costs a scan."""
    counts = {name: await collection_size(db, name) for name in model.GUARDED}
    for name, recorded in (baseline or {}).items():
        if name in counts and counts[name] < recorded:
            counts[name] = await db[name].count_documents({})
    return counts


async def evaluate(db: Database, settings: Settings, *, earlier: Evaluation | None = None) -> Evaluation:
    """`earlier`: this start's evaluation by the guard step. Its counts are reused when the ledger
    still holds exactly the entries it read (and the identity is the same): they were taken after
    reading those entries, so they are still at least every count those entries recorded, and a
    start counts once instead of twice."""
    from_db = await store.read_db(db)
    # The file before the identity: an instance that wrote the file's newest entry had already
    # stored the identity it names, so we can never see that entry without its identity.
    from_file = store.read_file(settings.ledger_file)
    identity = await store.read_identity(db)
    server = store.server_of(settings.mongo_url)
    bound = from_file[0] if from_file else None
    foreign = bound if model.guards_another_database(bound, identity=identity, db_name=settings.MONGO_DB) else None
    mine = [e for e in from_file if model.same_database(e, identity=identity, db_name=settings.MONGO_DB)]
    where = "database" + (f" + file {settings.ledger_file}" if settings.ledger_file else "")
    base = model.baseline([*from_db, *mine[: store.RECENT]])
    seen = frozenset(str(e["_id"]) for e in [*from_db, *from_file])
    if earlier is not None and earlier.seen == seen and earlier.identity == identity:
        counts = earlier.verdict.counts
    else:
        counts = await count(db, base.counts)
    verdict = model.judge(base, counts)
    if verdict.ok and foreign is None:
        outcome = model.OK
    elif model.override_applies(
        verdict,
        baseline_id=settings.LEDGER_OVERRIDE_BASELINE,
        reason=settings.LEDGER_OVERRIDE_REASON,
        foreign=foreign,
    ):
        outcome = model.OVERRIDE
    else:
        outcome = model.REFUSED
    return Evaluation(verdict, outcome, where, identity, server, foreign, seen)


async def record(db: Database, settings: Settings, ev: Evaluation, *, schema_version: int | None) -> dict[str, Any]:
    override = None
    if ev.outcome == model.OVERRIDE:
        override = {"baseline": settings.LEDGER_OVERRIDE_BASELINE, "reason": settings.LEDGER_OVERRIDE_REASON}
    at = utcnow()
    entry = {
        "_id": store.new_entry_id(at),
        "db": settings.MONGO_DB,
        "server": ev.server,
        "identity": ev.identity,
        "at": at,
        "version": settings.APP_VERSION,
        "host": os.uname().nodename,
        "pid": os.getpid(),
        "counts": ev.verdict.counts,
        "outcome": ev.outcome,
        "shrinks": [asdict(s) for s in ev.verdict.shrinks],
        "override": override,
        "schema_version": schema_version,
    }
    # The file first: if the database is the thing that is wrong, the file still tells the story.
    if settings.ledger_file:
        store.append_file(settings.ledger_file, entry)
    await store.append_db(db, entry)
    return entry


def _log_shrinks(ev: model.Verdict, settings: Settings, *, level: str) -> None:
    fields = {s.collection: f"{s.recorded} -> {s.now}" for s in ev.shrinks}
    getattr(log, level)(
        "deploy ledger: collections shrank",
        db=settings.MONGO_DB,
        baseline=ev.baseline.latest_id,
        empty_database=ev.empty_database,
        **fields,
    )


async def check(db: Database, settings: Settings) -> Evaluation:
    """Start-up step before anything writes: refuse (recording the refusal) or let start-up go on."""
    ev = await evaluate(db, settings)
    if ev.outcome == model.REFUSED:
        message = ev.message(settings)
        log.error(message)
        _log_shrinks(ev.verdict, settings, level="error")
        try:
            await record(db, settings, ev, schema_version=None)
        except Exception as exc:  # the refusal stands even if it cannot be written down
            log.error("deploy ledger: could not record the refusal", error=str(exc))
        raise LedgerRefusal(message)
    if ev.outcome == model.OVERRIDE:
        _log_shrinks(ev.verdict, settings, level="warning")
        log.warning(
            "deploy ledger: OVERRIDE accepted by the operator",
            baseline=settings.LEDGER_OVERRIDE_BASELINE,
            reason=settings.LEDGER_OVERRIDE_REASON,
            replaces=ev.foreign["_id"] if ev.foreign is not None else None,
        )
    if settings.ENV != "test" and not settings.ledger_file:
        log.warning("deploy ledger: LEDGER_FILE is empty; an emptied or swapped database would go unnoticed")
    if ev.outcome == model.OK and (settings.LEDGER_OVERRIDE_REASON or settings.LEDGER_OVERRIDE_BASELINE):
        log.warning("deploy ledger: LEDGER_OVERRIDE_* is set but nothing needs overriding; remove it")
    return ev


async def check_and_record(
    db: Database, settings: Settings, *, schema_version: int | None, earlier: Evaluation | None = None
) -> dict[str, Any]:
    """Start-up step after migrations: judge again (other instances may have recorded meanwhile)
    and write this start down, with the database's identity (created now if this is its first
    recorded start). Raises like `check` if the data shrank in between."""
    await store.ensure_identity(db)
    ev = await evaluate(db, settings, earlier=earlier)
    if ev.outcome == model.REFUSED:
        message = ev.message(settings)
        log.error(message)
        _log_shrinks(ev.verdict, settings, level="error")
        await record(db, settings, ev, schema_version=schema_version)
        raise LedgerRefusal(message)
    entry = await record(db, settings, ev, schema_version=schema_version)
    log.info("deploy ledger: start recorded", entry=entry["_id"], outcome=ev.outcome, **ev.verdict.counts)
    return entry
