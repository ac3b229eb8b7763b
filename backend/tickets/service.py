"""Ticket lifecycle. Every change is first appended to `ticket_events` under the next version
(the unique `_id` decides races on every store), then projected onto the ticket document."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

from pymongo.errors import DuplicateKeyError, PyMongoError

from backend.audit import service as events
from backend.audit.names import with_names
from backend.audit.schemas import TicketEventPage
from backend.clients import service as clients
from backend.core import natural_keys
from backend.core.clock import as_utc, day_end, day_start, utcnow
from backend.core.db import Database
from backend.core.errors import Conflict, Forbidden, NotFound, Unauthorized, Unprocessable
from backend.core.ids import is_valid_id, new_id
from backend.core.logging import get_logger
from backend.core.pagination import decode_cursor, decode_time_cursor, encode_cursor
from backend.core.retry import read_winner
from backend.core.runtime import EventHook, FinalizeHook, runtime_of
from backend.core.tenancy import Actor, TenantScope
from backend.departments import service as departments
from backend.realtime import feed
from backend.resellers import service as resellers
from backend.tags import service as ticket_tags
from backend.tickets import counters, links, presenter, projection, repository, search
from backend.tickets.models import Ticket as Ticket  # published: the stored ticket, handed to other domains
from backend.tickets.models import TicketEvent

# Published to other domains (they never import a repository: docs/ARCHITECTURE.md §2): the stored
# ticket by id, and moving its activity (messages), a client's tickets (history).
from backend.tickets.repository import client_tickets as client_tickets
from backend.tickets.repository import get_internal as get_internal
from backend.tickets.repository import touch_activity as touch_activity
from backend.tickets.schemas import TicketCounts, TicketFilters, TicketPage, TicketRead
from backend.tickets.states import CREATED_EVENT, Action, Status, authorize, is_open
from backend.tickets.visibility import can_act_on, can_see, visible_query
from backend.users import service as users

log = get_logger("tickets")

NUMBER_KEY = "ticket-number"
# "finalize-hooks:<ticket>": every finalize hook ran to its end for the ticket (the sweep re-runs
# them until it exists: a process killed in between would leave the closing message unsent).
FINALIZE_HOOKS_KEY = "finalize-hooks"
OPEN_SLOT_KEY = "open-ticket"

MAX_RACE_RETRIES = 20
# What a ticket handed back by a deactivation gives as its reason (its `transferred` event's data).
AGENT_DEACTIVATED = "agent_deactivated"
RELEASE_BATCH = 100  # the held tickets read at a time (a person holds a handful)
# A creator probes past numbers taken by concurrent creators; bounded by any realistic burst.
MAX_NUMBER_PROBES = 1000


@dataclass(frozen=True)
class Opening:
    """What a ticket starts with besides its client, in its event v1 (no crash leaves a ticket
    without it): a person opening it for themselves (an agent starting a conversation, "Reabrir")
    makes it atendendo with them, so nobody can assume it in between; a client message opening it
    gives the automatic messages' markers (backend/automation: the message, out of hours, menu
    awaiting an answer). A `LazyOpening` is awaited only when a ticket is about to be created."""

    agent_id: str | None = None
    agent_name: str | None = None
    reopened_from_ticket_id: str | None = None
    opening_message_id: str | None = None
    out_of_hours: bool | None = None
    menu_pending: bool = False
    # The client message that opens it, as the queue previews it (intake): shown from event v1, at
    # the ticket's creation time, which that message then takes as its own (no activity write).
    last_message_preview: str | None = None
    last_message_direction: str | None = None

    def fields(self) -> dict[str, Any]:
        """The ticket's fields it sets: those given (a marker unset stays absent: Ticket.LATER)."""
        given = {k: v for k, v in asdict(self).items() if v is not None}
        return {**given, "status": Status.ATENDENDO.value} if self.agent_id is not None else given


LazyOpening = Callable[[], Awaitable[Opening]]


async def load(db: Database, ticket_id: str) -> Ticket | None:
    """The ticket as its event log says it is; the stored projection is rolled forward over any
    event a crashed or concurrent writer logged but did not project, so the log always wins."""
    return await projection.settle(db, ticket_id)


async def get_visible_or_404(db: Database, actor: Actor, *, ticket_id: str) -> Ticket:
    doc = await load(db, ticket_id) if is_valid_id(ticket_id) else None
    if doc is None or not can_see(actor, doc):
        raise NotFound("ticket not found")
    return doc


async def sees_a_ticket_of_client(db: Database, actor: Actor, *, reseller_id: str, client_ids: list[str]) -> bool:
    """Whether the actor sees at least one of the clients' tickets in that tenant (the client
    history's key, backend/history): the query form of the visibility rule, one count."""
    if not actor.scope.owns(reseller_id):
        return False
    query = {"client_id": {"$in": client_ids}, "reseller_id": reseller_id, **visible_query(actor)}
    return await repository.count(db, actor.scope, query) > 0


def on_event(db: Database, hook: EventHook) -> None:
    """What sees every ticket event before its projection (tickets/counters.py `record`)."""
    counters.on_event(db, hook)


