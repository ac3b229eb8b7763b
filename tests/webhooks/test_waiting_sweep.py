"""The processors' sweep of waiting deliveries (webhooks.service `run_waiting`) reaches every one
whose time has come, whatever waits ahead of it: an entry that fails for good at every run is
postponed and the pass goes on, and entries that are not due (a redrive backing off) or that it
only walks past (an edit whose message never comes, kept two days) never fill its window. It
looks after each for as long as it promised: one whose next run would come later is given up,
kept failed where an operator looks (scripts/reprocess_webhooks.py) and reported once, and one
that came due while no sweep ran is still run. A document that does not read is reported once,
not at every pass; nor is an edit whose message never comes left waiting past its two days: it is
given up like the others, reported once. The redrive is a client's message whose attempts failed on errors that passed;
the sweep's own loop is slowed here so that each test runs the one pass it means to."""

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from pymongo.errors import AutoReconnect
from structlog.testing import capture_logs

from backend.connections.providers.base import ProviderError
from backend.core import metrics
from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.tickets import intake
from backend.webhooks import repository, service
from backend.webhooks.models import Waiting
from backend.webhooks.processor import WAITING_LOOKED_AFTER
from scripts.reprocess_webhooks import reprocess
from tests.factories import Tenant, make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.webhooks.evolution_shapes import OWNER, all_messages, envelope, key_id, pn_key, token, upsert

HOOK = "/api/v1/webhooks/whatsapp"
BODY = "ainda sem resposta do suporte"
GIVEN_UP = "waiting webhook delivery given up; kept failed for an operator"
UNREADABLE = "webhook waiting entry unreadable; passed over"


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    # The processors' own sweep never runs during a test: the pass under test is the one it calls.
    return {"WEBHOOK_MAX_ATTEMPTS": 2, "WEBHOOK_BACKOFF_BASE_SECONDS": 0.05, "WEBHOOK_WAITING_CHECK_SECONDS": 3600.0}


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


@pytest.fixture(scope="module")
async def conn(client: httpx.AsyncClient, tenant: Tenant, evolution: FakeEvolution) -> dict[str, Any]:
    return await make_connection(client, tenant, evolution)


class UnknownProvider(LookupError):
    """A failure no retry fixes (not a store error: backend/core/retry.py `is_retryable`)."""


@dataclass
class Redrive:
    """A client's message whose attempts all failed on errors that passed since: kept failed and
    waiting to be run again, its time come. `store_away`: its filing fails again while set."""

    body: str
    raw_id: str = ""
    parked_at: datetime = datetime.min
    store_away: bool = True

    @property
    def waiting_id(self) -> str:
        return f"{self.raw_id}:retry"


async def _nothing_else_waiting(db: Any) -> None:
    """What an earlier test of this module left waiting is not this test's."""
    await db.webhook_waiting.update_many({"applied_at": None}, {"$set": {"applied_at": utcnow()}})


