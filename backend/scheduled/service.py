"""Scheduled messages: an agent's reply written now and sent to the client at a set time.

Whaticket's "agendamentos", tied to a ticket: the person holding it schedules a reply, and at
`send_at` it is sent into that ticket as the author's message (signed as the author, whoever holds
the ticket by then; sending moves nothing), through the outbox like any reply. A ticket finalized
before the time takes its schedules with it (canceled, reason "finalized", by the finalize itself:
`after_finalize`): a background pass never reopens or opens a ticket. A time that comes while
nothing can reach the client (the connection off or deactivated) fails the schedule with that
reason, shown to the agent, rather than send it hours late.

Every outcome is decided once by one unique key per schedule (`OUTCOME`), claimed before any
effect: "sent" by the due pass, "canceled" by a person, "edited:<id>" by its author's edit,
"finalized" or "unreachable:<why>" by the pass. A pass and a cancel at once, two passes in two
processes, a pass killed anywhere: the key's first claimant decides, and the sending itself is
idempotent (the message's id is derived from the schedule's, so a repeated send finds it stored
and queues nothing twice). The schedule's `status`
is a projection of the key, written by whoever acts on it, and repaired by the next pass.

An edit never rewrites a waiting schedule, which a pass may have read and be about to send: it
stores the edited one first (`replaces`), then claims the old one's key for it. Claimed, the old
one is canceled "edited"; lost (sent, canceled or finalized first), the edited one is canceled
"edit_refused" and the edit answers 409. An edit killed between its two writes leaves both
waiting, and the pass that takes the edited one first makes the same claim: one of the two is
sent, never both.

What the lists show follows what is decided, not only what was written: a list settles each
schedule shown waiting whose key a cancel or an edit claimed (its answer or status write lost), and
finishes an edit stored whose claim was lost (`_finish_decided`); a cancel or another edit of a
schedule meets such a stored edit first (`_after_pending_edits`: the edit stands, 409). A "sent"
claim is written only by the sender, once the message is stored (a pass whose process died after
its claim is finished by the next one). And "sent" means stored and queued: the lists carry the
message's delivery (`delivery`, `failure_reason`), and the message names its schedule
(`scheduled_id`), so a reply WhatsApp refused is shown so and its author told (frontend alerts).
"""

import asyncio
import contextlib
import functools
import hashlib
from collections.abc import Collection
from datetime import datetime, timedelta

import structlog
from pymongo.errors import DuplicateKeyError

from backend.connections import service as connections
from backend.core import natural_keys
from backend.core.background import BackgroundLoop
from backend.core.clock import as_utc, utcnow
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from backend.core.ids import is_valid_id
from backend.core.pagination import decode_time_cursor, encode_cursor
from backend.core.retry import read_winner
from backend.core.tenancy import Actor, TenantScope
from backend.messages import public as message_store
from backend.messages import service as messages
from backend.realtime import feed
from backend.scheduled import repository
from backend.scheduled.models import ScheduledMessage, ScheduleStatus
from backend.scheduled.schemas import ScheduledMessageCreate, ScheduledMessagePage, ScheduledMessageRead
from backend.tickets import service as tickets
from backend.tickets.models import Ticket
from backend.tickets.states import is_open
from backend.users import service as users

log = structlog.get_logger()

OUTCOME = "scheduled-outcome"
SENT, CANCELED, FINALIZED, UNREACHABLE = "sent", "canceled", "finalized", "unreachable:"
EDITED, EDIT_REFUSED = "edited:", "edit-refused"
MIN_LEAD = timedelta(seconds=30)  # sooner than this is a reply: send it
MAX_LEAD = timedelta(days=365)
LIST_LIMIT = 200
MAX_WAITING_PER_TICKET = 20  # reminders, not a mailing: and what a finalize cancels at once
MAX_SAME_SCHEDULES = 20  # the same text at the same time scheduled again after the last one stopped waiting
DUE_BATCH = 200


def message_id_of(schedule_id: str) -> str:
    """The message a schedule becomes: the same for every attempt at sending it."""
    return hashlib.sha256(f"scheduled\0{schedule_id}".encode()).hexdigest()[:24]


async def schedule(db: Database, actor: Actor, *, ticket_id: str, data: ScheduledMessageCreate) -> ScheduledMessageRead:
    """The person holding the ticket schedules a reply (the same checks as replying now)."""
    return ScheduledMessageRead.of(await _store_new(db, actor, ticket_id=ticket_id, data=data))


