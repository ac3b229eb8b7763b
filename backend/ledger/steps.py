"""The persistence start-up sequence, registered in this order (backend/app.py imports this
module before it registers its own steps, so these run first):

1. production-store  ENV=production only: refuse a dev store / a non-replica-set server before
                     anything is written to it.
2. ledger-guard      compare counts with the ledger; refuse BEFORE any write, so an empty or
                     swapped database gets no indexes, no migration marks and no seeded admin that
                     would make it look alive.
3. migrations        versioned, under the database lock; additive only.
4. ledger-record     judge again and write this start down (database + file), with the schema
                     version it ran on.
then app.py's own steps: indexes (built on the migrated shape), first-admin.

Recording before indexes and first-admin is safe: a ledger entry is a lower bound of what
existed, and those steps only add.
"""

from backend.core import startup
from backend.core.config import Settings
from backend.core.db import Database
from backend.ledger import guard
from backend.migrations import runner, versions
from backend.production import store


@startup.register("production-store")
async def _production_store(db: Database, settings: Settings) -> None:
    await store.check(db, settings)


# The guard step's evaluation, handed to the record step of the same start (same client and
# database) so that a start counts its collections once when nobody recorded in between.
_evaluated: dict[tuple[int, str], guard.Evaluation] = {}


def _key(db: Database) -> tuple[int, str]:
    return (id(db.client), db.name)


@startup.register("ledger-guard")
async def _ledger_guard(db: Database, settings: Settings) -> None:
    _evaluated[_key(db)] = await guard.check(db, settings)


@startup.register("migrations")
async def _migrations(db: Database, settings: Settings) -> None:
    await runner.run(
        db,
        versions.MIGRATIONS,
        lease_seconds=settings.MIGRATION_LEASE_SECONDS,
        wait_seconds=settings.MIGRATION_WAIT_SECONDS,
    )


@startup.register("ledger-record")
async def _ledger_record(db: Database, settings: Settings) -> None:
    earlier = _evaluated.pop(_key(db), None)
    await guard.check_and_record(db, settings, schema_version=await runner.schema_version(db), earlier=earlier)
