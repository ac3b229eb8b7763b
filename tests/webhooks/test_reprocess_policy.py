"""scripts/reprocess_webhooks: an event whose reprocessing meets a retryable outcome (a winner not
yet visible, a race lost too often) is reported as still failing and the run goes on to the next
events, instead of stopping with a traceback."""

import json
from typing import Any

import httpx
import pytest

from backend.core.clock import utcnow
from backend.core.errors import Conflict, NotYetVisible, Unprocessable
from backend.core.ids import new_id
from backend.webhooks import service
from backend.webhooks.models import RawEvent
from scripts import reprocess_webhooks
from tests.factories import API, make_open_connection, make_tenant, unique_phone
from tests.webhooks.helpers import text_upsert


async def _failed_events(db: Any, connection_id: str, n: int) -> list[str]:
    ids = sorted(new_id() for _ in range(n))
    for raw_id in ids:
        await db.webhook_events_raw.insert_one(
            {
                "_id": raw_id,
                "connection_id": connection_id,
                "reseller_id": new_id(),
                "status": "failed",
                "received_at": utcnow(),
                "body": "{}",
            }
        )
    return ids


async def test_a_retryable_outcome_is_reported_and_the_run_goes_on(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    connection_id = new_id()
    first, second, third = await _failed_events(db, connection_id, 3)
    raised = {first: NotYetVisible("ticket x exists but is not visible yet; retry"), second: Conflict("busy; retry")}

    async def process(_db: Any, raw: RawEvent, **_: Any) -> service.Processed:
        if raw.id in raised:
            raise raised[raw.id]
        return service.Processed("processed")

    monkeypatch.setattr(service, "process", process)
    results = await reprocess_webhooks.reprocess(db, connection_id=connection_id, limit=10, dry_run=False)

    outcomes = {raw.id: outcome for raw, outcome in results}
    assert outcomes[third] == "processed"
    assert outcomes[first].startswith("failed (retryable:") and "not visible yet" in outcomes[first]
    assert outcomes[second].startswith("failed (retryable:")


async def test_a_final_error_is_not_dressed_as_retryable(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    connection_id = new_id()
    (only,) = await _failed_events(db, connection_id, 1)

    async def process(_db: Any, raw: dict[str, Any], **_: Any) -> str:
        raise Unprocessable("a rule refused it")

    monkeypatch.setattr(service, "process", process)
    with pytest.raises(Unprocessable):
        await reprocess_webhooks.reprocess(db, connection_id=connection_id, limit=10, dry_run=False)
    assert (await db.webhook_events_raw.find_one({"_id": only}))["status"] == "failed"


async def test_deliveries_older_versions_set_aside_for_an_inactive_connection_are_filed_on_request(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any
) -> None:
    """Before 25179f4 a deactivated connection's deliveries were kept raw, "ignored" as
    ["connection inactive"], and never filed: `run --dropped-inactive` files them now, and leaves
    other ignored deliveries (a group's message, say) alone."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_open_connection(client, tenant, db)
    phone = unique_phone()
    set_aside, unrelated = f"w:9:{new_id()}", f"w:9:{new_id()}"
    for raw_id, key, result in (
        (set_aside, "3EB0SETASIDE01", ["connection inactive"]),
        (unrelated, "3EB0GROUP01", ["ignored: group"]),
    ):
        await db.webhook_events_raw.insert_one(
            {
                "_id": raw_id,
                "connection_id": conn["_id"],
                "reseller_id": tenant.id,
                "provider": "evolution",
                "body": json.dumps(text_upsert(phone, key, "mandei quando a conexão estava desativada", stamped=True)),
                "received_at": utcnow(),
                "status": "ignored",
                "result": result,
            }
        )

    results = await reprocess_webhooks.reprocess(
        db, connection_id=conn["_id"], limit=10, dry_run=False, dropped_inactive=True
    )

    assert [(raw.id, outcome) for raw, outcome in results] == [(set_aside, "processed")]
    r = await client.get(f"{API}/tickets", params={"status": "espera"}, headers=tenant.agents[0]["headers"])
    [ticket] = [t for t in r.json()["items"] if t["client_phone"] == phone]
    r = await client.get(f"{API}/tickets/{ticket['id']}/messages", headers=tenant.agents[0]["headers"])
    assert [m["body"] for m in r.json()["items"]] == ["mandei quando a conexão estava desativada"]
    assert (await db.webhook_events_raw.find_one({"_id": unrelated}))["status"] == "ignored"
    # Once filed it is "processed": a second run finds nothing more to do.
    assert (
        await reprocess_webhooks.reprocess(
            db, connection_id=conn["_id"], limit=10, dry_run=False, dropped_inactive=True
        )
        == []
    )


async def test_lid_chats_and_reactions_older_versions_ignored_are_filed_on_request_and_groups_stay_ignored(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any
) -> None:
    """Before 045a36e a chat WhatsApp named by its LID alone was "not a person's chat", and a
    reaction "not a conversation message": `run --set-aside` files them now; a group's message,
    ignored for the same words, is processed and stays ignored."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    conn = await make_open_connection(client, tenant, db)
    lid = "2" + unique_phone()[-14:]
    lid_message = text_upsert(lid, "3EB0LIDOLD01", "mandei pelo LID", stamped=True)
    lid_message["data"]["key"]["remoteJid"] = f"{lid}@lid"
    group = text_upsert("120363000000000000", "3EB0GROUPOLD1", "oi grupo", stamped=True)
    group["data"]["key"]["remoteJid"] = "120363000000000000@g.us"
    reaction = text_upsert(lid, "3EB0REACTOLD1", "", stamped=True)
    reaction["data"]["key"]["remoteJid"] = f"{lid}@lid"
    reaction["data"]["message"] = {"reactionMessage": {"key": {"id": "3EB0LIDOLD01"}, "text": "👍"}}
    reaction["data"]["messageType"] = "reactionMessage"
    chat, other = f"w:{new_id()}", f"w:{new_id()}"  # two lanes of their own
    stored = {
        f"{chat}:1": (lid_message, ["ignored: not a person's chat"]),
        f"{chat}:2": (reaction, ["ignored: reactionMessage is not a conversation message"]),
        f"{other}:1": (group, ["ignored: not a person's chat"]),
    }
    for raw_id, (payload, result) in stored.items():
        await db.webhook_events_raw.insert_one(
            {
                "_id": raw_id,
                "connection_id": conn["_id"],
                "reseller_id": tenant.id,
                "provider": "evolution",
                "body": json.dumps(payload),
                "received_at": utcnow(),
                "status": "ignored",
                "result": result,
            }
        )

    results = await reprocess_webhooks.reprocess(
        db, connection_id=conn["_id"], limit=10, dry_run=False, dropped_inactive=True
    )

    outcomes = {raw.id: outcome for raw, outcome in results}
    assert outcomes == {f"{chat}:1": "processed", f"{chat}:2": "processed", f"{other}:1": "ignored"}
    assert [raw.id for raw, _ in results if raw.id.startswith(chat)] == [f"{chat}:1", f"{chat}:2"]  # in order
    r = await client.get(f"{API}/tickets", params={"status": "espera"}, headers=tenant.agents[0]["headers"])
    [ticket] = r.json()["items"]
    r = await client.get(f"{API}/tickets/{ticket['id']}/messages", headers=tenant.agents[0]["headers"])
    assert [(m["type"], m["body"]) for m in r.json()["items"]] == [("text", "mandei pelo LID"), ("reaction", "👍")]
