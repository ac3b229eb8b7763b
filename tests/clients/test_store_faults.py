"""Client merge and client edits while the store loses one of their writes, and with a competitor
let in between two of a merge's writes.

The backend reaches the store through a relay (tests/tcp_relay.py) that stalls the one connection
carrying a chosen write: the command never runs (`lose="request"`) or it runs and its answer never
comes back (`lose="reply"`); with MONGO_SOCKET_TIMEOUT_MS the request then fails after 1.5 s (503
"the database did not answer; retry", over the real port). Then the owner does what the UI does:
clicks again.

The person: WhatsApp split one person in two clients (backend/clients/merge.py). Known by number
(`known`, its ticket open), then by a LID chat that carries no number (`split`, its ticket
finalized, so the merge is allowed). The owner merges `split` into `known`. The writes a merge
makes, in order (merge.merge): the key naming the one way the pair merges,
"client-merge-pair:<tenant>:<lower id>:<higher id>" (`pair`, natural_keys insert); its decision,
the key "client-merge:<tenant>:<merged>" (`claim`, natural_keys insert); the kept client's
`merged_ids` and what it lacked (its LID) (`history`, users update); the merged client's pointer
`merged_into` (`pointer`, users update). A client edit
(clients.service.update) giving a LID client its number writes the phone key (`phone_key`,
natural_keys insert), then the client (`document`, users update).

The end state must hold, whatever was lost: the merge is done once (the repeat answers 200 or a
clear 409, never a second half-merge; the kept client names the merged one once); no pointer
cycle; every ticket and message of both clients reachable from the surviving client (its ticket's
history and their threads, GET /clients/{id}, the contacts list, the tickets list); and the
person's next WhatsApp messages, from either chat, through the webhook and the real processor,
land in one open ticket of the surviving client that the inbox lists, `/tickets/counts` counts and
open screens were told of: exactly one open ticket for the person.

Competitors are let in deterministically: the merge's click loses a write (so it stops between
two writes and answers 503), the competitor runs to its end, then the click is repeated. Two
exceptions hold a step in-process instead (a slow store that does answer; the relay can only make
a write fail, and a failed step re-checks on its repeat): the opposite merge "at one moment" (the
first merge's pointer write held while the opposite merge runs), and a client message racing the
finalize of the merged client's last ticket (its move to the next ticket held while the merge
runs)."""

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from backend.clients import merge
from backend.clients.phones import key_form
from backend.tickets import service as tickets_service
from backend.users import service as users_service
from backend.webhooks.service import message_id_for
from tests.factories import API, Tenant, make_tenant, unique, unique_phone
from tests.fakes.harness import (
    FakeEvolution,
    app,
    backend_port,
    evolution,
    last_within,
    make_connection,
    settings,
)
from tests.tcp_relay import Lose, StoreProxy, command_marker, relayed, string_element, unanswered
from tests.webhooks.helpers import settled

__all__ = ["app", "backend_port", "evolution", "settings"]

WAIT = 30.0  # a delivery's processing, a trap's springing, counts converging (a loaded 2-core box)
LOSSES: list[Lose] = ["request", "reply"]
OPEN = ("espera", "atendendo")
STATUSES = ("espera", "atendendo", "finalizado")
MERGE_WRITES = ["pair", "claim", "history", "pointer"]
EDIT_WRITES = ["phone_key", "document"]


@pytest.fixture(scope="module")
def settings_overrides(store_relay: StoreProxy) -> dict[str, Any]:
    return {
        **relayed(store_relay),
        "WEBHOOK_BACKOFF_BASE_SECONDS": 0.1,
        "TICKET_SWEEP_SECONDS": 0.5,
    }


@dataclass
class Company:
    tenant: Tenant
    conn: dict[str, Any]

    @property
    def owner(self) -> dict[str, str]:
        return self.tenant.headers

    @property
    def agent(self) -> dict[str, str]:
        headers: dict[str, str] = self.tenant.agents[0]["headers"]
        return headers


@pytest.fixture(scope="module")
async def company(client: httpx.AsyncClient, admin_headers: dict[str, str], evolution: FakeEvolution) -> Company:
    """One tenant for the module (one department, one agent, one WhatsApp connection); every test
    has a person of its own."""
    tenant = await make_tenant(client, admin_headers, agents=1)
    return Company(tenant, await make_connection(client, tenant, evolution))