def on_finalized(db: Database, hook: FinalizeHook) -> None:
    """Registers, in this process's runtime, what must follow every finalize; start-up does it
    (backend/gates.py `connect_domains`): the messages domain's refile of the client messages
    that raced the finalize (messages.service). A hook rather than an import: messages builds on
    tickets."""
    hooks = runtime_of(db).finalize_hooks
    if hook not in hooks:
        hooks.append(hook)


async def after_finalize(db: Database, ticket: Ticket) -> None:
    """The finalize's half of the handshake with inbound messages, for a ticket just finalized
    (event stored and projected); the sweep runs it again for a finalize that died before it."""
    hooks = runtime_of(db).finalize_hooks
    if not hooks:  # a process that skipped start-up would leave raced messages behind
        raise RuntimeError("finalize hooks not registered: run backend.gates.connect_domains at start-up")
    for hook in hooks:
        await hook(db, ticket)
    # Claimed only once all of them returned: each is idempotent, so running them again after a
    # crash anywhere before this line finishes what the dead process left (sweep.py).
    await natural_keys.claim(db, FINALIZE_HOOKS_KEY, ticket.id, target=ticket.id)


async def finalize_hooks_done(db: Database, ticket_id: str) -> bool:
    """Whether `after_finalize` ran to its end for the ticket (one read by `_id`)."""
    return await natural_keys.lookup(db, FINALIZE_HOOKS_KEY, ticket_id) is not None


async def set_tags(db: Database, actor: Actor, *, ticket_id: str, tags: list[str]) -> TicketRead:
    """Anyone who can see the ticket tags it; the set given replaces the ticket's tags."""
    ticket = await get_visible_or_404(db, actor, ticket_id=ticket_id)
    await ticket_tags.put_ticket_tags(db, ticket, actor=actor, tags=tags)
    return await presenter.read_one(db, ticket, reader=actor)


async def _allocate_number(db: Database, reseller_id: str, ticket_id: str) -> int:
    """The counter only proposes a number; the unique number key decides. On FerretDB concurrent
    $inc's can hand the same candidate to many creators, so a loser walks forward claiming the
    next numbers itself (each claim is one atomic insert) instead of asking the counter again.
    One proposal at a time per tenant in this process (as foldlog's appends): a backlog's lanes
    opening tickets of one tenant together would otherwise all lose to one winner and read it
    (a `find` per loss); only creators in other processes still race, and the key settles it."""
    locks = runtime_of(db).process_locks
    async with locks.setdefault((db.name, f"{NUMBER_KEY}/{reseller_id}"), asyncio.Lock()):
        candidate = number = await repository.next_number(db, reseller_id)
        for _ in range(MAX_NUMBER_PROBES):
            bound, won = await natural_keys.claim(db, NUMBER_KEY, reseller_id, str(number), target=ticket_id)
            if won or bound == ticket_id:
                if number != candidate:
                    await repository.raise_counter(db, reseller_id, number)
                return number
            number += 1
    raise Conflict("could not allocate a ticket number; retry")


async def _create(
    db: Database,
    ticket_id: str,
    *,
    reseller_id: str,
    client: users.User,
    department_id: str,
    channel: str,
    slot: int,
    actor_id: str | None,
    actor_role: str | None,
    fresh: bool = False,
    opening: Opening | LazyOpening | None = None,
) -> tuple[Ticket, bool]:
    """Writes event v1 (the creation claim) and the ticket. Safe to race with itself: returns
    (ticket, created), and only the caller whose event v1 landed gets created=True.
    `fresh`: `ticket_id` was just bound to its slot by this caller, so no ticket or event exists.
    `opening`: what the ticket starts with besides its client (`Opening`)."""
    if not fresh:
        existing = await load(db, ticket_id)
        if existing is not None:
            return existing, False
    starts = (await opening() if callable(opening) else opening or Opening()).fields()
    now = utcnow()
    number = await _allocate_number(db, reseller_id, ticket_id)
    doc = Ticket.model_validate(
        {
            "_id": ticket_id,
            "reseller_id": reseller_id,
            "number": number,
            "status": Status.ESPERA.value,
            "client_id": client.id,
            "client_name": client.name,
            "client_phone": client.phone or "",
            **({"client_lid": client.whatsapp_lid} if client.whatsapp_lid else {}),
            "department_id": department_id,
            "channel": channel,
            "open_slot": slot,
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "last_message_at": now,
            **starts,
        }
    )
    event = TicketEvent(
        id=events.event_id(ticket_id, 1),
        ticket_id=ticket_id,
        reseller_id=reseller_id,
        version=1,
        type=CREATED_EVENT,
        actor_id=actor_id,
        actor_role=actor_role,
        from_status=None,
        to_status=doc.status,
        state=doc.state(),
        at=now,
        data={"ticket": doc.stored()},
    )
    # A concurrent creator of the same slot may win; load() then projects its event instead.
    try:
        await events.insert(db, event)
        won = True
    except DuplicateKeyError:
        won = False
    found: Ticket | None = None
    if won:
        await counters.record(db, event, check=False)  # before the document: a projected version has its delta
        # Our event v1 landed: the document is ours to insert, with no read before or after. An
        # insert of a new `_id` is atomic and overwrites nothing, so unlike an update it cannot
        # undo a concurrent write (projection.py); whoever wants the ticket meanwhile finds event
        # v1 without its document and inserts that copy itself (settle), and the loser of the two
        # inserts changes nothing. A later event (an assume right after) is rolled forward by its
        # own writer's settle, and the caller's own read-back (messages.append) reads the log too.
        try:
            await repository.insert(db, doc)
            found = doc
        except DuplicateKeyError:
            pass
    if found is None:
        found = await read_winner(lambda: load(db, ticket_id), what=f"ticket {ticket_id}")
    if won:
        await announce_created(db, found)
    return found, won


