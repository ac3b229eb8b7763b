"""Several writing processes simulated in one: each has its own copy of backend/core/seqlog.py's
process-local state (its module-level dicts), swapped in by `become`. A process never seen
before starts with nothing, as a freshly started (or restarted) one does; a killed process's
state is simply never swapped in again."""

from typing import Any

from backend.core import seqlog


def _state() -> dict[str, dict[Any, Any]]:
    return {
        name: value
        for name, value in vars(seqlog).items()
        if name.startswith("_") and not name.startswith("__") and isinstance(value, dict)
    }


class SimulatedProcesses:
    def __init__(self) -> None:
        self.saved: dict[str, dict[str, dict[Any, Any]]] = {}
        self.current: str | None = None

    def become(self, name: str) -> None:
        if self.current is not None:
            self.saved[self.current] = {field: dict(value) for field, value in _state().items()}
        for field, value in _state().items():
            value.clear()
            value.update(self.saved.get(name, {}).get(field, {}))
        self.current = name

    def kill(self, name: str) -> None:
        """SIGKILL: what the process knew is gone (only what it stored remains)."""
        assert name != self.current
        self.saved.pop(name, None)
