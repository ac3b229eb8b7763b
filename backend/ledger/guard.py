"""The start-up guard: count, compare with the ledger, refuse or record.

Order inside `evaluate` is what makes it race-safe without a lock: the ledger is read BEFORE the
collections are counted. Every entry read was written after its own counts were taken, hence
before ours; since nothing is ever deleted, our counts can only be equal or larger — so a start
racing with another never sees a false shrink, and a real loss is never hidden.
"""

from dataclasses import asdict, dataclass
from typing import Any

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


async def count(db: Database) -> dict[str, int]:
    return {name: await db[name].count_documents({}) for name in model.GUARDED}


async def evaluate(db: Database, settings: Settings) -> Evaluation:
    from_db = await store.read_db(db)
    from_file = store.read_file(settings.ledger_file, settings.MONGO_DB)
    where = "database" + (f" + file {settings.ledger_file}" if settings.ledger_file else "")
    verdict = model.judge(model.baseline([*from_db, *from_file]), await count(db))
    if verdict.ok:
        return Evaluation(verdict, model.OK, where)
    if model.override_applies(
        verdict, baseline_id=settings.LEDGER_OVERRIDE_BASELINE, reason=settings.LEDGER_OVERRIDE_REASON
    ):
        return Evaluation(verdict, model.OVERRIDE, where)
    return Evaluation(verdict, model.REFUSED, where)


async def record(db: Database, settings: Settings, ev: Evaluation, *, schema_version: int | None) -> dict[str, Any]:
    override = None
    if ev.outcome == model.OVERRIDE:
        override = {"baseline": settings.LEDGER_OVERRIDE_BASELINE, "reason": settings.LEDGER_OVERRIDE_REASON}
    entry = store.make_entry(
        db_name=settings.MONGO_DB,
        version=settings.APP_VERSION,
        counts=ev.verdict.counts,
        outcome=ev.outcome,
        shrinks=[asdict(s) for s in ev.verdict.shrinks],
        override=override,
        schema_version=schema_version,
    )
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


async def check(db: Database, settings: Settings) -> None:
    """Start-up step before anything writes: refuse (recording the refusal) or let start-up go on."""
    ev = await evaluate(db, settings)
    if ev.outcome == model.REFUSED:
        message = model.refusal_message(ev.verdict, db_name=settings.MONGO_DB, where=ev.where)
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
        )
    if settings.ENV == "production" and not settings.ledger_file:
        log.warning("deploy ledger: LEDGER_FILE is empty; an emptied or swapped database would go unnoticed")
    if ev.outcome == model.OK and (settings.LEDGER_OVERRIDE_REASON or settings.LEDGER_OVERRIDE_BASELINE):
        log.warning("deploy ledger: LEDGER_OVERRIDE_* is set but nothing needs overriding; remove it")


async def check_and_record(db: Database, settings: Settings, *, schema_version: int | None) -> dict[str, Any]:
    """Start-up step after migrations: judge again (other instances may have recorded meanwhile)
    and write this start down. Raises like `check` if the data shrank in between."""
    ev = await evaluate(db, settings)
    if ev.outcome == model.REFUSED:
        message = model.refusal_message(ev.verdict, db_name=settings.MONGO_DB, where=ev.where)
        log.error(message)
        _log_shrinks(ev.verdict, settings, level="error")
        await record(db, settings, ev, schema_version=schema_version)
        raise LedgerRefusal(message)
    entry = await record(db, settings, ev, schema_version=schema_version)
    log.info("deploy ledger: start recorded", entry=entry["_id"], outcome=ev.outcome, **ev.verdict.counts)
    return entry
