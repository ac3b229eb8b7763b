"""A scripted clock for the reports tests: every `utcnow` in the process reads it."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from backend.core import clock


@dataclass
class ScriptedClock:
    now: datetime

    def at(self, when: datetime) -> None:
        self.now = when

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@contextmanager
def scripted(start: datetime) -> Iterator[ScriptedClock]:
    fake = ScriptedClock(start)
    with clock.override(lambda: fake.now):
        yield fake
