"""The attempt ledger (backend/core/attempts.py) on the real store, with competitors injected
between its writes: a second worker between the read of the ledger and the claim, and between
the claim and the verdict; a lease that runs out between the claim and the verdict (with and
without a way to tell the work was done); a worker killed after its claim. Leases and backoffs
run out by writing them into the past, never by waiting."""

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from backend.core.attempts import Attempt, AttemptLedger, Policy, QueueItem, QueueWalk, Verdict
from backend.core.clock import utcnow
from backend.core.db import Database, durable_database
from backend.core.runtime import runtime_of
from backend.core.seqlog import SeqLog
from backend.media import worker as media_worker
from backend.outbound import worker as outbound_worker
from tests.conftest import make_settings
from tests.monitoring import recorded


class Refused(Exception):
    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


POLICY = Policy(
    max_attempts=3,
    lease_seconds=600,
    backoff_base_seconds=600,
    backoff_max_seconds=900,
    poll_seconds=1,
    concurrency=1,
    scan_limit=10,
    unreadable_give_up_seconds=600,
    errors=Refused,
)


@pytest.fixture
def db(raw_mongo: AsyncMongoClient[dict[str, Any]]) -> Database:
    return durable_database(raw_mongo, f"t_attempts_{uuid.uuid4().hex[:8]}")


class Done(Attempt):
    by: str | None = None  # who answered: the test's verdicts add it


@pytest.fixture
def ledger() -> AttemptLedger[Done]:
    return AttemptLedger("attempts", what="test", model=Done)


class Work:
    """One message's work as a worker sees it: what it did, settled and failed, in order."""

    def __init__(self, ledger: AttemptLedger, db: Database, *, settles: bool = True) -> None:
        self.ledger, self.db, self.settles = ledger, db, settles
        self.acts: list[tuple[str, str]] = []
        self.settled: list[tuple[str, str]] = []
        self.failed: list[str] = []

    def step(
        self,
        worker: str,
        *,
        during: Callable[[str], Awaitable[None]] | None = None,
        answered: Callable[[Done], Awaitable[Verdict | None]] | None = None,
        round_: int = 0,
        error: Refused | Exception | None = None,
    ) -> Awaitable[bool]:
        """`worker`'s step on the message; `during(attempt_id)` runs inside its act (after the
        claim, before the verdict), then the act raises `error` or succeeds."""

        async def act(attempt_id: str) -> Verdict:
            self.acts.append((worker, attempt_id))
            if during is not None:
                await during(attempt_id)
            if error is not None:
                raise error
            return {"result": "done", "by": worker}

        async def settle(attempt: Done) -> bool:
            self.settled.append((worker, attempt.id))
            return self.settles

        async def fail(reason: str) -> None:
            self.failed.append(reason)

        return self.ledger.step(
            self.db,
            "m",
            policy=POLICY,
            worker=worker,
            act=act,
            settle=settle,
            fail=fail,
            answered=answered,
            round_=round_,
        )

    async def attempts(self) -> list[tuple[str, Any]]:
        return [(a.worker, a.result) for a in await self.ledger.list(self.db, "m")]

    async def move(self, attempt: int, field: str) -> None:
        """The attempt's lease (or backoff) is over: its time is written into the past."""
        _id = self.ledger.attempt_id("m", attempt)
        await self.db[self.ledger.collection].update_one({"_id": _id}, {"$set": {field: utcnow() - timedelta(1)}})


async def test_a_second_worker_between_claim_and_verdict_leaves_the_attempt_to_its_claimer(
    db: Database, ledger: AttemptLedger
) -> None:
    work = Work(ledger, db)
    answers: list[bool] = []

    async def second(_: str) -> None:
        answers.append(await work.step("w2"))

    assert await work.step("w1", during=second) is True
    assert answers == [False]
    assert work.acts == [("w1", "m:1")] and work.settled == [("w1", "m:1")]
    assert await work.attempts() == [("w1", "done")]


