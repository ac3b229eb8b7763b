"""Holding one call of a backend function in-process, to let a competitor in between two writes
deterministically (a slow request, never a failing one): the fault suites' `holds` fixture. A
module uses it by importing `holds` and naming it in its `__all__` (pytest finds fixtures by name)."""

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest


@dataclass
class Hold:
    """A function of the backend held in-process: `entered` once a call matching it arrived, which
    waits there until `go` is set."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    go: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def holds(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Callable[..., Hold]]:
    """`hold(module, name, when)`: the next call of `module.name` for which `when(*args, **kwargs)`
    is true waits until its Hold's `go`; every other call runs at once. Every hold is let go after
    the test (never a hung request)."""
    made: list[Hold] = []

    def hold(module: ModuleType, name: str, when: Callable[..., bool]) -> Hold:
        held, real = Hold(), getattr(module, name)

        async def waiting(*args: Any, **kwargs: Any) -> Any:
            if not held.entered.is_set() and when(*args, **kwargs):
                held.entered.set()
                await held.go.wait()
            return await real(*args, **kwargs)

        monkeypatch.setattr(module, name, waiting)
        made.append(held)
        return held

    yield hold
    for held in made:
        held.go.set()
