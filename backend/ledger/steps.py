"""The persistence start-up sequence, in this order (`STEPS`; backend/gates.py runs them first):

1. production-store  ENV=production only: refuse a dev store / a non-replica-set server before
                     anything is written to it.
2. ledger-guard      compare counts with the ledger; refuse BEFORE any write, so an empty or
                     swapped database gets no indexes, no migration marks and no seeded admin that
                     would make it look alive.
3. migrations        versioned, under the database lock; additive only.
4. ledger-record     judge again and write this start down (database + file), with the schema
                     version it ran on.
then the gate's indexes (built on the migrated shape) and the API's first-admin.

Recording before indexes and first-admin is safe: a ledger entry is a lower bound of what
existed, and those steps only add.
"""

from backend.core.config import Settings
from backend.core.db import Database
from backend.core.runtime import runtime_of
from backend.core.startup import Step
from backend.ledger import guard
from backend.migrations import runner, versions
from backend.production import store


async def _ledger_guard(db: Database, settings: Settings) -> None:
    # Handed to the record step of the same start (same client and database), so that a start
    # counts its collections once when nobody recorded in between.
    runtime_of(db).ledger_evaluations[db.name] = await guard.check(db, settings)


async def _migrations(db: Database, settings: Settings) -> None:
    await runner.run(
        db,
        versions.MIGRATIONS,
        lease_seconds=settings.MIGRATION_LEASE_SECONDS,
        wait_seconds=settings.MIGRATION_WAIT_SECONDS,
    )


async def _ledger_record(db: Database, settings: Settings) -> None:
    earlier = runtime_of(db).ledger_evaluations.pop(db.name, None)
    await guard.check_and_record(db, settings, schema_version=await runner.schema_version(db), earlier=earlier)


STEPS: tuple[Step, ...] = (
    ("production-store", store.check),
    ("ledger-guard", _ledger_guard),
    ("migrations", _migrations),
    ("ledger-record", _ledger_record),
)