async def _store_new(
    db: Database, actor: Actor, *, ticket_id: str, data: ScheduledMessageCreate, replaces: str | None = None
) -> ScheduledMessage:
    ticket = await messages.held_for_reply(db, actor, ticket_id)
    now = utcnow()
    send_at = as_utc(data.send_at)
    if send_at < now + MIN_LEAD:
        raise Unprocessable("send_at must be at least 30 seconds from now")
    if send_at > now + MAX_LEAD:
        raise Unprocessable("send_at must be within a year")
    waiting = [
        s
        for s in await repository.for_ticket(db, actor.scope, ticket.id, limit=LIST_LIMIT)
        if s.status == "scheduled" and s.id != replaces
    ]
    ids = [_schedule_id(actor, ticket.id, data, replaces, repeat) for repeat in range(MAX_SAME_SCHEDULES)]
    if (same := next((s for s in waiting if s.id in ids), None)) is not None:
        return same  # the same request again (its first answer was lost), even at the cap: stored once
    if len(waiting) >= MAX_WAITING_PER_TICKET:
        raise Conflict(f"a ticket can have at most {MAX_WAITING_PER_TICKET} scheduled messages waiting")
    assert actor.reseller_id
    for schedule_id in ids:
        created = _new_schedule(actor, ticket, data.body, send_at, replaces, now, schedule_id=schedule_id)
        try:
            await repository.insert(db, created)
            return created
        except DuplicateKeyError:
            found = await read_winner(
                functools.partial(repository.get_internal, db, schedule_id), what=f"schedule {schedule_id}"
            )
            if found.status == "scheduled":
                return found  # the same request again (its first answer was lost): stored once
    raise Conflict("the same message is scheduled too often at this time; retry")


def _schedule_id(actor: Actor, ticket_id: str, data: ScheduledMessageCreate, replaces: str | None, repeat: int) -> str:
    """The same for the same author, ticket, text, time and replaced schedule, so a request
    repeated because its answer never came back (a timeout, a second click) stores one schedule,
    not two that would both be sent; `repeat` > 0 for the same again once the first stopped
    waiting (sent, canceled, edited)."""
    what = f"schedule\0{actor.reseller_id}\0{ticket_id}\0{actor.id}\0{replaces}\0{as_utc(data.send_at).isoformat()}"
    return hashlib.sha256(f"{what}\0{repeat}\0{data.body}".encode()).hexdigest()[:24]


def _new_schedule(
    actor: Actor,
    ticket: Ticket,
    body: str,
    send_at: datetime,
    replaces: str | None,
    now: datetime,
    *,
    schedule_id: str,
) -> ScheduledMessage:
    assert actor.reseller_id
    return ScheduledMessage(
        id=schedule_id,
        reseller_id=actor.reseller_id,
        ticket_id=ticket.id,
        ticket_number=ticket.number,
        client_id=ticket.client_id,
        client_name=ticket.client_name,
        author_id=actor.id,
        author_name=actor.name,
        body=body,
        send_at=send_at,
        status="scheduled",
        replaces=replaces,
        created_at=now,
        updated_at=now,
    )


async def replace(
    db: Database, actor: Actor, *, schedule_id: str, data: ScheduledMessageCreate
) -> ScheduledMessageRead:
    """Its author edits a schedule still waiting (text, time or both): a new schedule takes its
    place, with the same checks as scheduling now (module docstring). 409 once it stopped waiting."""
    found = await repository.get(db, actor.scope, schedule_id) if is_valid_id(schedule_id) else None
    if found is None:
        raise NotFound("scheduled message not found")
    await tickets.get_visible_or_404(db, actor, ticket_id=found.ticket_id)
    if actor.id != found.author_id:
        raise Forbidden("only its author can edit a scheduled message")
    # An unfinished edit of it made by this same request (its answer lost) is this edit's repeat.
    same = {_schedule_id(actor, found.ticket_id, data, found.id, repeat) for repeat in range(MAX_SAME_SCHEDULES)}
    found = await _after_pending_edits(db, actor, found, but=same)
    if found.status != "scheduled":
        raise Conflict({"message": "the scheduled message is no longer waiting", "status": found.status})
    edited = await _store_new(db, actor, ticket_id=found.ticket_id, data=data, replaces=found.id)
    if await _take_place(db, edited) != EDITED + edited.id:
        current = await repository.get_internal(db, found.id)
        raise Conflict({"message": "the scheduled message is no longer waiting", "status": (current or found).status})
    return ScheduledMessageRead.of(edited)


