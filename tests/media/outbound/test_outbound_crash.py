"""A media reply whose worker dies between the provider's answer and recording it is sent once.

No worker runs in the API process (OUTBOUND_WORKER_ENABLED=false); the test drives workers by
hand and makes the first one die at that exact point: its ledger's `finish` raises, as a SIGKILL
after the provider call returned would leave it (attempt claimed, never finished). The provider's
fromMe echo of the send arrives meanwhile and is held for the unanswered attempt. Once the lease
has run out, the next worker must take that held echo as the answer instead of sending again."""

import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.core.clock import utcnow
from backend.core.config import Settings
from backend.outbound import repository
from backend.outbound.worker import OutboundWorker
from tests.factories import make_tenant
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.media.outbound.helpers import fixture, media_bytes, post_file, sent_to
from tests.outbound.helpers import held_ticket, start_worker


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"OUTBOUND_WORKER_ENABLED": False}


async def test_a_media_reply_is_sent_exactly_once_when_its_worker_dies_before_recording_the_answer(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    pdf = fixture("boleto.pdf")
    r = await post_file(client, ticket_id, agent, name="boleto.pdf", data=pdf, mime="application/pdf", body="Segue")
    assert r.status_code == 201, r.text
    reply = r.json()["id"]

    async def killed(*_: Any, **__: Any) -> None:
        raise RuntimeError("worker killed after the provider answered")

    async with httpx.AsyncClient(timeout=10) as http:
        monkeypatch.setattr(repository.attempts, "finish", killed)
        await OutboundWorker(db, settings, http).run_once()
        monkeypatch.undo()
        sent = await sent_to(evolution, phone)
        assert len(sent) == 1 and await media_bytes(evolution, sent[0]["key_id"]) == pdf
        attempt = await db.outbox_attempts.find_one({"_id": f"{reply}:1"})
        assert attempt["result"] is None  # the answer was never recorded
        # The provider's echo of the send comes in while the attempt is unanswered: held.
        await wait_for(lambda: db.outbox_echoes.find_one({"_id": f"{reply}:1#1"}), timeout=30)
        # The dead worker's lease runs out.
        await db.outbox_attempts.update_one({"_id": f"{reply}:1"}, {"$set": {"lease_until": utcnow() - timedelta(1)}})

        async def settled() -> dict[str, Any] | None:
            await OutboundWorker(db, settings, http).run_once()
            doc: dict[str, Any] | None = await db.messages.find_one({"_id": reply, "status": {"$ne": "pending"}})
            return doc

        message = await wait_for(settled, timeout=30)

    assert message["status"] == "sent" and message["provider_message_id"] == sent[0]["key_id"]
    assert len(await sent_to(evolution, phone)) == 1, "sent again after the crash"
    attempt = await db.outbox_attempts.find_one({"_id": f"{reply}:1"})
    assert attempt["result"] == "sent" and attempt["answered_by"] == "echo"
    assert await db.outbox_attempts.find_one({"_id": f"{reply}:2"}) is None
    hold = await db.outbox_echoes.find_one({"_id": f"{reply}:1#1"})
    assert hold["resolution"] == "echo"
    # The echo is not stored as a message of its own.
    assert await db.messages.count_documents({"ticket_id": ticket_id, "direction": "out"}) == 1


async def test_a_voice_note_is_sent_once_when_its_worker_process_is_killed_mid_send(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """The same window with a real `python -m backend.outbound` and SIGKILL: the provider has
    taken the voice note and posted its echo, but its answer is held back, and the process is
    killed while waiting for it. A fresh worker, once the dead one's lease is over, sends nothing."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, phone, agent = await held_ticket(client, tenant, evolution, conn, db)
    ogg = fixture("voice.ogg")
    r = await post_file(client, ticket_id, agent, name="voz.ogg", data=ogg, mime="audio/ogg")
    assert r.status_code == 201, r.text
    reply = r.json()["id"]
    await evolution.mode("ok", hold_answer_next=1)
    worker = start_worker(settings, tmp_path / "killed.log")
    try:
        # A fresh process imports the whole backend first: minutes on a loaded CI machine.
        await wait_for(lambda: sent_to(evolution, phone), timeout=240)
        await wait_for(lambda: db.outbox_echoes.find_one({"_id": f"{reply}:1#1"}), timeout=30)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        await evolution.control("POST", "release")
    assert (await db.outbox_attempts.find_one({"_id": f"{reply}:1"}))["result"] is None
    await db.outbox_attempts.update_one({"_id": f"{reply}:1"}, {"$set": {"lease_until": utcnow() - timedelta(1)}})

    fresh = start_worker(settings, tmp_path / "fresh.log")
    try:
        message = await wait_for(lambda: db.messages.find_one({"_id": reply, "status": "sent"}), timeout=240)
    finally:
        fresh.terminate()
        fresh.wait(10)
    sent = await sent_to(evolution, phone)
    assert len(sent) == 1, "sent again after the crash"
    assert message["provider_message_id"] == sent[0]["key_id"]
    assert await media_bytes(evolution, sent[0]["key_id"]) == ogg
    assert await db.outbox_attempts.find_one({"_id": f"{reply}:2"}) is None
