"""Holding one call of a backend function in-process, to let a competitor in between two writes
deterministically (a slow request, never a failing one): the fault suites' `holds` fixture. A
module uses it by importing `holds` and naming it in its `__all__` (pytest finds fixtures by name)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import httpx
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


ARRIVAL = 30.0  # a bound only: a trap's springing or a held call's arrival on a loaded 2-core box


async def arrived(event: asyncio.Event, under_way: "asyncio.Future[Any] | None", what: str) -> None:
    """Waits until `event` (a trap sprang, a held call arrived), or fails naming what the request
    or task `under_way` ended with instead (it may have answered without ever getting there)."""
    waiter: asyncio.Future[Any] = asyncio.ensure_future(event.wait())
    pending: set[asyncio.Future[Any]] = {waiter} if under_way is None else {under_way, waiter}
    with contextlib.suppress(TimeoutError):
        await asyncio.wait(pending, timeout=ARRIVAL, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if not event.is_set():
        raise AssertionError(f"{what} never happened (it ended with: {ended(under_way)})")


def ended(under_way: "asyncio.Future[Any] | None") -> str:
    """What a request or task ended with, for an assertion's message."""
    if under_way is None or not under_way.done():
        return "nothing yet"
    if under_way.cancelled() or under_way.exception() is not None:
        return repr(under_way.exception()) if not under_way.cancelled() else "cancelled"
    answer = under_way.result()
    return f"{answer.status_code} {answer.text}" if isinstance(answer, httpx.Response) else repr(answer)
