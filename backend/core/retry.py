"""What may simply be run again, and reading back the winner of a race on a unique key.

Why: a DuplicateKeyError proves the winner's document exists, but with majority reads on a
replica set it may not be visible to us for a moment (its write is on the primary, not yet on a
majority). Asserting it is there made a transient state a permanent failure: the webhook
processor kept such a delivery failed for good. One helper reads the winner a few times, then
raises NotYetVisible, which the processor, like a database error or the services' own "…; retry"
conflicts, retries with backoff instead of failing the delivery.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pymongo.errors import PyMongoError

from backend.core.errors import Conflict, NotYetVisible
from backend.core.tuning import WINNER_FIRST_WAIT, WINNER_READS

T = TypeVar("T")

RETRY_SUFFIX = "; retry"  # how the services' conflicts say "the same call later may succeed"


async def read_winner(read: Callable[[], Awaitable[T | None]], *, what: str) -> T:
    """`read()` the document whose unique key we just lost, until it shows (bounded)."""
    wait = WINNER_FIRST_WAIT
    for attempt in range(WINNER_READS):
        found = await read()
        if found is not None:
            return found
        if attempt + 1 < WINNER_READS:
            await asyncio.sleep(wait)
            wait *= 2
    raise NotYetVisible(f"{what} exists but is not visible yet{RETRY_SUFFIX}")


def is_retryable(exc: BaseException) -> bool:
    """Whether the work that raised `exc` may succeed when run again unchanged: a database error,
    a winner not yet visible, or a service conflict that says "retry" (a race lost too often).
    Anything else (unknown payload, a bug, a rule refusing the input) is final."""
    if isinstance(exc, PyMongoError | NotYetVisible):
        return True
    return isinstance(exc, Conflict) and str(exc.detail).endswith(RETRY_SUFFIX)