async def announce_created(db: Database, ticket: Ticket) -> None:
    """Tells open screens of a new ticket (the queue's alert and counts). Safe to repeat: screens
    key the alert by ticket and version."""
    await feed.publish(db, reseller_id=ticket.reseller_id, type_="ticket.created", ticket=ticket)


async def open_for_client(
    db: Database,
    *,
    reseller_id: str,
    client: users.User,
    department_id: str,
    channel: str,
    actor_id: str | None,
    actor_role: str | None,
    after_slot: int = -1,
    projection_only: bool = False,
    before_create: Callable[[], Awaitable[None]] | None = None,
    ticket_hint: str | None = None,
    new_client: bool = False,
    opening: Opening | LazyOpening | None = None,
) -> tuple[Ticket, bool]:
    """The client's open ticket on this channel, or a new one in espera (atendendo with
    `opening`'s agent when it has one). Returns (ticket, created).

    `projection_only`: an existing ticket is judged by its stored document alone (one read), not
    rolled forward over its log (`load`). For a caller that re-reads the log after its own write
    anyway (intake → messages.append, whose read-back after storing the message folds the log):
    the projection only ever lags the log, and a finalizado projection means a finalizado log
    (finalizado is final), so a ticket this returns as open may at worst have been finalized a
    moment ago — exactly the race that read-back already handles. `before_create`: awaited before
    a slot is claimed or a ticket created (it may raise to stop that). `ticket_hint`: a ticket the
    caller found open for this client and channel a moment ago; with `projection_only`, when its
    document still shows it open it is the answer (a client has one open ticket per channel), with
    no slot look-up. `new_client`: the caller has just created the client (won its phone key), so
    none of its slots is bound and nothing was ever filed for it: no look-up, no `before_create`.

    A client has one open ticket per channel. Its slot is a natural key "<client>:<channel>:<n>":
    slot n is claimed once (so two first messages at the same moment open one ticket), and once
    its ticket is finalized the next message moves on to slot n+1. Slot n+1 is only ever claimed
    by someone who saw slot n's ticket finalized, so every slot below the first open one is
    finalized, and the walk may start at any slot at or below it: the client's per-channel hint
    (`ticket_slots.<channel>`, see users.raise_ticket_slot) or `after_slot` + 1 when the caller
    knows slot `after_slot` is finalized. A hint that lags only costs reads.

    `opening`: what a new ticket starts with (`Opening`); a `LazyOpening` is awaited only when a
    ticket is about to be created.
    """
    if ticket_hint is not None and projection_only:
        hinted = await repository.get_internal(db, ticket_hint)
        if hinted is not None and is_open(hinted.status):
            return hinted, False
    slot = max(after_slot + 1, await _walk_start(db, reseller_id=reseller_id, client=client, channel=channel))
    for _ in range(MAX_RACE_RETRIES * 50):
        # Most messages find their slot bound already: a read, not an insert that loses.
        first = new_client and slot == 0
        bound = (
            None if first else await natural_keys.lookup(db, OPEN_SLOT_KEY, reseller_id, client.id, channel, str(slot))
        )
        fresh = False
        if bound is None:
            if before_create is not None and not first:
                await before_create()
            target = new_id()
            bound, fresh = await natural_keys.claim(
                db, OPEN_SLOT_KEY, reseller_id, client.id, channel, str(slot), target=target
            )
        # A slot we just bound to a new id has no ticket yet: nobody else knows that id, so
        # there is nothing to read.
        ticket = None if fresh else (await repository.get_internal(db, bound) if projection_only else None)
        if ticket is None and not fresh:
            ticket = await load(db, bound)  # no document: a creator that died (load completes it) or none
        if ticket is None:  # ours, or a claimer that died before writing: complete it
            if before_create is not None and not fresh:
                await before_create()
            # Two first messages can both reach here for one slot; only the event v1 writer created it.
            return await _create(
                db,
                bound,
                reseller_id=reseller_id,
                client=client,
                department_id=department_id,
                channel=channel,
                slot=slot,
                actor_id=actor_id,
                actor_role=actor_role,
                fresh=fresh,
                opening=opening,
            )
        if is_open(ticket.status):
            return ticket, False
        slot += 1
    raise Conflict("could not open a ticket; retry")


async def open_tickets_of_client(db: Database, scope: TenantScope, client_id: str) -> list[Ticket]:
    """The client's open tickets, on any channel (a merge's check, backend/clients/merge.py)."""
    return await repository.open_of_client(db, scope, client_id)


async def open_ticket_of(db: Database, *, reseller_id: str, client: users.User, channel: str) -> Ticket | None:
    """The client's open ticket on `channel`, or None; opens nothing (the same slot walk as
    `open_for_client`, stopping at the first unbound slot)."""
    slot = await _walk_start(db, reseller_id=reseller_id, client=client, channel=channel)
    for _ in range(MAX_RACE_RETRIES * 50):
        bound = await natural_keys.lookup(db, OPEN_SLOT_KEY, reseller_id, client.id, channel, str(slot))
        ticket = await load(db, bound) if bound is not None else None
        if ticket is None:
            return None
        if is_open(ticket.status):
            return ticket
        slot += 1
    raise Conflict("could not find the client's ticket; retry")


