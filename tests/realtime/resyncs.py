"""A feed sink for tests that notes when each tenant's screens were told to resync."""

import time
from typing import Any


class Resyncs:
    """Registered with `feed.register_sink(db, ...)`: every resync this process sends, and when
    (time.monotonic)."""

    def __init__(self) -> None:
        self.told: list[tuple[str, float]] = []

    def announce(self, record: dict[str, Any]) -> None:
        pass

    def access_changed(self, reseller_id: str, user_id: str | None) -> None:
        pass

    def resync(self, reseller_id: str) -> None:
        self.told.append((reseller_id, time.monotonic()))

    def of(self, tenant: str) -> list[float]:
        return [at for who, at in self.told if who == tenant]
