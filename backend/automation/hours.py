"""Business hours: is the company open at an instant, and which closed period is it in.

Open intervals are local: on each day that is not a closed date (`closed_dates`, YYYY-MM-DD in
the reseller's timezone), the `business_hours` ranges of that weekday; a day whose weekday has no
range is closed. A range whose close is at or before its open ends on the next day (a night shift,
or a close at 00:00: midnight); it belongs to the day it opens, so a closed date stops the ranges
that open on it, not one running into it from the evening before. A reseller with no ranges at
all has not set hours: every day that is not a closed date is open all day. Local times become
instants through zoneinfo, so a range follows daylight saving time as the clock on the wall does.

A closed period is the time between the end of one open interval and the start of the next; it
is named by the instant it began (the end of the last open interval), which is what makes "once
per ticket per closed period" a deterministic message id (backend/automation/service.py).
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backend.resellers.models import DEFAULT_TIMEZONE, ResellerConfig

# How far back the start of a closed period is looked for: past a year of closed days, the
# period is named by that horizon (still one name per period, as it never moves).
LOOKBACK_DAYS = 400
NEVER_OPEN = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Schedule:
    zone: ZoneInfo
    ranges: dict[int, list[tuple[time, time]]]  # weekday (0 = Monday) -> local [open, close)
    closed: frozenset[date]
    always: bool  # no ranges set: open all day on every day that is not closed

    @classmethod
    def of(cls, config: ResellerConfig) -> "Schedule":
        try:
            zone = ZoneInfo(config.timezone or DEFAULT_TIMEZONE)
        except (ZoneInfoNotFoundError, ValueError):  # stored before the API validated it
            zone = ZoneInfo(DEFAULT_TIMEZONE)
        ranges: dict[int, list[tuple[time, time]]] = {}
        for item in config.business_hours:
            ranges.setdefault(item["weekday"], []).append(
                (time.fromisoformat(item["open"]), time.fromisoformat(item["close"]))
            )
        closed = frozenset(config.closed_dates)
        return cls(zone=zone, ranges=ranges, closed=closed, always=not ranges)

    def intervals(self, day: date) -> Iterator[tuple[datetime, datetime]]:
        """The open intervals of a local day, as UTC instants, earliest first."""
        if day in self.closed:
            return
        if self.always:
            spans: Iterable[tuple[time, time]] = [(time(0, 0), time(0, 0))]
        else:
            spans = sorted(self.ranges.get(day.weekday(), []))
        for opens, closes in spans:
            start = datetime.combine(day, opens, self.zone)
            end = datetime.combine(day + timedelta(days=1) if closes <= opens else day, closes, self.zone)
            yield start.astimezone(UTC), end.astimezone(UTC)

    def _around(self, day: date) -> Iterator[tuple[datetime, datetime]]:
        """The intervals that can cover part of a local day: its own and the evening before's,
        which may run past midnight into it."""
        yield from self.intervals(day - timedelta(days=1))
        yield from self.intervals(day)

    def is_open(self, at: datetime) -> bool:
        day = at.astimezone(self.zone).date()
        return any(start <= at < end for start, end in self._around(day))

    def closed_since(self, at: datetime) -> datetime | None:
        """None when open at `at`; otherwise the instant the closed period around `at` began."""
        if self.is_open(at):
            return None
        day = at.astimezone(self.zone).date()
        for back in range(LOOKBACK_DAYS):
            ends = [end for _, end in self._around(day - timedelta(days=back)) if end <= at]
            if ends:
                return max(ends)
        return NEVER_OPEN
