import time

import pytest

from backend.auth import throttle


class ThrottleClock:
    """What the login throttle reads as `time.time()`: a test sets `now` to move it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def throttle_clock(monkeypatch: pytest.MonkeyPatch) -> ThrottleClock:
    """Every attempt of a test in one window of the throttle's fixed windows: a test whose run
    crossed a window's end (every LOGIN_WINDOW_SECONDS of the real clock) saw its counts reset
    midway, and an expected 429 came back 401."""
    clock = ThrottleClock(time.time())
    monkeypatch.setattr(throttle, "time", clock)
    return clock
