"""Failed-login throttling kept in the database, so every backend instance sees the same count.

Failures are counted per email in fixed windows; the current and previous window together must
stay under the limit. A lost increment under a race only makes the limit slightly laxer.
"""

import time

from pymongo.errors import DuplicateKeyError

from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.errors import TooManyRequests

COLLECTION = "login_throttle"


def _window(settings: Settings, now: float) -> int:
    return int(now // settings.LOGIN_WINDOW_SECONDS)


async def check(db: Database, settings: Settings, email: str) -> int:
    """Raises TooManyRequests while locked; otherwise returns the failures that still count."""
    now = time.time()
    window = _window(settings, now)
    counts = []
    for w in (window, window - 1):  # two _id lookups: the only query FerretDB pushes down
        doc = await db[COLLECTION].find_one({"_id": f"{email}|{w}"})
        counts.append(int(doc["failures"]) if doc else 0)
    current, previous = counts
    if current + previous >= settings.LOGIN_MAX_FAILURES:
        # Next window the current one becomes "previous" and still counts: when it alone is over
        # the limit, the lock lasts until the end of the next window, and Retry-After must say so.
        lifts_at = window + (2 if current >= settings.LOGIN_MAX_FAILURES else 1)
        retry = int(lifts_at * settings.LOGIN_WINDOW_SECONDS - now) + 1
        raise TooManyRequests("too many failed logins; try again later", retry_after=retry)
    return current + previous


async def record_failure(db: Database, settings: Settings, email: str) -> None:
    window = _window(settings, time.time())
    update = {"$inc": {"failures": 1}, "$set": {"email": email, "last_failure_at": utcnow()}}
    try:
        await db[COLLECTION].update_one({"_id": f"{email}|{window}"}, update, upsert=True)
    except DuplicateKeyError:  # a concurrent failure created the window's document first
        await db[COLLECTION].update_one({"_id": f"{email}|{window}"}, update)


async def clear(db: Database, settings: Settings, email: str) -> None:
    """A successful login forgives earlier typos, so they do not add up with later ones."""
    window = _window(settings, time.time())
    for w in (window, window - 1):
        await db[COLLECTION].update_one({"_id": f"{email}|{w}"}, {"$set": {"failures": 0}})