@dataclass
class Person:
    """One person as two clients: `known` by number (its ticket `known_ticket`), `split` by a LID
    chat alone (its ticket `split_ticket`, finalized). `sent`: every message the person sent."""

    name: str
    number: str
    lid: str
    known: str
    split: str
    known_ticket: str
    split_ticket: str
    sent: list[str]


def _lid() -> str:
    return "2" + f"{uuid.uuid4().int % 10**14:014d}"


async def _say(
    evolution: FakeEvolution, direct: Any, company: Company, text: str, *, name: str, number: str = "", lid: str = ""
) -> str:
    """The person writes on WhatsApp (by number, or on a LID chat without the number): the fake
    posts the webhook, the real processor files it. Returns the stored message's id."""
    extra: dict[str, Any] = {"lid": lid} if lid else {}
    result = await evolution.inbound(company.conn["instance_name"], number, text, push_name=name, **extra)
    raw = await settled(direct, result, within=WAIT)
    assert raw["status"] == "processed", raw
    message_id = message_id_for(company.conn["id"], result["key_id"])
    assert await direct.messages.find_one({"_id": message_id}) is not None, f"{text!r} processed, not stored: {raw}"
    return message_id


async def _ticket_of(direct: Any, message_id: str) -> dict[str, Any]:
    message = await direct.messages.find_one({"_id": message_id})
    ticket: dict[str, Any] = await direct.tickets.find_one({"_id": message["ticket_id"]})
    return ticket


async def _move(client: httpx.AsyncClient, headers: dict[str, str], ticket_id: str, action: str) -> None:
    r = await client.post(f"{API}/tickets/{ticket_id}/{action}", headers=headers)
    assert r.status_code == 200, (action, r.text)


async def _person(
    client: httpx.AsyncClient, direct: Any, evolution: FakeEvolution, company: Company, *, close_known: bool = False
) -> Person:
    name, number, lid = unique("Maria "), unique_phone(), _lid()
    first = await _say(evolution, direct, company, "oi, sou a Maria", name=name, number=number)
    second = await _say(evolution, direct, company, "mandei pelo outro chat", name=name, lid=lid)
    known, split = await _ticket_of(direct, first), await _ticket_of(direct, second)
    assert known["client_id"] != split["client_id"], "WhatsApp's LID split did not happen"
    assert (known["status"], split["status"]) == ("espera", "espera"), (known, split)
    await _move(client, company.owner, split["_id"], "finalize")
    if close_known:
        await _move(client, company.owner, known["_id"], "finalize")
    return Person(
        name, number, lid, known["client_id"], split["client_id"], known["_id"], split["_id"], [first, second]
    )


async def _merge(browser: httpx.AsyncClient, company: Company, merged: str, into: str) -> httpx.Response:
    return await browser.post(
        f"{API}/clients/{merged}/merge", json={"into_client_id": into}, headers=company.owner, timeout=60
    )


def _merge_write(write: str, company: Company, merged: str, into: str) -> tuple[bytes, ...]:
    """The bytes only the chosen write of the merge of `merged` into `into` carries."""
    markers: dict[str, tuple[bytes, ...]] = {
        "pair": (
            command_marker("insert", "natural_keys"),
            string_element("_id", ":".join([merge.MERGE_PAIR_KEY, company.tenant.id, *sorted((merged, into))])),
        ),
        "claim": (
            command_marker("insert", "natural_keys"),
            string_element("_id", f"{merge.MERGE_KEY}:{company.tenant.id}:{merged}"),
        ),
        "pointer": (
            command_marker("update", "users"),
            string_element("_id", merged),
            string_element("merged_into", into),
        ),
        # The kept client's $set names its `merged_ids` (an array element).
        "history": (command_marker("update", "users"), string_element("_id", into), b"\x04merged_ids\x00"),
    }
    return markers[write]


