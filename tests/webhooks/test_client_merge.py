"""Merging the two clients WhatsApp's LID split makes of one person (backend/clients/merge.py),
through the real webhook and API, with the fake Evolution as its own process: the person is known
by number (a ticket open with an agent); their phone then writes on a LID chat that carries no
number, which opens a second client and ticket. After the owner merges the LID client into the
known one, the LID chat's messages go to the known client's open ticket, the history shows both
clients' tickets, and the merged client leaves the contacts list; nothing moved or was deleted.
Competitors injected: a message between the merge's check and its claim, another merge decided
first, an older copy of the merged client written back over the merge's pointer, an opposite
merge, and a kill between the merge's two documents. The merged client's survey, asked before the
merge, is still answered from its chat."""

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from backend.clients import merge
from backend.core import natural_keys
from tests.automation.helpers import left
from tests.factories import API, Tenant, collection_counts, make_tenant, unique_phone
from tests.fakes.harness import FakeEvolution, make_connection
from tests.webhooks.evolution_shapes import clients_of, key_id, pn_key, post, shown, thread, tickets_of, upsert


def _lid() -> str:
    return "2" + unique_phone()[-14:]


def _text(key: dict[str, Any], text: str) -> dict[str, Any]:
    return upsert(key, {"conversation": text}, "conversation", push_name="Maria")


def _lid_only(lid: str) -> dict[str, Any]:
    return {"remoteJid": f"{lid}@lid", "fromMe": False, "id": key_id(), "addressingMode": "lid"}


async def _merge(client: httpx.AsyncClient, headers: dict[str, str], merged: str, into: str) -> httpx.Response:
    return await client.post(f"{API}/clients/{merged}/merge", json={"into_client_id": into}, headers=headers)


@dataclass
class Split:
    """One person as two clients: known by `number` (`known`, open with an agent), then by `lid`
    alone (`split`, the LID client's ticket)."""

    tenant: Tenant
    conn: dict[str, Any]
    lid: str
    number: str
    known: dict[str, Any]
    split: dict[str, Any]


