"""Which backups to keep: the newest always, the newest of each of the last N days that have a
backup, and the newest of each of the last M ISO weeks that have one. Pure: no I/O."""

from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

T = TypeVar("T")


def plan(backups: Sequence[tuple[datetime, T]], *, keep_daily: int, keep_weekly: int) -> tuple[list[T], list[T]]:
    """Returns (keep, delete), each newest first."""
    ordered = sorted(backups, key=lambda b: b[0], reverse=True)
    if not ordered:
        return [], []
    keep_idx = {0}  # the newest backup is never deleted, whatever N and M say
    days: dict[object, int] = {}
    weeks: dict[object, int] = {}
    for i, (at, _) in enumerate(ordered):
        days.setdefault(at.date(), i)
        weeks.setdefault(at.isocalendar()[:2], i)
    keep_idx.update(list(days.values())[: max(keep_daily, 0)])
    keep_idx.update(list(weeks.values())[: max(keep_weekly, 0)])
    keep = [item for i, (_, item) in enumerate(ordered) if i in keep_idx]
    delete = [item for i, (_, item) in enumerate(ordered) if i not in keep_idx]
    return keep, delete