async def _take_place(db: Database, edited: ScheduledMessage) -> str:
    """Claims the replaced schedule's outcome for `edited` and settles both as the key says: the
    edit's second write, made by the edit or, should it have died before, by the first pass or
    finalize hook that meets `edited`. Returns the replaced schedule's outcome."""
    assert edited.replaces is not None
    outcome, _ = await natural_keys.claim(db, OUTCOME, edited.reseller_id, edited.replaces, target=EDITED + edited.id)
    replaced = await repository.get_internal(db, edited.replaces)
    if replaced is not None:
        await _settle_unless_sending(db, replaced, outcome)
    if outcome != EDITED + edited.id:
        refused, _ = await natural_keys.claim(db, OUTCOME, edited.reseller_id, edited.id, target=EDIT_REFUSED)
        await settle(db, edited, refused)
    return outcome


async def _finish_decided(db: Database, schedules: list[ScheduledMessage]) -> bool:
    """Settles each schedule shown waiting whose fate is decided already: its outcome key claimed
    by a cancel or an edit whose answer (or status write) was lost, or an edit of it stored whose
    claim was lost (finished here as its pass would: `_take_place`). Without this a list shows
    "Agendada", with Cancelar, a message that will never leave, until its time. One or two reads by
    `_id` per waiting schedule. True when something was settled (the caller reads again)."""
    changed = False
    for schedule in schedules:
        if schedule.status != "scheduled":
            continue
        outcome = await natural_keys.lookup(db, OUTCOME, schedule.reseller_id, schedule.id)
        if outcome == SENT:
            continue  # a pass claimed it and is sending it, or died doing so: the next pass finishes it
        if outcome is not None:
            await settle(db, schedule, outcome)
            changed = True
        elif schedule.replaces is not None:
            replaced = await natural_keys.lookup(db, OUTCOME, schedule.reseller_id, schedule.replaces)
            if replaced != EDITED + schedule.id:
                await _take_place(db, schedule)
                changed = True
    return changed


async def _after_pending_edits(
    db: Database,
    actor: Actor,
    found: ScheduledMessage,
    *,
    but: Collection[str] = (),
) -> ScheduledMessage:
    """`found` as it stands once an edit of it stored and left unfinished (its claim lost) took
    its place: a cancel or another edit from a screen that still showed `found` waiting then meets
    that edit (409), instead of making the pass refuse it unseen. `but`: edits not to finish here."""
    ticket_list = await repository.for_ticket(db, actor.scope, found.ticket_id, limit=LIST_LIMIT)
    pending = [s for s in ticket_list if s.replaces == found.id and s.status == "scheduled" and s.id not in but]
    if not pending or not await _finish_decided(db, pending):
        return found
    return await repository.get_internal(db, found.id) or found


async def list_for_ticket(db: Database, actor: Actor, *, ticket_id: str) -> ScheduledMessagePage:
    """Everything scheduled in a ticket, whatever became of it, soonest first."""
    ticket = await tickets.get_visible_or_404(db, actor, ticket_id=ticket_id)
    found = await repository.for_ticket(db, actor.scope, ticket.id, limit=LIST_LIMIT)
    if await _finish_decided(db, found):
        found = await repository.for_ticket(db, actor.scope, ticket.id, limit=LIST_LIMIT)
    return ScheduledMessagePage(items=await _shown(db, found))


async def list_page(
    db: Database,
    actor: Actor,
    *,
    status: ScheduleStatus | None,
    author_id: str | None,
    cursor: str | None,
    limit: int,
) -> ScheduledMessagePage:
    """The tenant's scheduled messages, soonest first ("Agendamentos"): the reseller owner sees
    everyone's (or one author's), an agent the ones they wrote."""
    query: dict[str, object] = {}
    if status is not None:
        query["status"] = status
    if actor.role == "agent":
        query["author_id"] = actor.id
    elif author_id is not None:
        query["author_id"] = author_id
    after = decode_time_cursor(cursor) if cursor else None
    found = await repository.page(db, actor.scope, query, after=after, limit=limit + 1)
    if await _finish_decided(db, found[:limit]):
        found = await repository.page(db, actor.scope, query, after=after, limit=limit + 1)
    nxt = encode_cursor([found[limit - 1].send_at.isoformat(), found[limit - 1].id]) if len(found) > limit else None
    return ScheduledMessagePage(items=await _shown(db, found[:limit]), next_cursor=nxt)