async def _walk_start(db: Database, *, reseller_id: str, client: users.User, channel: str) -> int:
    """Where the walk over the client's slots on `channel` may start: the per-channel hint. Per
    channel, because slots are: a hint raised by another channel's finalize would skip this
    channel's open ticket."""
    if channel in client.ticket_slots:
        return client.ticket_slots[channel]
    if client.ticket_slot is None:
        # No per-client hint (a client created since per-channel hints: `User.stored()` writes
        # `ticket_slot: None`, which must not send every such client's second message down the
        # look-up below — a tickets query, a `load` per ticket and a hint write, 4 commands).
        return 0
    # A client from before per-channel hints has the per-client `ticket_slot`, which may have
    # started this channel's claims above free slots: slot 0 can be free while a later one is
    # open. Find where this channel's slots really are, once, and keep it as its hint.
    start = 0
    for doc in await repository.for_client_on_channel(db, TenantScope(reseller_id), client.id, channel):
        ticket = await load(db, doc.id)
        assert ticket is not None
        slot = ticket.open_slot
        if is_open(ticket.status):
            return await _keep_hint(db, client.id, channel, slot)
        start = max(start, slot + 1)
    return await _keep_hint(db, client.id, channel, start)


async def _keep_hint(db: Database, client_id: str, channel: str, slot: int) -> int:
    await users.raise_ticket_slot(db, client_id, channel=channel, slot=slot)
    return slot


async def open_after(db: Database, finalized: Ticket, *, opening: Opening | LazyOpening | None = None) -> Ticket:
    """The ticket a client message that raced `finalized`'s finalize belongs in: the client's
    open ticket on the same channel in a later slot, opened in espera (in the finalized ticket's
    department, starting with `opening`, as any ticket a client message opens) when there is none.
    Every caller asking about one finalized ticket walks the same slots from the same start, so
    they agree on the answer."""
    ticket, _ = await open_next(db, finalized, opening=opening)
    return ticket


async def open_next(
    db: Database, finalized: Ticket, *, opening: Opening | LazyOpening | None = None, actor: Actor | None = None
) -> tuple[Ticket, bool]:
    """`open_after` with its (ticket, created), and the `opening` a new ticket gets (Reabrir)."""
    client = await users.get(db, TenantScope(finalized.reseller_id), finalized.client_id)
    if client is None:  # never deleted; a ticket's own copy of the client serves all the same
        client = users.User(
            id=finalized.client_id,
            role="client",
            reseller_id=finalized.reseller_id,
            name=finalized.client_name,
            phone=finalized.client_phone,
            whatsapp_lid=finalized.client_lid or None,
            created_at=finalized.created_at,
        )
    # Merged meanwhile (backend/clients/merge.py): the person's conversations are the kept
    # client's, whose slots are its own.
    person = await clients.followed(db, client)
    return await open_for_client(
        db,
        reseller_id=finalized.reseller_id,
        client=person,
        department_id=finalized.department_id,
        channel=finalized.channel,
        actor_id=actor.id if actor is not None else None,
        actor_role=actor.role if actor is not None else None,
        after_slot=finalized.open_slot if person.id == finalized.client_id else -1,
        opening=opening,
    )


def _refusal(actor: Actor, ticket: Ticket, exc: Conflict) -> dict[str, Any]:
    """The 409 body of a refused move: why, and the ticket as it is now — but the ticket only to
    someone who may see it. An agent of the department who lost an Assumir race may act on the
    ticket (so it gets a 409, not a 404) yet no longer see it: it learns the status, not the
    client's phone, the last message or who holds it."""
    detail = exc.detail if isinstance(exc.detail, dict) else {"message": str(exc.detail)}
    detail = {**detail, "status": ticket.status}
    if can_see(actor, ticket):
        detail["ticket"] = TicketRead.of(ticket).model_dump(mode="json")
    return detail