async def _sprung(sprung: asyncio.Event, click: "asyncio.Task[httpx.Response]", what: str) -> None:
    """Waits until the trap sprang (or the click answered without it: a failure naming what)."""
    waiter = asyncio.ensure_future(sprung.wait())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait({click, waiter}, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if not sprung.is_set():
        answer = (await click).text if click.done() else "still under way"
        raise AssertionError(f"the trap on the {what} never sprang (the click answered {answer})")


async def _lost_click(
    browser: httpx.AsyncClient,
    proxy: StoreProxy,
    company: Company,
    *,
    merged: str,
    into: str,
    write: str,
    lose: Lose,
    meanwhile: Callable[[], Awaitable[None]] | None = None,
) -> httpx.Response:
    """The owner clicks "merge" and the store loses the merge's `write`: the click answers 503.
    `meanwhile`: run once the write was swallowed (or ran unanswered), while the click hangs."""
    sprung = proxy.stall_next(*_merge_write(write, company, merged, into), lose=lose)
    click = asyncio.ensure_future(_merge(browser, company, merged, into))
    await _sprung(sprung, click, f"merge's {write}")
    if meanwhile is not None:
        await meanwhile()
    first = await click
    assert unanswered(first), f"the merge lost its {write} ({lose}) and answered {first.status_code}: {first.text}"
    return first


async def _merge_until_done(browser: httpx.AsyncClient, company: Company, merged: str, into: str) -> None:
    """What the owner does after an unanswered click: clicks again. A clear 409 naming the merged
    client's open ticket is followed as the UI says (that ticket finalized, then merge again).
    Then one more click: the same answer, nothing more written."""
    again = await _merge(browser, company, merged, into)
    if again.status_code == 409:
        detail = again.json()["detail"]
        assert isinstance(detail, dict) and detail.get("ticket_id"), f"a 409 that does not say why: {again.text}"
        r = await browser.post(f"{API}/tickets/{detail['ticket_id']}/finalize", headers=company.owner)
        assert r.status_code == 200, r.text
        again = await _merge(browser, company, merged, into)
    assert again.status_code == 200 and again.json()["id"] == into, again.text
    repeat = await _merge(browser, company, merged, into)
    assert repeat.status_code == 200 and repeat.json()["id"] == into, repeat.text


async def _root(direct: Any, client_id: str) -> str:
    """The client at the end of `client_id`'s `merged_into` pointers; fails on a cycle."""
    path = [client_id]
    while True:
        doc = await direct.users.find_one({"_id": path[-1]})
        into = doc.get("merged_into") if doc is not None else None
        if not into:
            return path[-1]
        assert into not in path, f"a pointer cycle: {' -> '.join([*path, into])}"
        path.append(into)


async def _get(browser: httpx.AsyncClient, headers: dict[str, str], path: str, **params: Any) -> Any:
    r = await browser.get(f"{API}{path}", params=params, headers=headers)
    assert r.status_code == 200, (path, r.status_code, r.text)
    return r.json()


async def _counts_agree(browser: httpx.AsyncClient, direct: Any, company: Company) -> None:
    """`/tickets/counts` says what the tenant's stored tickets say (within the sweep's bound)."""

    async def both() -> tuple[dict[str, int], dict[str, int]]:
        counted = await _get(browser, company.owner, "/tickets/counts")
        stored = {
            s: int(await direct.tickets.count_documents({"reseller_id": company.tenant.id, "status": s}))
            for s in STATUSES
        }
        return {s: int(counted[s]) for s in STATUSES}, stored

    async def agree() -> tuple[dict[str, int], dict[str, int]] | None:
        counted, stored = await both()
        return (counted, stored) if counted == stored else None

    found = await last_within(agree, timeout=WAIT) or await both()
    assert found[0] == found[1], f"/tickets/counts says {found[0]}, the tenant's tickets {found[1]}"


async def _check_one_person(
    browser: httpx.AsyncClient,
    direct: Any,
    evolution: FakeEvolution,
    company: Company,
    p: Person,
    *,
    survivor: str,
    other: str,
) -> str:
    """The end state of a merge of `other` into `survivor` (module docstring). Returns the open ticket."""
    group = [survivor, other]
    # Done once, no cycle: `other` names the survivor, the survivor nobody; the survivor's
    # history names `other` once; the merge's key says the same.
    assert await _root(direct, other) == survivor and await _root(direct, survivor) == survivor
    docs = {d["_id"]: d for d in await direct.users.find({"_id": {"$in": group}}).to_list(None)}
    assert docs[survivor].get("merged_ids", []).count(other) == 1, docs[survivor]
    assert survivor not in docs[other].get("merged_ids", []), docs[other]
    key = await direct.natural_keys.find_one({"_id": f"{merge.MERGE_KEY}:{company.tenant.id}:{other}"})
    assert key is not None and key["target"] == survivor, key
    assert docs[survivor].get("whatsapp_lid") == p.lid, f"the survivor lacks the LID: {docs[survivor]}"

    # The clients as the API shows them: the merged one names the survivor; the contacts list
    # (search by the person's name) shows the survivor alone; its number finds the survivor.
    assert (await _get(browser, company.owner, f"/clients/{other}"))["merged_into"] == survivor
    assert (await _get(browser, company.owner, f"/clients/{survivor}"))["merged_into"] is None
    listed = await _get(browser, company.owner, "/clients", q=p.name, limit=200)
    assert [c["id"] for c in listed["items"]] == [survivor], listed
    by_number = await _get(browser, company.owner, "/clients", phone=p.number)
    assert [c["id"] for c in by_number["items"]] == [survivor], by_number

    # The person writes again, on the LID chat and by number: one open ticket of the survivor.
    later = [
        await _say(evolution, direct, company, f"depois da mesclagem {unique('')}", name=p.name, lid=p.lid),
        await _say(evolution, direct, company, f"pelo número {unique('')}", name=p.name, number=p.number),
    ]
    p.sent.extend(later)
    landed = {(await _ticket_of(direct, m))["_id"] for m in later}
    assert len(landed) == 1, f"the person's next two messages went to {landed}: a split conversation"
    ticket_id = str(next(iter(landed)))
    ticket = await direct.tickets.find_one({"_id": ticket_id})
    assert ticket["client_id"] == survivor and ticket["status"] in OPEN, ticket
    opened = await direct.tickets.find(
        {"reseller_id": company.tenant.id, "client_id": {"$in": group}, "status": {"$in": list(OPEN)}}
    ).to_list(None)
    assert [t["_id"] for t in opened] == [ticket_id], (
        f"the person has {len(opened)} open tickets: "
        f"{[(t['_id'], t['client_id'], t['status'], t.get('agent_id')) for t in opened]}; "
        f"their next messages went to {ticket_id}"
    )

    # The inbox lists it (the agent's, by its status), the counts count it, screens were told.
    inbox = await _get(browser, company.agent, "/tickets", status=ticket["status"], limit=200)
    assert ticket_id in [t["id"] for t in inbox["items"]], f"open ticket {ticket_id} not in the agent's inbox"
    await _counts_agree(browser, direct, company)
    for message_id in later:
        told = await direct.tenant_events.count_documents({"type": "message.created", "message.id": message_id})
        assert told >= 1, f"message {message_id} stored, never announced (no message.created)"

    # Every ticket of both clients from the open one (its thread and its history's threads), and
    # every message the person sent in one of them, shown there.
    everything = {t["_id"] for t in await direct.tickets.find({"client_id": {"$in": group}}).to_list(None)}
    history = await _get(browser, company.agent, f"/tickets/{ticket_id}/history", limit=200)
    assert {t["id"] for t in history["items"]} | {ticket_id} == everything, (history, everything)
    shown: dict[str, str] = {}
    for other_ticket in everything:
        path = (
            f"/tickets/{ticket_id}/messages"
            if other_ticket == ticket_id
            else f"/tickets/{ticket_id}/history/{other_ticket}/messages"
        )
        page = await _get(browser, company.agent, path, limit=200)
        stored = await direct.messages.find({"ticket_id": other_ticket}, {"_id": 1}).to_list(None)
        assert sorted(m["id"] for m in page["items"]) == sorted(m["_id"] for m in stored), (other_ticket, page)
        shown.update({m["id"]: other_ticket for m in page["items"]})
    missing = [m for m in p.sent if m not in shown]
    assert not missing, f"messages the person sent, reachable from no ticket of the survivor: {missing}"

    # The tickets list (search by the person's name) shows them all.
    found = await _get(browser, company.owner, "/tickets", q=p.name, limit=200)
    assert {t["id"] for t in found["items"]} == everything, (found, everything)
    return ticket_id


# --- every write of a merge lost, then clicked again --------------------------------------------


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", MERGE_WRITES)
async def test_a_merge_that_loses_a_write_completes_once_when_clicked_again(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    direct: Any,
    store_proxy: StoreProxy,
    company: Company,
    write: str,
    lose: Lose,
) -> None:
    p = await _person(client, direct, evolution, company)
    await _lost_click(browser, store_proxy, company, merged=p.split, into=p.known, write=write, lose=lose)
    await _merge_until_done(browser, company, p.split, p.known)
    ticket_id = await _check_one_person(browser, direct, evolution, company, p, survivor=p.known, other=p.split)
    assert ticket_id == p.known_ticket  # the known client's conversation, still open, goes on


# --- a competitor between two of a merge's writes -----------------------------------------------

# Where the first click stops: the key claimed, no history and no pointer; or the history
# written, no pointer.
WINDOWS: dict[str, tuple[str, Lose]] = {"after_claim": ("history", "request"), "after_history": ("pointer", "request")}


@pytest.mark.parametrize(
    ("competitor", "window"),
    [
        ("inbound", "after_claim"),
        ("inbound_then_assume", "after_claim"),
        ("agent_starts", "after_claim"),
        ("inbound_then_finalize", "after_claim"),
        ("finalize_kept", "after_claim"),
        ("assume_kept", "after_claim"),
        ("inbound", "after_history"),
        ("agent_starts", "after_history"),
        ("finalize_kept", "after_history"),
    ],
)
async def test_a_competitor_between_two_of_a_merges_writes_leaves_one_conversation(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    direct: Any,
    store_proxy: StoreProxy,
    company: Company,
    competitor: str,
    window: str,
) -> None:
    """The merge stops between two writes (a lost write, 503); then the competitor runs to its
    end: the merged client's LID chat writes (and an agent assumes, or finalizes, the ticket it
    landed in), an agent starts a conversation with the merged client, or the kept client's open
    ticket is finalized or assumed; then the owner clicks merge again."""
    p = await _person(client, direct, evolution, company)
    write, lose = WINDOWS[window]
    await _lost_click(browser, store_proxy, company, merged=p.split, into=p.known, write=write, lose=lose)

    if competitor.startswith("inbound"):
        between = await _say(evolution, direct, company, f"escrevi no meio {unique('')}", name=p.name, lid=p.lid)
        p.sent.append(between)
        landed = await _ticket_of(direct, between)
        assert landed["status"] in OPEN, landed  # filed into an open ticket, never a finalized one
        if competitor == "inbound_then_assume":
            await _move(client, company.agent, landed["_id"], "assume")
        elif competitor == "inbound_then_finalize":
            await _move(client, company.owner, landed["_id"], "finalize")
    elif competitor == "agent_starts":
        body = {
            "client_id": p.split,
            "department_id": company.tenant.departments[0]["id"],
            "connection_id": company.conn["id"],
            "message": f"Olá, aqui é do suporte {unique('')}",
        }
        r = await client.post(f"{API}/tickets", json=body, headers=company.agent)
        assert r.status_code == 201, r.text
    elif competitor == "finalize_kept":
        await _move(client, company.owner, p.known_ticket, "finalize")
    else:
        assert competitor == "assume_kept", competitor
        await _move(client, company.agent, p.known_ticket, "assume")

    await _merge_until_done(browser, company, p.split, p.known)
    ticket_id = await _check_one_person(browser, direct, evolution, company, p, survivor=p.known, other=p.split)
    if competitor == "assume_kept":
        held = await direct.tickets.find_one({"_id": ticket_id})
        assert (ticket_id, held["status"]) == (p.known_ticket, "atendendo"), held
        assert held["agent_id"] == company.tenant.agents[0]["id"], held


@pytest.mark.parametrize("window", ["after_claim", "after_history"])
async def test_a_merge_stopped_by_a_lost_write_stays_within_reach_without_a_repeat(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    direct: Any,
    store_proxy: StoreProxy,
    company: Company,
    window: str,
) -> None:
    """The merge's click answers 503 and the owner closes the dialog. Either the merged client is
    still in the contacts list (the merge can be clicked again), or the merge is whole as the agent
    sees it: the kept client's open ticket shows the merged client's tickets in its history."""
    p = await _person(client, direct, evolution, company)
    write, lose = WINDOWS[window]
    await _lost_click(browser, store_proxy, company, merged=p.split, into=p.known, write=write, lose=lose)

    async def within_reach() -> tuple[list[str], list[str]] | None:
        listed = [c["id"] for c in (await _get(browser, company.owner, "/clients", q=p.name, limit=200))["items"]]
        history = await _get(browser, company.agent, f"/tickets/{p.known_ticket}/history", limit=200)
        shown = [t["id"] for t in history["items"]]
        return (listed, shown) if p.split in listed or p.split_ticket in shown else None

    reach = await last_within(within_reach, timeout=5.0)
    assert reach is not None, (
        f"the merged client {p.split} left the contacts list and the kept client's history lacks its "
        f"ticket {p.split_ticket}: merged_into={(await direct.users.find_one({'_id': p.split})).get('merged_into')}, "
        f"kept merged_ids={(await direct.users.find_one({'_id': p.known})).get('merged_ids')}"
    )
    # Whatever it showed, the person's next message is in an open ticket the inbox lists.
    later = await _say(evolution, direct, company, f"ainda aí? {unique('')}", name=p.name, lid=p.lid)
    ticket = await _ticket_of(direct, later)
    assert ticket["status"] in OPEN, ticket
    inbox = await _get(browser, company.agent, "/tickets", status=ticket["status"], limit=200)
    assert ticket["_id"] in [t["id"] for t in inbox["items"]]


async def test_a_message_racing_the_finalize_of_the_merged_clients_last_ticket_stays_with_the_person(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    direct: Any,
    company: Company,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The LID chat writes while its ticket is open; the message is stored in it (held here, in
    process, before its ticket's activity write) when the agent finalizes that ticket; its writer
    then finds the ticket finalized and moves it on (held again before it picks the ticket) while
    the owner merges the LID client into the known one, which the merge allows: the LID client has
    no open ticket now. Where the message ends must be the person's one open conversation."""
    name, number, lid = unique("Maria "), unique_phone(), _lid()
    first = await _say(evolution, direct, company, "oi, sou a Maria", name=name, number=number)
    second = await _say(evolution, direct, company, "mandei pelo outro chat", name=name, lid=lid)
    known, split = await _ticket_of(direct, first), await _ticket_of(direct, second)
    p = Person(name, number, lid, known["client_id"], split["client_id"], known["_id"], split["_id"], [first, second])
    real_touch, real_open_after = tickets_service.touch_activity, tickets_service.open_after
    stored, finalized, moving, merged = (asyncio.Event() for _ in range(4))

    async def held_touch(db_: Any, ticket: Any, **kwargs: Any) -> Any:
        if ticket.id == p.split_ticket and not stored.is_set():
            stored.set()  # the message is stored under the open ticket
            await finalized.wait()
        return await real_touch(db_, ticket, **kwargs)

    async def held_open_after(db_: Any, ticket: Any, **kwargs: Any) -> Any:
        if ticket.id == p.split_ticket and not moving.is_set():
            moving.set()  # its writer found the ticket finalized and is about to move it on
            await merged.wait()
        return await real_open_after(db_, ticket, **kwargs)

    monkeypatch.setattr(tickets_service, "touch_activity", held_touch)
    monkeypatch.setattr(tickets_service, "open_after", held_open_after)
    try:
        result = await evolution.inbound(
            company.conn["instance_name"], "", f"escrevi agora {unique('')}", push_name=name, lid=lid
        )
        raced = message_id_for(company.conn["id"], result["key_id"])
        p.sent.append(raced)
        await asyncio.wait_for(stored.wait(), WAIT)
        await _move(client, company.owner, p.split_ticket, "finalize")
        finalized.set()
        await asyncio.wait_for(moving.wait(), WAIT)
        r = await _merge(browser, company, p.split, p.known)
        assert r.status_code == 200, r.text
    finally:
        finalized.set()
        merged.set()
    raw = await settled(direct, result, within=WAIT)
    assert raw["status"] == "processed", raw
    monkeypatch.setattr(tickets_service, "touch_activity", real_touch)
    monkeypatch.setattr(tickets_service, "open_after", real_open_after)
    landed = await _ticket_of(direct, raced)
    assert landed["status"] in OPEN, landed  # never left in the finalized ticket
    await _check_one_person(browser, direct, evolution, company, p, survivor=p.known, other=p.split)


async def test_a_merge_stopped_after_its_claim_is_finished_when_its_target_was_merged_meanwhile(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    direct: Any,
    store_proxy: StoreProxy,
    company: Company,
) -> None:
    """The merge of the LID client into the known one stops after its claim (503); meanwhile the
    owner merges the known client into a third contact (the person saved again by hand). The owner
    then follows what each 409 names: the LID client must end merged with the others."""
    p = await _person(client, direct, evolution, company, close_known=True)
    await _lost_click(browser, store_proxy, company, merged=p.split, into=p.known, write="pointer", lose="request")
    r = await client.post(f"{API}/clients", json={"name": p.name, "phone": unique_phone()}, headers=company.owner)
    assert r.status_code == 201, r.text
    third = str(r.json()["id"])
    r = await _merge(browser, company, p.known, third)
    assert r.status_code == 200, r.text

    into, answers = p.known, []
    for _ in range(4):  # the UI's advice, followed: "merge into that one"
        r = await _merge(browser, company, p.split, into)
        answers.append((into, r.status_code, r.json()))
        if r.status_code != 409 or not isinstance(r.json()["detail"], dict):
            break
        into = str(r.json()["detail"]["client_id"])
    assert answers[-1][1] == 200, f"the LID client cannot be merged any more: {answers}"
    assert await _root(direct, p.split) == third and await _root(direct, p.known) == third

    later = await _say(evolution, direct, company, f"depois {unique('')}", name=p.name, lid=p.lid)
    ticket = await _ticket_of(direct, later)
    assert ticket["client_id"] == third and ticket["status"] in OPEN, ticket
    history = await _get(browser, company.agent, f"/tickets/{ticket['_id']}/history", limit=200)
    assert {p.known_ticket, p.split_ticket} <= {t["id"] for t in history["items"]}, history


# --- two merges in opposite directions --------------------------------------------------------


# The first merge (split into known) stops at: its key stored (answer lost); its pointer stored
# (answer lost); its history not stored. The opposite merge runs while the first one hangs.
OPPOSITE: list[tuple[str, Lose]] = [("claim", "reply"), ("pointer", "reply"), ("history", "request")]


@pytest.mark.parametrize(("write", "lose"), OPPOSITE)
async def test_opposite_merges_around_a_lost_write_leave_one_survivor_and_no_cycle(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    direct: Any,
    store_proxy: StoreProxy,
    company: Company,
    write: str,
    lose: Lose,
) -> None:
    p = await _person(client, direct, evolution, company, close_known=True)  # either direction allowed
    answers: list[httpx.Response] = []

    async def opposite() -> None:
        answers.append(await _merge(browser, company, p.known, p.split))

    await _lost_click(
        browser, store_proxy, company, merged=p.split, into=p.known, write=write, lose=lose, meanwhile=opposite
    )
    (opposed,) = answers
    retry = await _merge(browser, company, p.split, p.known)
    # Exactly one direction stands; the other answers a clear 409 naming the client to merge into.
    if opposed.status_code == 200:
        survivor, other = p.split, p.known
        assert retry.status_code == 409 and retry.json()["detail"]["client_id"] == p.split, retry.text
    else:
        survivor, other = p.known, p.split
        assert opposed.status_code == 409 and opposed.json()["detail"]["client_id"] == p.known, opposed.text
        assert retry.status_code == 200 and retry.json()["id"] == p.known, retry.text
    # Both clicked once more: the same answers, nothing more written.
    again = await _merge(browser, company, other, survivor)
    assert again.status_code == 200 and again.json()["id"] == survivor, again.text
    reverse = await _merge(browser, company, survivor, other)
    assert reverse.status_code == 409 and reverse.json()["detail"]["client_id"] == survivor, reverse.text
    await _check_one_person(browser, direct, evolution, company, p, survivor=survivor, other=other)


async def test_opposite_merges_at_one_moment_leave_no_pointer_cycle(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    direct: Any,
    company: Company,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first merge (split into known) has claimed its key; its pointer write is slow (held
    here until released: a store that answers late, not one that fails) while the opposite merge
    (known into split) runs to its end; then the pointer write lands."""
    p = await _person(client, direct, evolution, company, close_known=True)
    real_update = users_service.update_doc
    reached, release = asyncio.Event(), asyncio.Event()

    async def slow_pointer(db_: Any, scope: Any, user_id: str, changes: dict[str, Any]) -> Any:
        if user_id == p.split and changes.get("merged_into") == p.known and not reached.is_set():
            reached.set()
            await release.wait()
        return await real_update(db_, scope, user_id, changes)

    monkeypatch.setattr(users_service, "update_doc", slow_pointer)
    first = asyncio.ensure_future(_merge(browser, company, p.split, p.known))
    waiter = asyncio.ensure_future(reached.wait())
    await asyncio.wait({first, waiter}, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    assert reached.is_set(), f"the merge never reached its pointer write: {(await first).text}"
    try:
        opposed = await _merge(browser, company, p.known, p.split)
    finally:
        release.set()
    answered = await first
    monkeypatch.setattr(users_service, "update_doc", real_update)
    assert {opposed.status_code, answered.status_code} <= {200, 409}, (opposed.text, answered.text)

    docs = await direct.users.find({"_id": {"$in": [p.split, p.known]}}).to_list(None)
    pointers = {d["_id"]: d.get("merged_into") for d in docs}
    listed = await _get(browser, company.owner, "/clients", q=p.name, limit=200)
    assert len(listed["items"]) == 1, (
        f"the contacts list shows {[c['id'] for c in listed['items']]} of the person's two clients; "
        f"pointers {pointers}; answers {opposed.status_code} (known into split), "
        f"{answered.status_code} (split into known)"
    )
    roots = {await _root(direct, p.split), await _root(direct, p.known)}
    assert len(roots) == 1, f"the two clients end at {roots}"
    (survivor,) = roots
    other = p.known if survivor == p.split else p.split
    await _check_one_person(browser, direct, evolution, company, p, survivor=survivor, other=other)


# --- a client edit that loses a write -----------------------------------------------------------


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", EDIT_WRITES)
async def test_a_client_edit_that_loses_a_write_is_saved_when_saved_again(
    browser: httpx.AsyncClient,
    evolution: FakeEvolution,
    direct: Any,
    store_proxy: StoreProxy,
    company: Company,
    write: str,
    lose: Lose,
) -> None:
    """A client WhatsApp knew by its LID alone (its ticket open) is given its number and a name by
    the owner; the save loses a write and is saved again. Then the person writes from that number
    and on the LID chat: both land in the client's one open ticket."""
    name, lid, number = unique("Joana "), _lid(), unique_phone()
    first_message = await _say(evolution, direct, company, "oi, pelo LID", name=name, lid=lid)
    ticket = await _ticket_of(direct, first_message)
    client_id = ticket["client_id"]
    new_name = unique("Joana Souza ")
    markers = {
        "phone_key": (
            command_marker("insert", "natural_keys"),
            string_element("_id", f"client-phone:{company.tenant.id}:{key_form(number)}"),
        ),
        "document": (
            command_marker("update", "users"),
            string_element("_id", client_id),
            string_element("name", new_name),
        ),
    }[write]
    path = f"{API}/clients/{client_id}"
    body = {"name": new_name, "phone": number}
    sprung = store_proxy.stall_next(*markers, lose=lose)
    first = await browser.patch(path, json=body, headers=company.owner)
    assert sprung.is_set(), f"the trap on the edit's {write} never sprang: {first.status_code} {first.text}"
    assert unanswered(first), first.text
    again = await browser.patch(path, json=body, headers=company.owner)
    assert again.status_code == 200, again.text
    assert (again.json()["name"], again.json()["phone"]) == (new_name, number), again.text

    shown = await _get(browser, company.owner, f"/clients/{client_id}")
    assert (shown["name"], shown["phone"], shown["merged_into"]) == (new_name, number, None), shown
    key = await direct.natural_keys.find_one({"_id": f"client-phone:{company.tenant.id}:{key_form(number)}"})
    assert key is not None and key["target"] == client_id, key
    by_number = await _get(browser, company.owner, "/clients", phone=number)
    assert [c["id"] for c in by_number["items"]] == [client_id], by_number
    listed = await _get(browser, company.owner, "/clients", q=new_name)
    assert [c["id"] for c in listed["items"]] == [client_id], listed

    later = [
        await _say(evolution, direct, company, f"agora pelo número {unique('')}", name=name, number=number),
        await _say(evolution, direct, company, f"e pelo LID {unique('')}", name=name, lid=lid),
    ]
    assert {(await _ticket_of(direct, m))["_id"] for m in later} == {ticket["_id"]}, "a split conversation"
    users = await direct.users.find({"reseller_id": company.tenant.id, "phone": number}).to_list(None)
    assert [u["_id"] for u in users] == [client_id], users  # no second client for the number
    opened = await direct.tickets.find({"client_id": client_id, "status": {"$in": list(OPEN)}}).to_list(None)
    assert [t["_id"] for t in opened] == [ticket["_id"]], opened
    inbox = await _get(browser, company.agent, "/tickets", status="espera", limit=200)
    assert ticket["_id"] in [t["id"] for t in inbox["items"]]
    found = await _get(browser, company.owner, "/tickets", q=new_name, limit=200)
    assert [t["id"] for t in found["items"]] == [ticket["_id"]], found
    thread = await _get(browser, company.agent, f"/tickets/{ticket['_id']}/messages", limit=200)
    assert [m["id"] for m in thread["items"] if m["id"] in (first_message, *later)] == [first_message, *later]
    await _counts_agree(browser, direct, company)