async def test_a_claim_lost_between_reading_the_ledger_and_inserting_makes_nothing(
    db: Database, ledger: AttemptLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both workers read "no attempt yet"; the other one inserts attempt 1 first: the unique `_id`
    decides, and the loser neither acts nor settles."""
    work = Work(ledger, db)
    real = ledger.claim

    async def claim_after_the_competitor(db_: Database, doc: Done) -> bool:
        assert await real(db_, doc.model_copy(update={"worker": "w2"}))  # the competitor's claim of the same attempt
        return await real(db_, doc)

    monkeypatch.setattr(ledger, "claim", claim_after_the_competitor)
    assert await work.step("w1") is False
    monkeypatch.undo()
    assert work.acts == [] and work.settled == [] and work.failed == []
    assert await work.attempts() == [("w2", None)]


async def test_a_lease_over_between_claim_and_verdict_gives_the_next_attempt_to_another_worker(
    db: Database, ledger: AttemptLedger
) -> None:
    """The slow worker's verdict lands on its own attempt, never on the next one; each settles its
    own success (the work was done twice: nothing told the second worker it was done)."""
    work = Work(ledger, db)
    second: list[bool] = []

    async def lease_over_then_second(_: str) -> None:
        await work.move(1, "lease_until")
        second.append(await work.step("w2"))

    assert await work.step("w1", during=lease_over_then_second) is True
    assert second == [True]
    assert work.acts == [("w1", "m:1"), ("w2", "m:2")]
    assert await work.attempts() == [("w1", "done"), ("w2", "done")]
    assert [a.by for a in await ledger.list(db, "m")] == ["w1", "w2"]
    assert work.settled == [("w2", "m:2"), ("w1", "m:1")]
    assert await work.step("w3") is True  # the round goes by the newest attempt: settled, not redone
    assert work.settled[-1] == ("w3", "m:2") and len(work.acts) == 2


async def test_a_lease_over_with_the_work_shown_done_is_answered_not_done_again(
    db: Database, ledger: AttemptLedger
) -> None:
    """The outbound case: the provider's echo shows the unanswered send was taken. The second
    worker records that answer on attempt 1 and settles it; nothing is sent twice."""
    work = Work(ledger, db)

    async def echo(attempt: Done) -> Verdict | None:
        return {"result": "done", "by": "echo"} if attempt.id == "m:1" else None

    async def lease_over_then_second(_: str) -> None:
        await work.move(1, "lease_until")
        assert await work.step("w2", answered=echo) is True

    assert await work.step("w1", during=lease_over_then_second) is True
    assert work.acts == [("w1", "m:1")]
    assert work.settled == [("w2", "m:1"), ("w1", "m:1")]
    assert await work.attempts() == [("w1", "done")]


async def test_a_worker_killed_after_its_claim_is_waited_for_then_taken_over_then_given_up(
    db: Database, ledger: AttemptLedger
) -> None:
    work = Work(ledger, db)
    with pytest.raises(RuntimeError):  # not a refusal: as a SIGKILL would, it leaves no verdict
        await work.step("w1", error=RuntimeError("killed"))
    assert await work.step("w2") is False  # under the dead worker's lease
    assert await work.attempts() == [("w1", None)]
    for n in (1, 2):
        await work.move(n, "lease_until")
        with pytest.raises(RuntimeError):
            await work.step(f"w{n + 1}", error=RuntimeError("killed"))
    await work.move(3, "lease_until")
    assert await work.step("w4") is True
    assert work.failed == ["attempt 3 did not finish (worker died?)"] and work.settled == []
    assert await work.attempts() == [("w1", None), ("w2", None), ("w3", None)]


async def test_refusals_back_off_then_fail_with_their_reason(db: Database, ledger: AttemptLedger) -> None:
    work = Work(ledger, db)
    assert await work.step("w1", error=Refused("busy", retryable=True)) is False
    first = (await ledger.list(db, "m"))[0]
    assert first.retryable is True and first.retry_at is not None and first.retry_at > first.claimed_at
    assert await work.step("w2") is False  # before retry_at: no new attempt
    assert len(await work.attempts()) == 1
    await work.move(1, "retry_at")
    assert await work.step("w2", error=Refused("busy again", retryable=True)) is False
    await work.move(2, "retry_at")
    assert await work.step("w3", error=Refused("still busy", retryable=True)) is True  # the last attempt
    assert work.failed == ["still busy"]
    assert await work.attempts() == [("w1", "error"), ("w2", "error"), ("w3", "error")]
    assert await work.step("w4") is True and work.failed[-1] == "still busy"  # read back, not redone


async def test_a_final_refusal_fails_at_once_and_a_new_round_counts_afresh(db: Database, ledger: AttemptLedger) -> None:
    work = Work(ledger, db)
    assert await work.step("w1", error=Refused("no such number", retryable=False)) is True
    assert work.failed == ["no such number"]
    assert await work.step("w2", round_=1) is True  # the retry action's round: attempt 2, its first
    assert work.acts == [("w1", "m:1"), ("w2", "m:2")]
    assert [a.round for a in await ledger.list(db, "m")] == [0, 1]


async def test_a_success_that_cannot_be_settled_is_attempted_again(db: Database, ledger: AttemptLedger) -> None:
    """The media case: the attempt says "stored" but the bytes are not found."""
    work = Work(ledger, db, settles=False)
    assert await work.step("w1") is False
    assert await work.step("w2") is False
    assert work.acts == [("w1", "m:1"), ("w2", "m:2")]
    assert work.settled == [("w1", "m:1"), ("w2", "m:1"), ("w2", "m:2")]


async def test_error_reasons_are_cut_where_the_policy_says(db: Database, ledger: AttemptLedger) -> None:
    short = dataclasses.replace(POLICY, error_max_chars=5)
    failed: list[str] = []

    async def act(_: str) -> Verdict:
        raise Refused("x" * 50, retryable=False)

    async def settle(_: Done) -> bool:
        return True

    async def fail(reason: str) -> None:
        failed.append(reason)

    assert await ledger.step(db, "m", policy=short, worker="w1", act=act, settle=settle, fail=fail) is True
    assert failed == ["xxxxx"] and (await ledger.list(db, "m"))[0].error == "xxxxx"


def test_each_worker_is_tuned_by_its_own_settings(mongo_url: str) -> None:
    s = make_settings(mongo_url, "t_attempts", OUTBOUND_MAX_ATTEMPTS=2, MEDIA_FETCH_LEASE_SECONDS=7.0)
    outbound, media = outbound_worker.policy_of(s), media_worker.policy_of(s)
    assert (outbound.max_attempts, outbound.lease_seconds) == (2, s.OUTBOUND_LEASE_SECONDS)
    assert (media.max_attempts, media.lease_seconds) == (s.MEDIA_FETCH_MAX_ATTEMPTS, 7.0)
    assert (media.scan_limit, media.poll_seconds) == (s.MEDIA_FETCH_SCAN_LIMIT, s.MEDIA_FETCH_POLL_SECONDS)
    assert (outbound.concurrency, media.concurrency) == (s.OUTBOUND_CONCURRENCY, s.MEDIA_FETCH_CONCURRENCY)
    assert (outbound.error_max_chars, media.error_max_chars) == (None, media_worker.ERROR_MAX_CHARS)


class Item(QueueItem):
    message_id: str
    enqueued_at: datetime | None = None


async def test_a_walk_reads_no_entry_its_own_process_queued_and_reads_the_others(db: Database, mongo_url: str) -> None:
    """A queue that keeps its appends (the outbox, the media fetch queue): the walk in the process
    that queued an entry takes it from that process's copy, which equals the stored entry as
    another process reads it; once the cursor passes them, the copies are dropped, and a later
    look reads the store."""

    queue = SeqLog("queue", "q:", state_collection="queue_state", cursor_id="cursor", keeps_appends=True)
    async with recorded(db, mongo_url) as (own, recorder):
        for n in range(3):
            await queue.append(own, {"message_id": f"m{n}", "enqueued_at": utcnow()})
        recorder.commands.clear()
        seen: list[Item] = []

        async def visit(entries: list[Item]) -> list[int]:
            seen.extend(entries)
            return [e.seq for e in entries[:2]]  # the third is left for a later pass

        await QueueWalk(queue, Item, POLICY, what="test").run_once(own, visit)
        # The head's search reads the log (`_id` only: is q:3 there, is q:4); no entry is read.
        whole = [
            c for c in recorder.named("find") if c["filter"].get("_id", "").startswith("q:") and "projection" not in c
        ]
        assert whole == []
        # Another process (its own runtime: no copies) reads the stored entries: field for field the same.
        assert seen == [Item.model_validate(await queue.get(db, n)) for n in (1, 2, 3)]
        assert [e.message_id for e in seen] == ["m0", "m1", "m2"]
        kept = {k[-1] for k in runtime_of(own).seqlog_kept if k[:3] == (own.name, "queue", "q:")}
        assert kept == {3}  # the cursor passed 1 and 2: their copies are gone
        queue.forget_upto(own, 2, 3)
        recorder.commands.clear()
        assert Item.model_validate(await queue.get(own, 3)) == seen[2]
        assert [(c["filter"]["_id"], "projection" in c) for c in recorder.named("find")] == [("q:3", False)]


async def test_a_woken_pass_reads_nothing_but_new_entries_and_the_polls_find_the_rest(
    db: Database, mongo_url: str
) -> None:
    """A pass woken by this process's own append looks at the entries no pass has looked at, up
    to the head this process knows, without reading the cursor, the head or its own copies; an
    entry another process appended past that head, and one left unfinished, wait for the poll."""
    queue = SeqLog("queue", "q:", state_collection="queue_state", cursor_id="cursor", keeps_appends=True)
    walk: QueueWalk[Item] = QueueWalk(queue, Item, POLICY, what="test")
    passes: list[list[str]] = []
    finish: set[str] = set()

    async def visit(entries: list[Item]) -> list[int]:
        passes.append([e.message_id for e in entries])
        return [e.seq for e in entries if e.message_id in finish]

    async with recorded(db, mongo_url) as (own, recorder):
        await walk.run_once(own, visit)  # the first pass reads: nothing queued yet
        await queue.append(own, {"message_id": "mine"})
        recorder.commands.clear()
        await walk.run_once(own, visit, poll=False)  # woken: looks at it, leaves it unfinished
        assert recorder.named("find") == []
        await queue.append(db, {"message_id": "theirs"})  # another process: no copy, no wake-up here
        await walk.run_once(own, visit, poll=False)  # nothing new up to this process's head
        await walk.run_once(own, visit)  # the poll: both, the unfinished one again
        # A reply's entry is queued before its message is stored: a poll may find it first and
        # leave it; the pass the store then wakes looks at it again.
        await queue.append(own, {"message_id": "queued first"})
        await walk.run_once(own, visit)
        finish.update({"mine", "theirs", "queued first"})
        await walk.run_once(own, visit, poll=False)  # what no woken pass looked at: not "mine"
        await walk.run_once(own, visit)  # the poll finishes "mine": the cursor passes all three
    assert passes == [
        [],
        ["mine"],
        [],
        ["mine", "theirs"],
        ["mine", "theirs", "queued first"],
        ["theirs", "queued first"],
        ["mine"],
    ]
    assert await queue.get_cursor(db) == 3


async def test_an_entry_that_does_not_load_is_left_where_it_is_and_the_others_are_visited(db: Database) -> None:
    queue = SeqLog("queue", "q:", state_collection="queue_state", cursor_id="cursor")
    await queue.append(db, {"message_id": "m1"})
    await queue.append(db, {"other": "no message id"})  # written by a version that had another shape
    await queue.append(db, {"message_id": "m3"})
    visited: list[Item] = []

    async def visit(entries: list[Item]) -> list[int]:
        visited.extend(entries)
        return [e.seq for e in entries]

    await QueueWalk(queue, Item, POLICY, what="test").run_once(db, visit)
    assert [(e.seq, e.message_id) for e in visited] == [(1, "m1"), (3, "m3")]
    assert await queue.get_cursor(db) == 1  # the cursor waits at the entry nobody finished