async def _transition(
    db: Database,
    actor: Actor,
    *,
    ticket_id: str,
    action: Action,
    changes: dict[str, Any],
    data: dict[str, Any] | None = None,
    unless: Callable[[Ticket], str | None] | None = None,
) -> Ticket:
    """`unless`: judged on the ticket as it is at each try; a reason refuses the move (409)."""
    for _ in range(MAX_RACE_RETRIES):
        ticket = await load(db, ticket_id) if is_valid_id(ticket_id) else None
        if ticket is None or not can_act_on(actor, ticket):
            raise NotFound("ticket not found")
        try:
            transition = authorize(
                action, status=ticket.status, role=actor.role, actor_id=actor.id, holder_id=ticket.agent_id
            )
            refused = unless(ticket) if unless is not None else None
            if refused is not None:
                raise Conflict({"message": refused, "status": ticket.status})
        except Conflict as exc:
            raise Conflict(_refusal(actor, ticket, exc)) from exc
        now = utcnow()
        state = ticket.state().model_copy(update={**changes, "status": transition.target.value})
        if actor.role != "client":
            # A person acting on the ticket ends the department menu: the ticket is theirs now.
            state.menu_pending = False
        if action is Action.FINALIZE:
            state.finalized_at, state.finalized_by = now, actor.id
        version = ticket.version + 1
        event = TicketEvent(
            id=events.event_id(ticket_id, version),
            ticket_id=ticket_id,
            reseller_id=ticket.reseller_id,
            version=version,
            type=transition.event,
            actor_id=actor.id,
            actor_role=actor.role,
            from_status=ticket.status,
            to_status=transition.target.value,
            state=state,
            at=now,
            data={**(data or {}), "action": action.value},
        )
        try:
            await events.insert(db, event)
        except DuplicateKeyError:
            continue  # someone moved it first: re-read and judge again against the new state
        except PyMongoError:
            projection.writer_failed(db, ticket.reseller_id)  # it may have landed, its answer lost
            raise
        try:
            # Its counts delta before its projection (counters.py): a crash here leaves the ticket
            # behind its log, and whoever settles it next appends the delta.
            await counters.record(db, event, previous_state=ticket.state(), check=False)
            # Project it, then read back until the stored ticket shows it: on FerretDB a concurrent
            # activity update can write back the version it read before ours (projection.py).
            await repository.apply_state(
                db, ticket_id, from_version=ticket.version, version=version, state=state, at=now
            )
            await projection.settle(db, ticket_id)
            if action is Action.FINALIZE:
                await users.raise_ticket_slot(db, ticket.client_id, channel=ticket.channel, slot=ticket.open_slot + 1)
        except Exception:
            # The move is logged and will not be announced here, nor by the click's repeat (409):
            # open screens refetch, and whoever rolls the ticket forward to it later announces it
            # (projection.settle).
            projection.writer_failed(db, ticket.reseller_id)
            raise
        updated = ticket.model_copy(update={**dict(state), "version": version, "updated_at": now})
        await feed.publish(
            db, reseller_id=ticket.reseller_id, type_=f"ticket.{transition.event}", ticket=updated, previous=ticket
        )
        if action is Action.FINALIZE:
            await after_finalize(db, updated)
        return updated
    raise Conflict("ticket is changing too fast; retry")


async def assume(db: Database, actor: Actor, *, ticket_id: str) -> TicketRead:
    doc = await _transition(
        db, actor, ticket_id=ticket_id, action=Action.ASSUME, changes={"agent_id": actor.id, "agent_name": actor.name}
    )
    if await hand_back_if_inactive(db, doc):
        # Deactivated while this request was under way: its session is over, the ticket waits again.
        raise Unauthorized("invalid or expired token")
    return await presenter.read_one(db, doc, reader=actor)


async def transfer(
    db: Database, actor: Actor, *, ticket_id: str, agent_id: str | None, department_id: str | None
) -> TicketRead:
    assert actor.reseller_id
    current = await load(db, ticket_id) if is_valid_id(ticket_id) else None
    if agent_id is not None:
        target = await users.get(db, actor.scope, agent_id, roles=("agent",))
        if target is None:
            raise Unprocessable("unknown agent")
        if not target.active:
            raise Unprocessable("agent is inactive")
        if current is not None and current.agent_id == agent_id and can_act_on(actor, current):
            raise Conflict(_refusal(actor, current, Conflict({"message": "the agent already holds this ticket"})))
        doc = await _transition(
            db,
            actor,
            ticket_id=ticket_id,
            action=Action.TRANSFER_TO_AGENT,
            changes={"agent_id": agent_id, "agent_name": target.name},
            data={"to_agent_id": agent_id},
        )
        if await hand_back_if_inactive(db, doc):  # deactivated since the check above
            raise Unprocessable("agent is inactive")
    else:
        assert department_id is not None
        # Judged before the department's state: a repeated click whose first answer was lost is
        # told its transfer happened, even when the department was deactivated since.
        if (
            current is not None
            and current.status == Status.ESPERA.value
            and current.department_id == department_id
            and (can_act_on(actor, current) or await _last_moved_by(db, actor, current))
        ):
            already = Conflict({"message": "the ticket already waits in this department"})
            raise Conflict(_refusal(actor, current, already))
        dept = await departments.get(db, actor.scope, department_id)
        if dept is None or not dept.active:
            raise Unprocessable("unknown or inactive department")
        doc = await _transition(
            db,
            actor,
            ticket_id=ticket_id,
            action=Action.TRANSFER_TO_DEPARTMENT,
            changes={"agent_id": None, "agent_name": None, "department_id": department_id},
            data={"to_department_id": department_id},
        )
    return await presenter.read_one(db, doc, reader=actor)


async def _last_moved_by(db: Database, actor: Actor, ticket: Ticket) -> bool:
    """Whether the ticket's latest event is `actor`'s own: an agent who just sent a ticket to a
    queue it does not work in may no longer act on it, and its repeated click (the first one's
    answer lost) is told the ticket waits there rather than that it does not exist."""
    latest = await events.get_internal(db, ticket.id, ticket.version)
    return latest is not None and latest.actor_id == actor.id and latest.reseller_id == actor.reseller_id


