"""The migrations, in version order. Append only: a shipped migration is never edited or removed
(its version is recorded in the databases it ran on)."""

from backend.migrations import phone_keys
from backend.migrations.model import Migration, nothing

MIGRATIONS: list[Migration] = [
    # Marks the schema the first release shipped with, so every later migration has a predecessor
    # recorded and the ledger can say which schema each start ran on.
    Migration(1, "baseline", apply=nothing),
    # A client's phone key in the form every number of its WhatsApp account shares (a Brazilian
    # mobile with its ninth digit, ...): claimed for clients stored before, bound to the client
    # its old key names (backend/migrations/phone_keys.py).
    Migration(2, "client phone keys in canonical form", apply=phone_keys.apply),
]
