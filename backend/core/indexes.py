"""Index declarations, kept next to the queries that need them and created at start-up.

FerretDB v1 on SQLite only pushes `_id` equality down, so these matter for MongoDB (the production
store); their unique ones, though, are enforced on both stores and arbitrate races.
"""

import importlib
from dataclasses import dataclass, field

from pymongo import ASCENDING, DESCENDING, IndexModel

from backend.core.db import Database

ASC = ASCENDING
DESC = DESCENDING


@dataclass(frozen=True)
class IndexSpec:
    collection: str
    keys: tuple[tuple[str, int], ...]
    name: str
    unique: bool = False
    purpose: str = field(default="", compare=False)


# Every module that declares indexes (tests/core/test_runtime.py checks none is missing), imported by
# `declared()`: every entry point gets the whole list, not what it happened to import. Filled once
# by these imports, the registry never changes afterwards.
_DOMAINS = (
    "audit",
    "connections",
    "departments",
    "media",
    "exports",
    "messages",
    "quick_replies",
    "scheduled",
    "tags",
    "tickets",
    "unread",
    "users",
    "webhooks",
)
DECLARED_IN = tuple(f"backend.{domain}.repository" for domain in _DOMAINS)
_REGISTRY: list[IndexSpec] = []


def declare(
    collection: str, keys: list[tuple[str, int]], *, name: str, unique: bool = False, purpose: str = ""
) -> IndexSpec:
    spec = IndexSpec(collection, tuple(keys), name, unique, purpose)
    if spec not in _REGISTRY:
        _REGISTRY.append(spec)
    return spec


def declared() -> list[IndexSpec]:
    for module in DECLARED_IN:
        importlib.import_module(module)
    return list(_REGISTRY)


async def ensure_indexes(db: Database) -> None:
    """Idempotent: create_indexes with identical specs is a no-op on both stores."""
    for spec in declared():
        # One index per command: FerretDB v1.24.2 panics (connection closed) on a createIndexes
        # listing several indexes that all exist already, i.e. on every restart after the first.
        await db[spec.collection].create_indexes([IndexModel(list(spec.keys), name=spec.name, unique=spec.unique)])
