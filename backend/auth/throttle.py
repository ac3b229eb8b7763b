"""Login throttling kept in the database, so every backend instance sees the same counts.

Every attempt takes a numbered slot *before* its password is checked: the document
`login:<key>:<window>:<n>` inserted for the lowest free n. A unique `_id` insert is atomic on every
store (FerretDB's updates are not: read, modify, write back), so however many attempts run at once,
only `capacity` of them get a slot; the rest answer 429 without a password check.

Each attempt counts under two keys, in fixed windows of LOGIN_WINDOW_SECONDS:
- the account and the client address together (LOGIN_MAX_FAILURES): guessing one password is
  slowed down, and whoever guesses from elsewhere cannot lock the real user out;
- the client address across accounts (LOGIN_MAX_FAILURES_PER_ADDRESS): password spraying.

A successful login gives slots back as credits (`login:<key>:<window>:c:<m>`, also unique inserts;
capacity = limit + credits): for its account and address, every slot up to its own (earlier typos
are forgiven); for its address, its own slot only (an office behind one address logs in all day).

A hint document per key and window (`login:<key>:<window>`) remembers how many slots and credits
are taken, so an attempt starts probing there instead of at 0. Slots and credits are taken from the
lowest free number up, so the taken ones are always 0..k-1; the hint is only ever raised to a
number that was taken, so a lost hint update (FerretDB) costs extra probes, never a wrong count.
"""

import asyncio
import ipaddress
import math
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from pymongo.errors import DuplicateKeyError

from backend.auth.address import parse_ip
from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.errors import TooManyRequests

COLLECTION = "login_throttle"
LOCKED = "too many failed logins; try again later"


@dataclass(frozen=True)
class Counter:
    key: str
    limit: int
    window: int

    @property
    def prefix(self) -> str:
        return f"login:{self.key}:{self.window}"

    def slot_id(self, n: int) -> str:
        return f"{self.prefix}:{n}"

    def credit_id(self, m: int) -> str:
        return f"{self.prefix}:c:{m}"


@dataclass(frozen=True)
class Attempt:
    """The slots one login attempt holds; `succeeded` gives them back as the rules above say."""

    pair: Counter
    pair_slot: int
    address: Counter

    async def succeeded(self, db: Database) -> None:
        await asyncio.gather(
            _credit_up_to(db, self.pair, self.pair_slot + 1),
            _credit_one(db, self.address),
        )


def address_key(address: str) -> str:
    """IPv6 clients usually hold a whole /64: one address there is the /64, or rotating through it
    would escape every limit."""
    ip = parse_ip(address)  # an IPv4-mapped IPv6 address is its IPv4 one
    if ip is None:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


async def begin(db: Database, settings: Settings, *, email: str, address: str) -> Attempt:
    """Takes this attempt's slots or raises TooManyRequests (with Retry-After, the window's end)."""
    now = time.time()
    window = int(now // settings.LOGIN_WINDOW_SECONDS)
    addr = address_key(address)
    pair = Counter(f"acct:{email}|addr:{addr}", settings.LOGIN_MAX_FAILURES, window)
    per_address = Counter(f"addr:{addr}", settings.LOGIN_MAX_FAILURES_PER_ADDRESS, window)
    retry = math.ceil((window + 1) * settings.LOGIN_WINDOW_SECONDS - now)
    # The pair first: an account already locked for this address does not use up the address's
    # slots as well. A pair slot taken when the address then refuses is simply spent.
    pair_slot = await _take_slot(db, pair)
    if pair_slot is None or await _take_slot(db, per_address) is None:
        raise TooManyRequests(LOCKED, retry_after=max(1, retry))
    return Attempt(pair, pair_slot, per_address)


async def _hint(db: Database, counter: Counter) -> tuple[int, int]:
    doc = await db[COLLECTION].find_one({"_id": counter.prefix})
    return (int(doc.get("slots", 0)), int(doc.get("credits", 0))) if doc else (0, 0)


async def _raise_hint(db: Database, counter: Counter, field: str, value: int) -> None:
    update: dict[str, Any] = {"$max": {field: value}, "$set": {"key": counter.key, "updated_at": utcnow()}}
    # A concurrent first attempt may create it first (DuplicateKeyError): it is only a hint.
    with suppress(DuplicateKeyError):
        await db[COLLECTION].update_one({"_id": counter.prefix}, update, upsert=True)


async def _count_credits(db: Database, counter: Counter, start: int) -> int:
    m = start
    while await db[COLLECTION].find_one({"_id": counter.credit_id(m)}, projection={"_id": 1}) is not None:
        m += 1
    return m


async def _insert(db: Database, doc_id: str, counter: Counter) -> bool:
    try:
        await db[COLLECTION].insert_one({"_id": doc_id, "key": counter.key, "at": utcnow()})
    except DuplicateKeyError:
        return False
    return True


async def _take_slot(db: Database, counter: Counter) -> int | None:
    """The lowest free slot below capacity, now this attempt's; None when there is none."""
    n, credits_hint = await _hint(db, counter)
    credits = await _count_credits(db, counter, credits_hint)
    while True:
        if n >= counter.limit + credits:
            # A success may have just given slots back: look once more before refusing.
            credits = await _count_credits(db, counter, credits)
            if n >= counter.limit + credits:
                return None
        if await _insert(db, counter.slot_id(n), counter):
            break
        n += 1
    await _raise_hint(db, counter, "slots", n + 1)
    return n


async def _credit_up_to(db: Database, counter: Counter, total: int) -> None:
    """At least `total` credits: inserting credit m is idempotent, so concurrent successes agree."""
    _, start = await _hint(db, counter)
    for m in range(start, total):
        await _insert(db, counter.credit_id(m), counter)
    if total > start:
        await _raise_hint(db, counter, "credits", total)


async def _credit_one(db: Database, counter: Counter) -> None:
    _, m = await _hint(db, counter)
    while not await _insert(db, counter.credit_id(m), counter):
        m += 1
    await _raise_hint(db, counter, "credits", m + 1)