async def _hand_back(db: Database, actor: Actor, *, ticket: Ticket, holder_id: str, action: Action) -> Ticket | None:
    """`ticket` back to espera in its own department, as a `transferred` event by `actor` giving
    the deactivation of `holder_id` as its reason. None when, as the move is judged, `holder_id`
    no longer holds it: an assume, transfer or finalize that landed first keeps it."""
    try:
        return await _transition(
            db,
            actor,
            ticket_id=ticket.id,
            action=action,
            changes={"agent_id": None, "agent_name": None},
            data={"to_department_id": ticket.department_id, "from_agent_id": holder_id, "reason": AGENT_DEACTIVATED},
            unless=lambda t: None if t.agent_id == holder_id else "the ticket is no longer held by this person",
        )
    except Conflict:
        now = await load(db, ticket.id)
        if now is not None and now.status == Status.ATENDENDO.value and now.agent_id == holder_id:
            raise  # still theirs ("changing too fast"): the caller must not take it for done
        return None


async def release_held_by(db: Database, actor: Actor, *, holder_id: str) -> list[str]:
    """Hands every ticket `holder_id` holds in atendendo back to espera in the ticket's own
    department, each as a transfer by `actor` (Action.RELEASE) whose data gives the reason
    (`{"reason": "agent_deactivated", "from_agent_id", "to_department_id"}`): what deactivating
    a person does (users.deactivation), as the person who deactivated it. Only for a person
    `actor` may manage — the admin anyone, a reseller's owner its agents — and only while that
    person is inactive (one reactivated meanwhile keeps its tickets). Returns the ids handed back.

    Idempotent, so a deactivation cut short is finished by repeating it: a ticket handed back
    already is no longer listed, and one moved by someone else since it was listed is theirs.
    Where it ends: the list is read from the ticket documents; a ticket whose document a
    concurrent write has just put back to before an assume (FerretDB, projection.py) is missed
    until that writer's settle, and is handed back by the next deactivation request."""
    holder = await users.get(db, actor.scope, holder_id, roles=users.STAFF_ROLES) if is_valid_id(holder_id) else None
    if holder is None:
        raise NotFound("user not found")
    if not (actor.is_admin or (actor.role == "reseller" and holder.role == "agent")):
        raise Forbidden("resellers manage their agents only")
    if holder.active or holder.reseller_id is None:  # the admin belongs to no tenant: it holds none
        return []
    released: list[str] = []
    async for ticket in _held_in_atendendo(db, holder):
        if await _hand_back(db, actor, ticket=ticket, holder_id=holder.id, action=Action.RELEASE) is not None:
            released.append(ticket.id)
    return released


class HeldUnreadable(RuntimeError):
    """Some tickets a person holds do not read (`_held_in_atendendo`): every other one was handed
    back; the release is not done, so its mark stays owed (users/deactivation.py) and the sweep
    pays it once an operator mended them (`release_owed`)."""


async def _held_in_atendendo(db: Database, holder: users.User) -> AsyncIterator[Ticket]:
    """Every ticket `holder` holds in atendendo. One whose document does not read is logged and
    passed over, the others still yielded; then this raises `HeldUnreadable`."""
    assert holder.reseller_id is not None
    after: str | None = None
    scope, atendendo, passed_over = TenantScope(holder.reseller_id), Status.ATENDENDO.value, 0
    while True:
        page = await repository.held_by(db, scope, holder.id, status=atendendo, after_id=after, limit=RELEASE_BATCH)
        for ticket in page.tickets:
            yield ticket
        passed_over += page.passed_over
        if page.next_after is None:
            break
        after = page.next_after
    if passed_over:
        raise HeldUnreadable(f"{passed_over} ticket(s) held by {holder.id} do not read; handed back once mended")


async def release_owed(db: Database, *, paid_if_active_before: datetime) -> int:
    """Pays every release a deactivation marked owed and did not pay (users/deactivation.py: its
    process killed between its user write and the end of its release): the tickets its person,
    inactive, still holds go back to their departments' queues, each handed back as
    `hand_back_if_inactive` does, idle conversations included (the sweep's visits reach only
    tickets moved or messaged lately). A mark whose person is active (reactivated since, or the
    user write never landed) is paid once older than `paid_if_active_before`: a deactivation
    still under way has marked, and not yet written the user. Returns the tickets handed back."""
    released = 0
    for owed in await users.owed_releases_internal(db):
        try:
            released += await _pay_release(db, owed, paid_if_active_before)
        except Exception as exc:  # its mark stays owed for the next pass; the other people's go on
            log.error("owed release failed; the next sweep tries it again", user_id=owed.id, error=str(exc))
    return released


async def _pay_release(db: Database, owed: users.ReleaseOwed, paid_if_active_before: datetime) -> int:
    released = 0
    holder = await users.get_internal(db, owed.id)
    if holder is not None and holder.active and as_utc(owed.owed_at) >= as_utc(paid_if_active_before):
        return 0
    if holder is not None and not holder.active and holder.reseller_id is not None:
        try:
            async for ticket in _held_in_atendendo(db, holder):
                released += await hand_back_if_inactive(db, ticket)
        except HeldUnreadable as exc:  # the others are back in their queues; the mark stays owed
            log.error("owed release not paid: held tickets do not read", user_id=owed.id, error=str(exc))
            return released
    assert owed.owed is not None
    await users.release_paid(db, owed.id, owed.owed)
    return released