async def _split(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    *,
    close: str = "",
    config: dict[str, Any] | None = None,
) -> Split:
    """A company (its config patched with `config`) whose client WhatsApp split in two; `close`:
    "split" or "both" tickets finalized (a merge wants the merged client's closed)."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    if config is not None:
        r = await client.patch(f"{API}/reseller-config", json=config, headers=tenant.headers)
        assert r.status_code == 200, r.text
    conn = await make_connection(client, tenant, evolution)
    number, lid = unique_phone(), _lid()
    assert (await post(client, db, conn, _text(pn_key(number), "oi, sou a Maria")))["status"] == "processed"
    (known,) = await tickets_of(client, tenant)
    r = await client.post(f"{API}/tickets/{known['id']}/assume", headers=tenant.agents[0]["headers"])
    assert r.status_code == 200, r.text
    assert (await post(client, db, conn, _text(_lid_only(lid), "mandei pelo outro chat")))["status"] == "processed"
    (split,) = [t for t in await tickets_of(client, tenant) if t["id"] != known["id"]]
    assert split["client_id"] != known["client_id"] and split["client_phone"] == ""
    for ticket in {"split": [split], "both": [known, split]}.get(close, []):
        r = await client.post(f"{API}/tickets/{ticket['id']}/finalize", headers=tenant.headers)
        assert r.status_code == 200, r.text
    return Split(tenant, conn, lid, number, known, split)


async def test_a_lid_client_merged_into_the_known_one_has_its_chat_filed_there_and_its_history_shown(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    s = await _split(client, admin_headers, evolution, db)
    tenant, conn = s.tenant, s.conn
    lid, known, split = s.lid, s.known, s.split
    owner, agent = tenant.headers, tenant.agents[0]["headers"]

    # Refused while the LID client's ticket is open; by an agent; into itself; across tenants.
    r = await _merge(client, owner, split["client_id"], known["client_id"])
    assert r.status_code == 409 and r.json()["detail"]["ticket_id"] == split["id"], r.text
    assert (await _merge(client, agent, split["client_id"], known["client_id"])).status_code == 403
    assert (await _merge(client, owner, known["client_id"], known["client_id"])).status_code == 422
    other = await make_tenant(client, admin_headers, agents=0)
    assert (await _merge(client, other.headers, split["client_id"], known["client_id"])).status_code == 404
    assert (await _merge(client, owner, split["client_id"], "nope")).status_code == 404
    assert await natural_keys.lookup(db, merge.MERGE_KEY, tenant.id, split["client_id"]) is None

    r = await client.post(f"{API}/tickets/{split['id']}/finalize", headers=owner)
    assert r.status_code == 200, r.text
    before = await collection_counts(db)
    r = await _merge(client, owner, split["client_id"], known["client_id"])
    assert r.status_code == 200, r.text
    assert r.json()["id"] == known["client_id"]
    again = await _merge(client, owner, split["client_id"], known["client_id"])  # a second click
    assert again.status_code == 200 and again.json()["id"] == known["client_id"]
    kept = await db.users.find_one({"_id": known["client_id"]})
    assert kept["whatsapp_lid"] == lid  # what it lacked, from the merged one
    assert (await db.users.find_one({"_id": split["client_id"]}))["merged_into"] == known["client_id"]
    assert [c["id"] for c in await clients_of(client, tenant)] == [known["client_id"]]
    exported = (await client.get(f"{API}/clients/export.csv", headers=owner)).text.splitlines()
    assert len(exported) == 2 and "Maria" in exported[1]  # the header and the client kept
    merged_read = await client.get(f"{API}/clients/{split['client_id']}", headers=owner)
    assert merged_read.json()["merged_into"] == known["client_id"]

    # The LID chat writes again: into the known client's open ticket, no new ticket.
    assert (await post(client, db, conn, _text(_lid_only(lid), "e agora?")))["status"] == "processed"
    tickets = await tickets_of(client, tenant)
    assert sorted(t["id"] for t in tickets) == sorted([known["id"], split["id"]])
    assert shown(await thread(client, tenant, known["id"]))[-1] == ("in", "text", "e agora?")

    # The agent answering the known ticket sees the LID client's ticket in the history, and its thread.
    r = await client.get(f"{API}/tickets/{known['id']}/history", headers=agent)
    assert [t["id"] for t in r.json()["items"]] == [split["id"]], r.text
    r = await client.get(f"{API}/tickets/{known['id']}/history/{split['id']}/messages", headers=agent)
    assert r.status_code == 200 and [m["body"] for m in r.json()["items"]] == ["mandei pelo outro chat"]

    # Nothing was moved or deleted: only the LID chat's new message was added.
    after = await collection_counts(db)
    assert after["tickets"] == before["tickets"] and after["messages"] == before["messages"] + 1
    assert after["users"] == before["users"]


async def test_a_merge_is_decided_once_and_a_merged_client_is_no_target(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    s = await _split(client, admin_headers, evolution, db, close="split")
    tenant, known, split = s.tenant, s.known, s.split
    owner = tenant.headers
    third = await client.post(f"{API}/clients", json={"name": "Outra", "phone": unique_phone()}, headers=owner)
    assert third.status_code == 201, third.text
    # A merge into another client decided first (its key claimed; its document not written yet,
    # as when that merge's process died in between): this one is refused, naming it.
    await natural_keys.claim(db, merge.MERGE_KEY, tenant.id, split["client_id"], target=third.json()["id"])
    r = await _merge(client, owner, split["client_id"], known["client_id"])
    assert r.status_code == 409 and r.json()["detail"]["client_id"] == third.json()["id"], r.text
    assert (await db.users.find_one({"_id": split["client_id"]})).get("merged_into") is None
    # Its repeat finishes it (the document now says it) ...
    r = await _merge(client, owner, split["client_id"], third.json()["id"])
    assert r.status_code == 200, r.text
    assert (await db.users.find_one({"_id": split["client_id"]}))["merged_into"] == third.json()["id"]
    # ... and a merged client is no target: merge into the one it was merged into.
    r = await _merge(client, owner, known["client_id"], split["client_id"])
    assert r.status_code == 409 and r.json()["detail"]["client_id"] == third.json()["id"], r.text


async def test_a_message_between_the_merge_s_check_and_its_claim_stays_visible_and_the_next_goes_to_the_kept(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = await _split(client, admin_headers, evolution, db, close="split")
    tenant, conn = s.tenant, s.conn
    lid, known, split = s.lid, s.known, s.split
    owner = tenant.headers
    real_check = merge.tickets.open_tickets_of_client
    raced: list[str] = []

    async def message_in_between(*args: Any, **kwargs: Any) -> Any:
        found = await real_check(*args, **kwargs)
        if not raced:  # checked: no open ticket; the LID chat writes before the key is claimed
            raced.append((await post(client, db, conn, _text(_lid_only(lid), "escrevi no meio")))["status"])
        return found

    monkeypatch.setattr(merge.tickets, "open_tickets_of_client", message_in_between)
    r = await _merge(client, owner, split["client_id"], known["client_id"])
    assert raced == ["processed"] and r.status_code == 200, r.text
    # Filed under the merged client (it was not merged yet), in a new ticket waiting in the queue: seen.
    (late,) = [t for t in await tickets_of(client, tenant) if t["id"] not in (known["id"], split["id"])]
    assert late["status"] == "espera" and late["client_id"] == split["client_id"]
    assert shown(await thread(client, tenant, late["id"])) == [("in", "text", "escrevi no meio")]
    # The next message of the chat: the kept client's open ticket.
    assert (await post(client, db, conn, _text(_lid_only(lid), "e depois"))).get("status") == "processed"
    assert shown(await thread(client, tenant, known["id"]))[-1] == ("in", "text", "e depois")


async def test_a_copy_without_the_pointer_written_back_over_the_merge_is_repaired_by_its_read_back(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FerretDB writes every update's whole document: ingestion completing the merged client at the
    merge's moment can put back a copy without `merged_into`. Injected right after the merge's
    write; its read-back writes the pointer again."""
    s = await _split(client, admin_headers, evolution, db, close="split")
    tenant, conn = s.tenant, s.conn
    lid, known, split = s.lid, s.known, s.split
    owner = tenant.headers
    stale = await db.users.find_one({"_id": split["client_id"]})
    real_update = merge.users.update_doc
    undone: list[bool] = []

    async def undone_once(db_: Any, scope: Any, user_id: str, changes: dict[str, Any]) -> Any:
        written = await real_update(db_, scope, user_id, changes)
        if "merged_into" in changes and not undone:
            undone.append(True)
            await db_.users.replace_one({"_id": user_id}, stale)  # the concurrent writer's older copy
        return written

    monkeypatch.setattr(merge.users, "update_doc", undone_once)
    r = await _merge(client, owner, split["client_id"], known["client_id"])
    assert undone == [True] and r.status_code == 200, r.text
    assert (await db.users.find_one({"_id": split["client_id"]}))["merged_into"] == known["client_id"]
    assert (await post(client, db, conn, _text(_lid_only(lid), "cheguei"))).get("status") == "processed"
    assert shown(await thread(client, tenant, known["id"]))[-1] == ("in", "text", "cheguei")


