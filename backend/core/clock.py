from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

from backend.core.errors import Unprocessable

# What `utcnow` reads: the system clock, unless a test replaced it (`override`).
_source: Callable[[], datetime] | None = None


def utcnow() -> datetime:
    """Millisecond precision, because that is what BSON dates keep."""
    now = _source() if _source is not None else datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@contextmanager
def override(source: Callable[[], datetime]) -> Iterator[None]:
    """Every `utcnow` in this process reads `source` meanwhile (a test's scripted clock)."""
    global _source
    previous, _source = _source, source
    try:
        yield
    finally:
        _source = previous


def check_days(first: date, last: date, *, max_days: int) -> None:
    """A period of days `first`..`last`, both inclusive, that a report or an export may cover."""
    if last < first:
        raise Unprocessable("`to` is before `from`")
    if (last - first).days + 1 > max_days:
        raise Unprocessable(f"a period of at most {max_days} days")


def as_utc(value: datetime) -> datetime:
    """PyMongo returns naive UTC datetimes; make them aware."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def json_default(value: Any) -> Any:
    """`json.dumps`' default for documents as the store returns them: dates and times as ISO text."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