async def hand_back_if_inactive(
    db: Database, ticket: Ticket, *, holders: dict[str, users.User | None] | None = None
) -> bool:
    """Run by every move that gives a ticket to a person (assume, transfer to an agent, Reabrir, a
    conversation an agent starts), once its event landed: a holder deactivated meanwhile keeps
    nothing. The ticket goes back to its department's queue at once, as a transfer by the holder
    itself giving the deactivation as its reason. True when the holder is inactive (the ticket is
    no longer with it: handed back here, or by the deactivation's own release first); the caller
    then refuses its request, whose outcome did not hold.

    The other half of the deactivation's handshake (users.deactivation): it writes the user, then
    lists what the person holds; this move writes its event, then reads the user. Whichever comes
    second sees the other's write, so an assume authenticated before the deactivation that lands
    after the list was read is caught here, and one that landed before is in that list.

    `holders`: the people read so far by a caller visiting many tickets (the sweep), filled as it
    reads: an active one is not read again (one read per person per pass, not per ticket); an
    inactive one is, as one reactivated meanwhile keeps its tickets."""
    if ticket.status != Status.ATENDENDO.value or ticket.agent_id is None:
        return False
    known = holders.get(ticket.agent_id) if holders is not None else None
    if known is not None and known.active:
        return False
    holder = await users.get_internal(db, ticket.agent_id)  # an inactive one always read afresh
    if holders is not None and holder is not None:
        holders[holder.id] = holder
    if holder is None or holder.active:
        return False
    await _hand_back(db, holder.as_actor(), ticket=ticket, holder_id=holder.id, action=Action.TRANSFER_TO_DEPARTMENT)
    return True


async def finalize(db: Database, actor: Actor, *, ticket_id: str) -> TicketRead:
    doc = await _transition(db, actor, ticket_id=ticket_id, action=Action.FINALIZE, changes={})
    return await presenter.read_one(db, doc, reader=actor)


def client_actor(ticket: Ticket) -> Actor:
    """The ticket's client as the actor of its own moves (menu choice, rating)."""
    return Actor(id=ticket.client_id, role="client", name=ticket.client_name, reseller_id=ticket.reseller_id)


async def choose_department(
    db: Database,
    ticket: Ticket,
    *,
    department_id: str,
    message_id: str,
    fallback: bool = False,
    by_phone: bool = False,
) -> Ticket:
    """The client's answer to the department menu (backend/automation) moves the ticket, still in
    espera, to that department's queue and ends the menu; `fallback`: the menu gave up on invalid
    answers and the ticket stays where it waits (the connection's default department); `by_phone`:
    a person answered the client from the connection's own phone (message `message_id`), which
    ends the menu where the ticket waits, as a person taking it in IAZE would. Recorded as
    a `routed` event with the client as actor. Conflict when the menu is over (a person assumed
    or finalized the ticket, or an earlier answer chose already): the move is judged on the ticket
    as its log is at each try, so a racing Assumir or Finalizar either wins or comes after."""
    return await _transition(
        db,
        client_actor(ticket),
        ticket_id=ticket.id,
        action=Action.MENU_CHOICE,
        changes={"department_id": department_id, "menu_pending": False},
        data={
            "to_department_id": department_id,
            "message_id": message_id,
            "fallback": fallback,
            **({"by_phone": True} if by_phone else {}),
        },
        unless=lambda t: None if t.menu_pending else "the department menu is no longer pending",
    )


async def rate(db: Database, ticket: Ticket, *, rating: int, message_id: str) -> Ticket:
    """The client's 1-5 satisfaction rating of its finalized ticket: a `rated` event; the ticket
    stays finalizado. Once per ticket (Conflict after)."""
    if not 1 <= rating <= 5:
        raise Unprocessable("a rating is 1 to 5")
    return await _transition(
        db,
        client_actor(ticket),
        ticket_id=ticket.id,
        action=Action.RATE,
        changes={"rating": rating},
        data={"rating": rating, "message_id": message_id},
        unless=lambda t: None if t.rating is None else "the ticket is rated already",
    )


async def reopen(db: Database, actor: Actor, *, ticket_id: str) -> TicketRead:
    """ "Reabrir": finalizado stays terminal; a new ticket for the same client and channel opens
    atendendo with the person who pressed it, linked both ways (`reopened_from_ticket_id` stored
    on the new ticket, the old one's `reopened_as` natural key).

    Races: the new ticket takes the client's next slot on the channel through the same slot key
    every intake claims, so against another Reabrir or a client message opening a ticket at the
    same moment exactly one open ticket results; whoever lost gets 409 naming it. A process
    killed between the new ticket and the link claim leaves the new ticket pointing back and the
    old one's forward key missing: the next read of the old ticket or Reabrir of it claims the key
    from the back link (tickets.links), so both threads show the link and no second ticket opens."""
    if actor.role not in ("agent", "reseller"):
        raise Forbidden(f"role {actor.role} cannot reopen")
    old = await get_visible_or_404(db, actor, ticket_id=ticket_id)
    if is_open(old.status):
        raise Conflict({"message": "only a finalized ticket can be reopened", "status": old.status})
    already = await links.reopened_as(db, old)
    if already is not None:
        raise Conflict({"message": "ticket was reopened already", "ticket_id": already, "status": old.status})
    ticket, created = await open_next(
        db, old, opening=Opening(agent_id=actor.id, agent_name=actor.name, reopened_from_ticket_id=old.id), actor=actor
    )
    if not created:
        raise Conflict({"message": "client already has an open ticket", "ticket_id": ticket.id, "status": old.status})
    bound = await links.link(db, old, ticket.id)
    if bound != ticket.id:  # a reopen of this ticket on an earlier slot, finalized since
        raise Conflict({"message": "ticket was reopened already", "ticket_id": bound, "status": old.status})
    if await hand_back_if_inactive(db, ticket):  # deactivated meanwhile: it waits in the queue
        raise Unauthorized("invalid or expired token")
    return await presenter.read_one(db, ticket, reader=actor)