@pytest.fixture
async def redrive(client: httpx.AsyncClient, db: Any, conn: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Redrive:
    await _nothing_else_waiting(db)
    phone = unique_phone()
    due = Redrive(body=f"{BODY} ({phone})")
    real_receive = intake.receive_client_message

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if due.store_away:
            raise AutoReconnect("the store went away")
        return await real_receive(*args, **kwargs)

    monkeypatch.setattr(intake, "receive_client_message", flaky)
    payload = upsert(pn_key(phone), {"conversation": due.body}, "conversation")
    r = await client.post(
        f"{HOOK}/{conn['id']}", json=payload, headers={"X-Webhook-Token": await token(db, conn["id"])}
    )
    assert r.status_code == 200, r.text
    due.raw_id = r.json()["raw_id"]

    async def parked() -> dict[str, Any] | None:
        raw = await db.webhook_events_raw.find_one({"_id": due.raw_id})
        found: dict[str, Any] | None = await db.webhook_waiting.find_one({"_id": due.waiting_id})
        return found if raw["status"] == "failed" else None

    waiting = await wait_for(parked)
    due.store_away = False  # the cause passed
    await db.webhook_waiting.update_one(
        {"_id": due.waiting_id}, {"$set": {"not_before": utcnow() - timedelta(seconds=1)}}
    )
    due.parked_at = waiting["parked_at"]
    return due


async def _filed(client: httpx.AsyncClient, db: Any, tenant: Tenant, due: Redrive) -> None:
    raw = await db.webhook_events_raw.find_one({"_id": due.raw_id})
    assert raw["status"] == "processed", raw

    async def shown() -> list[str] | None:
        bodies = [m["body"] for m in await all_messages(client, tenant)]
        return bodies if due.body in bodies else None

    assert (await wait_for(shown, timeout=5)).count(due.body) == 1
    assert (await db.webhook_waiting.find_one({"_id": due.waiting_id}))["applied_at"] is not None


async def _park(db: Any, waiting: Waiting) -> None:
    await db.webhook_waiting.insert_one(waiting.stored())


async def _seen_long_ago(db: Any, waiting_id: str) -> None:
    """Parked, and first read by a sweep, longer ago than the window the sweep looks after it."""
    then = utcnow() - WAITING_LOOKED_AFTER - timedelta(minutes=1)
    await db.webhook_waiting.update_one({"_id": waiting_id}, {"$set": {"parked_at": then, "seen_at": then}})


def _failed(kind: str) -> float:
    value: float = metrics.WEBHOOK_FAILED.labels(kind=kind)._value.get()
    return value


@pytest.mark.parametrize("failing", ["an owed catch-up of an unknown provider", "a delivery no longer readable"])
async def test_an_entry_failing_for_good_is_postponed_and_the_redrive_after_it_is_filed(
    client: httpx.AsyncClient,
    db: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tenant: Tenant,
    conn: dict[str, Any],
    redrive: Redrive,
    failing: str,
) -> None:
    ahead = redrive.parked_at - timedelta(minutes=1)
    if failing == "an owed catch-up of an unknown provider":

        async def unknown(*args: Any, **kwargs: Any) -> Any:
            raise UnknownProvider("no provider 'evolution-v9'")

        monkeypatch.setattr(service, "pay_catch_up", unknown)
        bad = Waiting(
            id=f"{conn['id']}:owed:catch_up",
            raw_id="",
            connection_id=conn["id"],
            reason="catch_up",
            since=ahead,
            parked_at=ahead,
        )
    else:  # a stored delivery that no longer validates (a field it lacks): a ValidationError at every run
        await db.webhook_events_raw.insert_one({"_id": f"unreadable-{redrive.raw_id}", "connection_id": conn["id"]})
        bad = Waiting(
            id=f"unreadable-{redrive.raw_id}:retry",
            raw_id=f"unreadable-{redrive.raw_id}",
            connection_id=conn["id"],
            reason="retry",
            parked_at=ahead,
        )
    await _park(db, bad)
    final_before, postponed_before = _failed("final"), _failed("waiting_postponed")

    assert await service.run_waiting(db, settings, since=utcnow() - timedelta(hours=1), limit=200) == 2

    await _filed(client, db, tenant, redrive)
    postponed = await db.webhook_waiting.find_one({"_id": bad.id})
    assert postponed["applied_at"] is None and postponed["tries"] == 1, postponed  # kept, run again later
    assert postponed["not_before"] > utcnow() + service.REDRIVE_FIRST
    # Counted as a run that failed and will be run again, not as a delivery kept failed for good.
    assert (_failed("final"), _failed("waiting_postponed")) == (final_before, postponed_before + 1)


@pytest.mark.parametrize("ahead", ["edits whose message never comes", "redrives not due yet", "unreadable entries"])
async def test_a_full_window_of_entries_the_pass_cannot_run_does_not_hide_a_due_redrive(
    client: httpx.AsyncClient,
    db: Any,
    settings: Settings,
    tenant: Tenant,
    conn: dict[str, Any],
    redrive: Redrive,
    ahead: str,
) -> None:
    limit = 3
    raw_id = redrive.raw_id
    parked_at = redrive.parked_at - timedelta(minutes=1)  # the same instant for all: ordered by `_id` then
    for n in range(limit):
        if ahead == "edits whose message never comes":
            entry = Waiting(
                id=f"never-{raw_id}-{n}:edit",
                raw_id=f"never-{raw_id}-{n}",
                connection_id=conn["id"],
                reason="edit",
                provider_message_id=f"NEVER{n}",
                parked_at=parked_at,
            )
        elif ahead == "unreadable entries":  # no delivery, connection nor reason: they fail validation
            await db.webhook_waiting.insert_one(
                {"_id": f"unreadable-{raw_id}-{n}", "parked_at": parked_at, "applied_at": None, "tries": 0}
            )
            continue
        else:
            entry = Waiting(
                id=f"later-{raw_id}-{n}:retry",
                raw_id=f"later-{raw_id}-{n}",
                connection_id=conn["id"],
                reason="retry",
                parked_at=parked_at,
                not_before=utcnow() + timedelta(hours=1),
            )
        await _park(db, entry)

    assert await service.run_waiting(db, settings, since=utcnow() - timedelta(hours=1), limit=limit) == 1

    await _filed(client, db, tenant, redrive)
    untouched = await db.webhook_waiting.find({"_id": {"$ne": redrive.waiting_id}, "applied_at": None}).to_list(None)
    assert sorted(w["tries"] for w in untouched) == [0] * limit  # walked past, not run, nor pushed back


async def test_an_unreadable_entry_is_reported_once_not_at_every_pass(db: Any, settings: Settings) -> None:
    await _nothing_else_waiting(db)
    bad_id = f"unreadable-{unique_phone()}"
    await db.webhook_waiting.insert_one({"_id": bad_id, "parked_at": utcnow(), "applied_at": None, "tries": 0})
    final_before, unreadable_before = _failed("final"), _failed("waiting_unreadable")

    with capture_logs() as logs:
        for _ in range(3):
            assert await service.run_waiting(db, settings, since=utcnow() - timedelta(hours=1), limit=200) == 0

    assert [e["waiting_id"] for e in logs if e["event"] == UNREADABLE] == [bad_id]
    # Not a delivery kept failed for good: a document an operator must mend, which stays.
    assert (_failed("final"), _failed("waiting_unreadable")) == (final_before, unreadable_before + 1)
    assert (await db.webhook_waiting.find_one({"_id": bad_id}))["applied_at"] is None


@pytest.mark.parametrize("failing", ["a client's message whose store stays away", "an owed catch-up, provider down"])
async def test_an_entry_whose_next_run_would_leave_the_window_is_given_up_failed_for_an_operator(
    db: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    conn: dict[str, Any],
    redrive: Redrive,
    failing: str,
) -> None:
    """Its next run, backed off, would come after the sweep stops reading it (WAITING_LOOKED_AFTER
    from its parking): before the fix it was postponed there, never read again, and its delivery
    left as it was, counted nowhere."""
    edge_near = utcnow() - WAITING_LOOKED_AFTER + timedelta(minutes=1)
    if failing == "a client's message whose store stays away":
        redrive.store_away = True
        given = Waiting.model_validate(await db.webhook_waiting.find_one({"_id": redrive.waiting_id}))
        error = "AutoReconnect: the store went away"
    else:

        async def down(*args: Any, **kwargs: Any) -> Any:
            raise ProviderError("evolution answered 503", retryable=True)

        monkeypatch.setattr(service, "pay_catch_up", down)
        given = Waiting(
            id=f"{conn['id']}:{redrive.raw_id}:catch_up",
            raw_id="",
            connection_id=conn["id"],
            reason="catch_up",
            since=edge_near,
            parked_at=edge_near,
            not_before=utcnow() - timedelta(seconds=1),
        )
        await db.webhook_waiting.update_one({"_id": redrive.waiting_id}, {"$set": {"applied_at": utcnow()}})
        await _park(db, given)
        error = "ProviderError: evolution answered 503"
    seen = {"parked_at": edge_near, "seen_at": edge_near}  # a sweep read it then: its window is nearly over
    await db.webhook_waiting.update_one({"_id": given.id}, {"$set": {**seen, "tries": 3}})
    final_before = _failed("final")

    with capture_logs() as logs:
        assert await service.run_waiting(db, settings, since=utcnow() - WAITING_LOOKED_AFTER, limit=200) == 1
        ended = await db.webhook_waiting.find_one({"_id": given.id})
        assert ended["applied_at"] is not None and ended["error"] == error, ended  # kept, with why
        assert ended["tries"] == 3, ended
        # A concurrent sweep's postpone, written whole on FerretDB, may put it back waiting: it is
        # given up again at its next run, and reported once.
        await db.webhook_waiting.update_one({"_id": given.id}, {"$set": {"applied_at": None, "error": None}})
        assert await service.run_waiting(db, settings, since=utcnow() - WAITING_LOOKED_AFTER, limit=200) == 1

    assert (await db.webhook_waiting.find_one({"_id": given.id}))["applied_at"] is not None
    assert [(e["waiting_id"], e["runs"], e["error"]) for e in logs if e["event"] == GIVEN_UP] == [(given.id, 4, error)]
    assert _failed("final") == final_before + 1  # what the InboundFailed alert watches
    if given.raw_id:  # kept failed where the operators' reprocessing looks, with why
        raw = await db.webhook_events_raw.find_one({"_id": given.raw_id})
        assert raw["status"] == "failed", raw
        assert raw["error"] == f"given up by the waiting sweep after 4 runs: {error}", raw
        listed = await reprocess(db, connection_id=conn["id"], limit=1000, dry_run=True)
        assert given.raw_id in [event.id for event, _ in listed]


async def test_a_redrive_come_due_while_no_sweep_ran_is_run_though_parked_before_the_window(
    client: httpx.AsyncClient, db: Any, settings: Settings, tenant: Tenant, redrive: Redrive
) -> None:
    """Its `not_before` passed while no process swept (a longer outage), and its parking left the
    window meanwhile: still run, not left unread."""
    since = utcnow() - timedelta(hours=1)
    await db.webhook_waiting.update_one(
        {"_id": redrive.waiting_id}, {"$set": {"parked_at": since - timedelta(minutes=5), "tries": 2}}
    )

    assert await service.run_waiting(db, settings, since=since, limit=200) == 1

    await _filed(client, db, tenant, redrive)


async def test_an_edit_whose_message_never_comes_is_given_up_after_its_window_and_reported_once(
    client: httpx.AsyncClient, db: Any, settings: Settings, conn: dict[str, Any]
) -> None:
    """Before the fix it aged out of the sweep's reading unreported: left in `webhook_waiting`
    forever, counted by `iaze_webhook_waiting{reason="edit"}`, its delivery "processed" (parked)
    where no operator looks."""
    await _nothing_else_waiting(db)
    kid = key_id()
    protocol = {
        "key": {"remoteJid": f"{OWNER}@s.whatsapp.net", "fromMe": True, "id": kid},
        "type": "MESSAGE_EDIT",
        "editedMessage": {"conversation": "às 20h, não às 19h"},
        "timestampMs": str(int(time.time() * 1000)),
    }
    r = await client.post(
        f"{HOOK}/{conn['id']}",
        json=envelope("messages.edited", protocol),
        headers={"X-Webhook-Token": await token(db, conn["id"])},
    )
    assert r.status_code == 200, r.text
    raw_id = r.json()["raw_id"]

    async def parked() -> dict[str, Any] | None:
        found: dict[str, Any] | None = await db.webhook_waiting.find_one({"raw_id": raw_id, "reason": "edit"})
        return found

    entry = await wait_for(parked)
    assert await repository.count_waiting_internal(db, "edit") == 1
    # The clock moves past the window the sweep looks after it, its message still not come.
    await _seen_long_ago(db, entry["_id"])
    final_before = _failed("final")

    def sweep() -> Any:
        return service.run_waiting(db, settings, since=utcnow() - WAITING_LOOKED_AFTER, limit=200)

    with capture_logs() as logs:
        assert sum(await asyncio.gather(sweep(), sweep())) >= 1  # two processes' sweeps at once
        ended = await db.webhook_waiting.find_one({"_id": entry["_id"]})
        assert ended["applied_at"] is not None, ended  # no longer waiting, kept with why
        assert ended["error"].startswith("EditedMessageNotStored: the message this edit changes"), ended
        assert kid in ended["error"], ended
        # A concurrent sweep's whole-document write on FerretDB may put it back waiting: given up
        # again at the next sweep, not reported again.
        await db.webhook_waiting.update_one({"_id": entry["_id"]}, {"$set": {"applied_at": None, "error": None}})
        assert await sweep() == 1
        assert await sweep() == 0

    reported = [(e["waiting_id"], e["reason"], e["runs"]) for e in logs if e["event"] == GIVEN_UP]
    assert reported == [(entry["_id"], "edit", 0)]
    assert _failed("final") == final_before + 1  # what the InboundFailed alert watches
    assert await repository.count_waiting_internal(db, "edit") == 0
    assert (await db.webhook_waiting.find_one({"_id": entry["_id"]}))["applied_at"] is not None
    # Its delivery kept, failed, where the operators' reprocessing looks, with why.
    raw = await db.webhook_events_raw.find_one({"_id": raw_id})
    assert raw["status"] == "failed", raw
    assert raw["error"] == f"given up by the waiting sweep: {ended['error']}", raw
    listed = await reprocess(db, connection_id=conn["id"], limit=1000, dry_run=True)
    assert raw_id in [event.id for event, _ in listed]


async def test_a_given_up_edit_reprocessed_stays_failed_until_its_message_is_stored(
    client: httpx.AsyncClient, db: Any, settings: Settings, tenant: Tenant, conn: dict[str, Any]
) -> None:
    """Its operator reprocesses it: while its message is still not stored it stays failed (before
    the fix it was marked "processed", parked, while its wait, ended, waited for nothing: an
    edit nobody would see); once the message is caught up, the edit is recorded beside it."""
    await _nothing_else_waiting(db)
    kid, phone = key_id(), unique_phone()
    protocol = {
        "key": {"remoteJid": f"{OWNER}@s.whatsapp.net", "fromMe": True, "id": kid},
        "type": "MESSAGE_EDIT",
        "editedMessage": {"conversation": f"{BODY}, editada"},
        "timestampMs": str(int(time.time() * 1000)),
    }
    headers = {"X-Webhook-Token": await token(db, conn["id"])}
    r = await client.post(f"{HOOK}/{conn['id']}", json=envelope("messages.edited", protocol), headers=headers)
    assert r.status_code == 200, r.text
    raw_id = r.json()["raw_id"]

    async def parked() -> dict[str, Any] | None:
        found: dict[str, Any] | None = await db.webhook_waiting.find_one({"raw_id": raw_id, "reason": "edit"})
        return found

    entry = await wait_for(parked)
    await _seen_long_ago(db, entry["_id"])
    assert await service.run_waiting(db, settings, since=utcnow() - WAITING_LOOKED_AFTER, limit=200) == 1

    async def outcome() -> str:
        results = await reprocess(db, connection_id=conn["id"], limit=1000, dry_run=False)
        (mine,) = [outcome for event, outcome in results if event.id == raw_id]
        return mine

    assert await outcome() == "failed"
    raw = await db.webhook_events_raw.find_one({"_id": raw_id})
    assert raw["status"] == "failed" and "its wait has ended" in raw["error"], raw
    assert await repository.count_waiting_internal(db, "edit") == 0

    message = upsert(pn_key(phone, kid), {"conversation": BODY}, "conversation")
    r = await client.post(f"{HOOK}/{conn['id']}", json=message, headers=headers)
    assert r.status_code == 200, r.text

    async def shown() -> list[str] | None:
        bodies = [m["body"] for m in await all_messages(client, tenant)]
        return bodies if BODY in bodies else None

    await wait_for(shown)
    assert await outcome() == "processed"
    assert f"{BODY}, editada" in [m["body"] for m in await all_messages(client, tenant)]