async def test_a_conversation_started_with_a_merged_client_is_the_kept_one_s(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    s = await _split(client, admin_headers, evolution, db, close="both")
    tenant, conn = s.tenant, s.conn
    known, split = s.known, s.split
    owner = tenant.headers
    assert (await _merge(client, owner, split["client_id"], known["client_id"])).status_code == 200
    body = {
        "client_id": split["client_id"],
        "department_id": tenant.departments[0]["id"],
        "connection_id": conn["id"],
        "message": "Olá, voltando ao seu pedido",
    }
    r = await client.post(f"{API}/tickets", json=body, headers=tenant.agents[0]["headers"])
    assert r.status_code == 201, r.text
    assert r.json()["client_id"] == known["client_id"]  # where the client's answer will arrive


async def test_of_two_opposite_merges_at_one_moment_one_stands_and_every_chat_goes_to_its_client(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A into B checks B unmerged; B into A runs to its end before A's claim: each merge's check
    passed, and the pair's key (merge.MERGE_PAIR_KEY) lets one of them happen: the one that
    claimed it first. The other answers 409 naming the client to merge into, and no loop is
    made: every chat goes to the one kept, whichever key it resolves by."""
    s = await _split(client, admin_headers, evolution, db, close="both")
    tenant, conn = s.tenant, s.conn
    lid, known, split, number = s.lid, s.known, s.split, s.number
    owner = tenant.headers
    real_check = merge.tickets.open_tickets_of_client
    opposite: list[int] = []

    async def opposite_first(*args: Any, **kwargs: Any) -> Any:
        if not opposite:
            monkeypatch.setattr(merge.tickets, "open_tickets_of_client", real_check)
            opposite.append((await _merge(client, owner, known["client_id"], split["client_id"])).status_code)
        return await real_check(*args, **kwargs)

    monkeypatch.setattr(merge.tickets, "open_tickets_of_client", opposite_first)
    refused = await _merge(client, owner, split["client_id"], known["client_id"])
    assert opposite == [200]
    assert refused.status_code == 409 and refused.json()["detail"]["client_id"] == split["client_id"], refused.text
    one = split["client_id"]
    assert (await db.users.find_one({"_id": one})).get("merged_into") is None
    assert (await post(client, db, conn, _text(_lid_only(lid), "pelo LID")))["status"] == "processed"
    assert (await post(client, db, conn, _text(pn_key(number), "pelo número")))["status"] == "processed"
    (opened,) = [t for t in await tickets_of(client, tenant) if t["id"] not in (known["id"], split["id"])]
    assert opened["client_id"] == one
    assert [m[2] for m in shown(await thread(client, tenant, opened["id"]))] == ["pelo LID", "pelo número"]


async def test_a_delivery_naming_the_lid_with_the_known_number_marks_the_two_clients_the_same_person(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    s = await _split(client, admin_headers, evolution, db)
    tenant, conn = s.tenant, s.conn
    lid, known, split, number = s.lid, s.known, s.split, s.number
    listed = {c["id"]: c for c in await clients_of(client, tenant)}
    assert listed[split["client_id"]]["same_person_as"] is None  # nothing said so yet
    both = {**_lid_only(lid), "remoteJidAlt": f"{number}@s.whatsapp.net"}
    assert (await post(client, db, conn, _text(both, "agora com o número")))["status"] == "processed"
    listed = {c["id"]: c for c in await clients_of(client, tenant)}
    assert listed[split["client_id"]]["same_person_as"] == known["client_id"]
    assert listed[known["client_id"]]["same_person_as"] is None
    # Only offered: the chat stays with the LID's client until the owner merges them.
    assert shown(await thread(client, tenant, split["id"]))[-1] == ("in", "text", "agora com o número")
    assert listed[split["client_id"]]["merged_into"] is None


class _Killed(BaseException):
    """The process dies here (no `except Exception` on the way catches it)."""


async def test_a_merge_killed_between_the_kept_client_s_history_and_the_pointer_is_finished_by_its_repeat(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = await _split(client, admin_headers, evolution, db, close="split")
    tenant, known, split = s.tenant, s.known, s.split
    real_update = merge.users.update_doc

    async def dies_at_the_pointer(db_: Any, scope: Any, user_id: str, changes: dict[str, Any]) -> Any:
        if "merged_into" in changes:
            raise _Killed
        return await real_update(db_, scope, user_id, changes)

    monkeypatch.setattr(merge.users, "update_doc", dies_at_the_pointer)
    with pytest.raises(_Killed):
        await _merge(client, tenant.headers, split["client_id"], known["client_id"])
    monkeypatch.setattr(merge.users, "update_doc", real_update)
    # What the dead merge left: the kept client's history shows the merged ticket, and the merged
    # client is still a contact of its own (no pointer), where the owner merges it again.
    history = f"{API}/tickets/{known['id']}/history"
    assert [t["id"] for t in (await client.get(history, headers=tenant.headers)).json()["items"]] == [split["id"]]
    assert split["client_id"] in [c["id"] for c in await clients_of(client, tenant)]
    # Its repeat finishes it: the merged client's chat goes to the kept client's conversation.
    assert (await _merge(client, tenant.headers, split["client_id"], known["client_id"])).status_code == 200
    assert split["client_id"] not in [c["id"] for c in await clients_of(client, tenant)]
    assert (await post(client, db, s.conn, _text(_lid_only(s.lid), "já mesclado?")))["status"] == "processed"
    assert shown(await thread(client, tenant, known["id"]))[-1] == ("in", "text", "já mesclado?")
    assert [t["id"] for t in (await client.get(history, headers=tenant.headers)).json()["items"]] == [split["id"]]


async def test_the_merged_client_s_survey_is_answered_from_its_chat_after_the_merge(
    client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution, db: Any
) -> None:
    """The LID client's ticket was finalized with a survey question on the LID chat; the owner
    merges the pair; the digit that answers it then comes from a chat whose client is the kept
    one. It still rates the ticket it was asked for, not a new conversation of the kept client."""
    csat = {"csat_enabled": True, "csat_window_hours": 2, "csat_message": "Que nota (1 a 5)?"}
    s = await _split(client, admin_headers, evolution, db, config=csat)
    agent = s.tenant.agents[0]["headers"]
    assert (await client.post(f"{API}/tickets/{s.split['id']}/assume", headers=agent)).status_code == 200
    for ticket in (s.split, s.known):  # both attended, so both asked
        assert (await client.post(f"{API}/tickets/{ticket['id']}/finalize", headers=agent)).status_code == 200
    await left(db, s.split["id"], "survey")  # the question reached the LID chat
    r = await _merge(client, s.tenant.headers, s.split["client_id"], s.known["client_id"])
    assert r.status_code == 200, r.text
    raw = await post(client, db, s.conn, _text(_lid_only(s.lid), "5"))
    assert raw["result"][0].startswith(f"rating 5 of ticket {s.split['id']}"), raw["result"]
    rated = await client.get(f"{API}/tickets/{s.split['id']}", headers=s.tenant.headers)
    assert (rated.json()["status"], rated.json()["rating"]) == ("finalizado", 5)
    assert len(await tickets_of(client, s.tenant)) == 2  # no conversation opened for the digit