async def _shown(db: Database, schedules: list[ScheduledMessage]) -> list[ScheduledMessageRead]:
    """The API's shape, a sent one with its message's delivery (one read by `_id` each): queued is
    not sent, and a message WhatsApp refused must not read "sent" on the schedule."""

    async def one(schedule: ScheduledMessage) -> ScheduledMessageRead:
        read = ScheduledMessageRead.of(schedule)
        if schedule.status != "sent":
            return read
        message = await message_store.get_internal(db, schedule.message_id or message_id_of(schedule.id))
        if message is None:  # settled by a pass that stored it a moment ago, or is about to
            return read.model_copy(update={"delivery": "pending"})
        return read.model_copy(update={"delivery": message.status, "failure_reason": message.failure_reason})

    return list(await asyncio.gather(*(one(s) for s in schedules)))


async def cancel(db: Database, actor: Actor, *, schedule_id: str) -> ScheduledMessageRead:
    """Its author, the person holding its ticket or the reseller owner cancels a schedule not yet
    sent (409 once it was; a second cancel answers the first one's result)."""
    found = await repository.get(db, actor.scope, schedule_id) if is_valid_id(schedule_id) else None
    if found is None:
        raise NotFound("scheduled message not found")
    ticket = await tickets.get_visible_or_404(db, actor, ticket_id=found.ticket_id)
    if actor.role != "reseller" and actor.id not in (found.author_id, ticket.agent_id):
        raise Forbidden("only its author, the ticket's holder or the reseller can cancel a scheduled message")
    found = await _after_pending_edits(db, actor, found)  # an edit of it that was stored stands
    outcome, _ = await natural_keys.claim(db, OUTCOME, found.reseller_id, found.id, target=CANCELED)
    settled = await _settle_unless_sending(db, found, outcome)
    if outcome != CANCELED:
        status = "sent" if outcome == SENT else settled.status
        raise Conflict({"message": "the scheduled message is no longer waiting", "status": status})
    return ScheduledMessageRead.of(settled)


async def _settle_unless_sending(db: Database, schedule: ScheduledMessage, outcome: str) -> ScheduledMessage:
    """`settle`, except for "sent" (a pass's claim), which only the sender writes once the message
    is stored (`deliver`, `after_finalize`): read "sent", a schedule is never taken by a pass
    again, so a cancel or an edit that met the claim of a pass that died before storing its
    message must not write it — the next pass sends it."""
    return schedule if outcome == SENT else await settle(db, schedule, outcome)


async def settle(db: Database, schedule: ScheduledMessage, outcome: str) -> ScheduledMessage:
    """Writes onto the schedule what its outcome key says (idempotent: every writer writes the same)."""
    if outcome == SENT:
        changes: dict[str, object] = {"status": "sent", "reason": None, "message_id": message_id_of(schedule.id)}
    elif outcome in (CANCELED, FINALIZED):
        changes = {"status": "canceled", "reason": outcome}
    elif outcome.startswith(EDITED):
        changes = {"status": "canceled", "reason": "edited", "replaced_by": outcome.removeprefix(EDITED)}
    elif outcome == EDIT_REFUSED:
        changes = {"status": "canceled", "reason": "edit_refused"}
    else:
        changes = {"status": "failed", "reason": outcome.removeprefix(UNREACHABLE)}
    if all(getattr(schedule, k) == v for k, v in changes.items()):
        return schedule
    now = utcnow()
    changes.update(updated_at=now, settled_at=schedule.settled_at or now)
    await repository.settle_internal(db, schedule.id, changes)
    settled = schedule.model_copy(update=changes)
    await _announce(db, settled)
    return settled


async def _announce(db: Database, schedule: ScheduledMessage) -> None:
    """Tells the screens that see its ticket (the author's among them: a failure is theirs to
    know of, wherever they are in the app). Never raises (feed.publish): the schedule is settled."""
    ticket = await tickets.get_internal(db, schedule.ticket_id)
    if ticket is not None:
        (read,) = await _shown(db, [schedule])
        shown = read.model_dump(mode="json")
        await feed.publish(
            db, reseller_id=schedule.reseller_id, type_="scheduled.settled", ticket=ticket, data={"schedule": shown}
        )


