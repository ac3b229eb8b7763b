"""Several writing processes simulated in one: each has its own copy of backend/core/seqlog.py's
process-local state (the `seqlog_*` maps of the client's runtime, backend/core/runtime.py),
swapped in by `become`. A process never seen before starts with nothing, as a freshly started (or
restarted) one does; a killed process's state is simply never swapped in again."""

from dataclasses import fields
from typing import Any

from backend.core.db import Database
from backend.core.runtime import runtime_of


def _state(db: Database) -> dict[str, dict[Any, Any]]:
    runtime = runtime_of(db)
    return {
        f.name: value
        for f in fields(runtime)
        if f.name.startswith("seqlog_") and isinstance(value := getattr(runtime, f.name), dict)
    }


class SimulatedProcesses:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.saved: dict[str, dict[str, dict[Any, Any]]] = {}
        self.current: str | None = None

    def become(self, name: str) -> None:
        if self.current is not None:
            self.saved[self.current] = {field: dict(value) for field, value in _state(self.db).items()}
        for field, value in _state(self.db).items():
            value.clear()
            value.update(self.saved.get(name, {}).get(field, {}))
        self.current = name

    def kill(self, name: str) -> None:
        """SIGKILL: what the process knew is gone (only what it stored remains)."""
        assert name != self.current
        self.saved.pop(name, None)
