"""Which failures are worth running again (backend/core/retry.py), and reading back the winner of
a race lost on a unique key when the winner is not visible at once (a replica set's majority
read a moment behind the primary)."""

from typing import Any

import pytest
from pymongo.errors import AutoReconnect, DuplicateKeyError, NetworkTimeout, WriteConcernError

from backend.connections.providers.base import WebhookParseError
from backend.core import retry
from backend.core.errors import BadRequest, Conflict, NotFound, NotYetVisible, Unprocessable


@pytest.mark.parametrize(
    "exc",
    [
        AutoReconnect("primary stepped down"),
        NetworkTimeout("timed out"),
        WriteConcernError("waiting for replication timed out", 64),
        DuplicateKeyError("E11000"),
        NotYetVisible("ticket x exists but is not visible yet; retry"),
        Conflict("ticket is changing too fast; retry"),
        Conflict("could not open a ticket; retry"),
    ],
)
def test_database_errors_invisible_winners_and_retry_conflicts_are_retryable(exc: BaseException) -> None:
    assert retry.is_retryable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        WebhookParseError("body is not JSON"),
        LookupError("connection not found"),
        ValueError("a bug"),
        KeyError("data"),
        Conflict({"message": "a client with this phone already exists", "client_id": "x"}),
        Conflict("ticket is finalizado"),
        NotFound("ticket not found"),
        BadRequest("bad"),
        Unprocessable("no such department"),
    ],
)
def test_payload_errors_bugs_and_rule_refusals_are_final(exc: BaseException) -> None:
    assert not retry.is_retryable(exc)


async def test_a_winner_visible_on_the_second_read_is_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "WINNER_FIRST_WAIT", 0.0)
    reads: list[int] = []

    async def read() -> dict[str, Any] | None:
        reads.append(1)
        return {"_id": "winner"} if len(reads) >= 2 else None

    assert await retry.read_winner(read, what="ticket winner") == {"_id": "winner"}
    assert len(reads) == 2


async def test_a_winner_still_invisible_after_the_bounded_reads_is_a_retryable_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retry, "WINNER_FIRST_WAIT", 0.0)
    reads: list[int] = []

    async def read() -> dict[str, Any] | None:
        reads.append(1)
        return None

    with pytest.raises(NotYetVisible) as raised:
        await retry.read_winner(read, what="message m1")
    assert len(reads) == retry.WINNER_READS
    assert "message m1" in str(raised.value.detail) and retry.is_retryable(raised.value)
    assert raised.value.status_code == 503
