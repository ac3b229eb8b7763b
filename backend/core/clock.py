from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from backend.core.errors import Unprocessable

# How far apart two backends' clocks may be (NTP keeps them within milliseconds): a time one
# process stamped, read against another host's clock (a ticket move's age, a queued reply's).
CLOCK_SKEW_SECONDS = 2.0

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


def day_start(day: date, tz: tzinfo) -> datetime:
    """The first instant of the calendar `day` as the wall clock in `tz` counts days, in UTC: the
    one conversion of a picked day into a time (the exports' periods, the inbox's day filter), so a
    day means the company's day whatever zone the caller's machine is in. Where a clock change skips
    midnight, the day starts at its first existing minute (zoneinfo maps a skipped time with fold=0
    by the offset before the change). 422 for a day at the calendar's edge Python cannot place."""
    try:
        return datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)
    except OverflowError:
        raise Unprocessable("dates out of range") from None


def day_end(day: date, tz: tzinfo) -> datetime:
    """The first instant after the calendar `day` in `tz` (the next day's start), in UTC: the
    exclusive end of a period whose last day, inclusive, is `day`; 23 or 25 hours after its start
    on a day the clocks change."""
    try:
        following = day + timedelta(days=1)
    except OverflowError:
        raise Unprocessable("dates out of range") from None
    return day_start(following, tz)


def as_utc(value: datetime) -> datetime:
    """PyMongo returns naive UTC datetimes; make them aware."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def json_default(value: Any) -> Any:
    """`json.dumps`' default for documents as the store returns them: dates and times as ISO text."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