def _list_query(
    actor: Actor,
    *,
    status: Status | None,
    department_id: str | None,
    agent_id: str | None = None,
    connection_id: str | None = None,
) -> dict[str, Any]:
    query = visible_query(actor)
    if status is not None:
        query["status"] = status.value
    if department_id is not None:
        query["department_id"] = department_id
    if agent_id is not None:
        query["agent_id"] = agent_id
    if connection_id is not None:
        query["channel"] = connection_id  # a WhatsApp ticket's channel is its connection's id
    return query


async def list_page(
    db: Database,
    actor: Actor,
    *,
    status: Status | None,
    department_id: str | None,
    cursor: str | None,
    limit: int,
    q: str | None = None,
    filters: TicketFilters | None = None,
    reseller_id: str | None = None,
) -> TicketPage:
    """`reseller_id`: the admin, who sees every company's tickets, narrows them to one company's
    (the same rule as any other actor's own: a different company's is a 404 for them)."""
    scope = actor.scope
    if reseller_id is not None:
        if not actor.scope.owns(reseller_id):
            raise NotFound("reseller not found")
        scope = TenantScope(reseller_id)
    after = decode_time_cursor(cursor) if cursor else None
    f = filters or TicketFilters()
    parts = [
        _list_query(
            actor, status=status, department_id=department_id, agent_id=f.agent_id, connection_id=f.connection_id
        )
    ]
    if f.opened_from_day is not None or f.opened_to_day is not None:
        parts.append(await _opened_on_days(db, scope, first=f.opened_from_day, last=f.opened_to_day))
    if q and q.strip():
        parts.append(await search.text_filter(db, scope, q))
    if f.tag:
        parts.append(await search.tag_filter(db, scope, f.tag))
    if f.created_from is not None or f.created_to is not None:
        parts.append(search.period_filter(f.created_from, f.created_to))
    query = parts[0] if len(parts) == 1 else {"$and": parts}
    docs = await repository.list_page(db, scope, query, after=after, limit=limit + 1)
    nxt = None
    if len(docs) > limit:
        last = docs[limit - 1]
        nxt = encode_cursor([last.last_message_at.isoformat(), last.id])
    return TicketPage(items=await presenter.read_many(db, docs[:limit], reader=actor), next_cursor=nxt)


async def _opened_on_days(db: Database, scope: TenantScope, *, first: date | None, last: date | None) -> dict[str, Any]:
    """Tickets opened on the company's calendar days `first`..`last` (both inclusive, either side
    open), placed in the company's timezone as its reports and exports place theirs: an agent's
    browser may keep another zone (or UTC), and agents cannot read the company's setting."""
    if first is not None and last is not None and last < first:
        raise Unprocessable("opened_to_day is before opened_from_day")
    if scope.every or scope.reseller_id is None:
        # Companies keep different zones: a day across all of them is no one period.
        raise Unprocessable("reseller_id is required for the platform admin to filter by day")
    tz = resellers.zone(await resellers.timezone_of(db, scope.reseller_id))
    return search.period_filter(
        day_start(first, tz) if first is not None else None, day_end(last, tz) if last is not None else None
    )


async def counts(db: Database, actor: Actor, *, department_id: str | None) -> TicketCounts:
    """What the lists would show, from the counters (tickets/counters.py): constant in the number
    of tickets. Counted from the tickets while a tenant's counters are not backfilled yet."""
    tenants = await resellers.all_ids(db) if actor.is_admin else None
    values = await counters.for_actor(db, actor, department_id=department_id, tenants=tenants)
    if values is None:
        return await recount(db, actor, department_id=department_id)
    return TicketCounts(**values)


async def recount(db: Database, actor: Actor, *, department_id: str | None) -> TicketCounts:
    """The same numbers counted from the ticket documents (a scan on FerretDB): what `counts`
    replaced, kept for the operator check (scripts/ticket_counts.py) and the benchmark."""
    values = {
        status.value: await repository.count(
            db, actor.scope, _list_query(actor, status=status, department_id=department_id)
        )
        for status in Status
    }
    return TicketCounts(**values)


async def list_events(db: Database, actor: Actor, *, ticket_id: str, cursor: str | None, limit: int) -> TicketEventPage:
    await get_visible_or_404(db, actor, ticket_id=ticket_id)
    after = 0
    if cursor:
        raw = decode_cursor(cursor, 1)[0]
        # bool is an int, and an int past 64 bits cannot even be sent to the database.
        if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw < 2**31:
            raise Unprocessable("invalid cursor")
        after = raw
    docs = await events.list_for_ticket(db, actor.scope, ticket_id, after_version=after, limit=limit + 1)
    nxt = encode_cursor([docs[limit - 1].version]) if len(docs) > limit else None
    return TicketEventPage(items=await with_names(db, docs[:limit]), next_cursor=nxt)