async def deliver(db: Database, schedule: ScheduledMessage) -> ScheduledMessage:
    """Sends a due schedule, or settles why it is not sent. Safe to repeat at any point."""
    outcome = await natural_keys.lookup(db, OUTCOME, schedule.reseller_id, schedule.id)
    if outcome is None and schedule.replaces is not None and await _take_place(db, schedule) != EDITED + schedule.id:
        # What it replaced was sent or settled first: _take_place settled this one ("edit_refused",
        # or whatever claimed it before), and it never goes.
        return await repository.get_internal(db, schedule.id) or schedule
    if outcome is None:
        ticket = await tickets.get_internal(db, schedule.ticket_id)
        if ticket is None or not is_open(ticket.status):
            wanted = FINALIZED
        else:
            reason = connections.blocked(await connections.of_ticket(db, ticket))
            wanted = SENT if reason is None else UNREACHABLE + reason
        outcome, _ = await natural_keys.claim(db, OUTCOME, schedule.reseller_id, schedule.id, target=wanted)
    if outcome == SENT:
        await _send(db, schedule)
    return await settle(db, schedule, outcome)


async def _send(db: Database, schedule: ScheduledMessage) -> None:
    message_id = message_id_of(schedule.id)
    stored = await message_store.get_internal(db, message_id)
    if stored is not None:
        # Stored by an earlier pass (its outbox entry went in before it), which may have failed
        # before what follows a stored reply: its announcement, the ticket's activity, the reports.
        await messages.complete_stored(db, stored)
        return
    ticket = await tickets.get_internal(db, schedule.ticket_id)
    if ticket is None:
        raise LookupError(f"ticket {schedule.ticket_id} of scheduled message {schedule.id} not found")
    author = await _author(db, schedule)
    await messages.send_as_agent(
        db, author, ticket, body=schedule.body, message_id=message_id, scheduled_id=schedule.id
    )


async def _author(db: Database, schedule: ScheduledMessage) -> Actor:
    """The author as they are now (name, departments); as they were, should their user be gone."""
    user = await users.get_internal(db, schedule.author_id)
    if user is None:
        return Actor(id=schedule.author_id, role="agent", name=schedule.author_name, reseller_id=schedule.reseller_id)
    return user.as_actor()


async def after_finalize(db: Database, ticket: Ticket) -> None:
    """A finalize hook (backend/gates.py): the ticket's schedules still waiting are canceled with
    it, at once rather than at their time. Idempotent, like every finalize hook: a pass that
    claimed "sent" first keeps it (its message is one the finalize raced, as a reply can be)."""
    for waiting in await repository.for_ticket(db, TenantScope(ticket.reseller_id), ticket.id, limit=LIST_LIMIT):
        if waiting.status == "scheduled":
            outcome, _ = await natural_keys.claim(db, OUTCOME, waiting.reseller_id, waiting.id, target=FINALIZED)
            if outcome == SENT:
                await _send(db, waiting)
            await settle(db, waiting, outcome)


async def overdue_seconds(db: Database) -> float:
    """How late the soonest schedule still waiting is (0 when none is): a due pass that stopped
    shows here (backend/monitoring, `iaze_scheduled_overdue_seconds`)."""
    soonest = await repository.soonest_waiting_internal(db)
    return 0.0 if soonest is None else max(0.0, (utcnow() - as_utc(soonest)).total_seconds())


async def run_due(db: Database, now: datetime | None = None) -> int:
    """One pass: every schedule whose time has come, `DUE_BATCH` at a time. Returns how many it
    settled. One that fails (the store, or a bug) waits for the next pass, and the read goes on
    after it: however many fail at every pass, they never hold back the schedules behind them."""
    now = now or utcnow()
    settled = 0
    after: tuple[datetime, str] | None = None
    while batch := await repository.due_internal(db, now, after=after, limit=DUE_BATCH):
        for due in batch:
            try:
                await deliver(db, due)
                settled += 1
            except Exception as exc:
                log.warning("scheduled message not sent; retrying", schedule_id=due.id, error=str(exc))
        if len(batch) < DUE_BATCH:
            break
        after = (batch[-1].send_at, batch[-1].id)
    return settled


async def run_until(db: Database, settings: Settings, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await run_due(db)
        except Exception as exc:  # reading what is due failed: the next pass reads again
            log.warning("scheduled messages pass failed; retrying", error=str(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.SCHEDULED_MESSAGES_POLL_SECONDS)


def background(db: Database, settings: Settings, *, enabled: bool = True) -> BackgroundLoop:
    """The due pass inside a backend process's lifespan (SCHEDULED_MESSAGES_ENABLED)."""
    return BackgroundLoop(
        "scheduled-messages", run_until, db, settings, enabled=enabled and settings.SCHEDULED_MESSAGES_ENABLED
    )
