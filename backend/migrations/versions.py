"""The migrations, in version order. Append only: a shipped migration is never edited or removed
(its version is recorded in the databases it ran on)."""

from backend.migrations.model import Migration, nothing

MIGRATIONS: list[Migration] = [
    # Marks the schema the first release shipped with, so every later migration has a predecessor
    # recorded and the ledger can say which schema each start ran on.
    Migration(1, "baseline", apply=nothing),
]
