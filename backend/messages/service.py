"""A ticket's thread: appending (idempotent when the caller supplies the id) and reading.

A client message is never left in a ticket finalized under it. Intake looks up the client's
open ticket and then stores the message; an agent can press Finalizar in between. No store
offers a write conditional on another document, so both sides write first and then read the
other's write (the Dekker handshake):

- the message side (`append`, and `complete_stored` for a retried delivery): after storing the
  message, re-load its ticket folding the event log (in `append`, its activity write answers
  with the ticket as that write found it, and `projection.settle` folds the log past it: that is
  the re-load; `complete_stored` uses `tickets.load`); if it is
  finalizado, move the message on to the client's next open ticket on the channel
  (`tickets.open_after`);
- the finalize side (`refile_after_finalize`, called by the finalize once its event is stored):
  read the ticket's client messages stamped after `finalized_at` and move them the same way.

Why no client message ends in a finalizado ticket X stamped after X's `finalized_at`, in every
interleaving. Let W be the last write that filed the message under X (its insert or a move), P
the caller that made it, F the insert of X's finalize event (nothing else makes X finalizado,
and `load` reads it by `_id`), S the finalize's read of X's messages, which starts once F is
acknowledged. P re-loads X once W is acknowledged.
- W before S: S sees the message under X; stamped after `finalized_at`, the finalize moves it
  (or finds it already moved by someone else, so X is not where it ends).
- W after S: then W is after F, P's re-load sees X finalizado and P moves it, whatever the times.
A move only ever files a message under a later slot's ticket, never back under X, and each mover
re-checks its own write the same way, so a chain of finalizes is covered step by step. Moves go
through a write conditional on the message still being under the ticket the mover judged; a
mover that finds it moved re-reads it and goes on from where it went, completing it there (its
number, activity and announcement are safe to repeat): the mover that moved it may fail before it
does, and a refile that left the message to it would mark its scan done with the message counted
and announced nowhere (FerretDB runs that condition as read, check, write: two movers may both
write, and then both re-check their own target, which the slot walk makes the same ticket). So
a message stays under a finalized X only if it was stored and re-checked while X was open (so
announced under X before the finalize was stored) and its `created_at` is not after
`finalized_at`.

Clocks: `finalized_at` is taken before the event insert and `created_at` before the message
insert, so neither orders the two writes: a message stamped before `finalized_at` can still be
stored after the finalize (one process pausing between stamp and insert, or two processes'
clocks apart). That is why the message side compares no times and trusts only the order of its
own write and re-read. The finalize side cannot tell which earlier messages its agent saw, so it
moves only those its `finalized_at` precedes.

Where it ends: a process killed between its write and its re-check. For a webhook delivery the
processor retries it and `complete_stored` re-checks (it cannot tell whether the killed attempt
got past its re-check, so it moves a message whose ticket is finalizado now: a message shown in
a second ticket, never one shown nowhere); a message posted through the API was not
acknowledged. A finalize request killed between its event and its scan leaves a message stamped
after `finalized_at` but stored and announced while the ticket was open where it is.
"""

import hashlib
from dataclasses import replace
from datetime import timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from backend.connections import service as connections
from backend.connections.providers.base import REVOKE_CHANGE, change_key
from backend.core import metrics, natural_keys
from backend.core.clock import as_utc, utcnow
from backend.core.db import Database
from backend.core.errors import Conflict, Forbidden, NotFound
from backend.core.ids import new_id
from backend.core.logging import get_logger
from backend.core.pagination import decode_time_cursor, encode_cursor
from backend.core.retry import read_winner
from backend.core.runtime import MessageHook, RacedOpening, runtime_of
from backend.core.tenancy import Actor, TenantScope
from backend.messages import repository
from backend.messages.models import Message, Quoted
from backend.messages.schemas import MessagePage, MessageRead
from backend.outbound import service as outbound
from backend.realtime import feed
from backend.resellers import service as resellers
from backend.tickets import projection
from backend.tickets import service as tickets
from backend.tickets.projection import Activity
from backend.tickets.states import Status, is_open
from backend.unread import service as unread

log = get_logger("messages")

PREVIEW_CHARS = projection.PREVIEW_CHARS  # how much of a message its ticket's preview shows
CLIENT = "client"
COUNTED_DIRECTIONS = ("in", "out")  # iaze_messages_total: the conversation, not internal notes
# Each move files a message one finalized ticket further; only a finalize storm on one client's
# channel could need more.
MAX_MOVES = 100
# How long after sending WhatsApp lets a message be edited (its own rule; the provider is refused later).
EDIT_WINDOW = timedelta(minutes=15)
QUOTE_PREVIEW_CHARS = 300  # how much of a quoted message a reply keeps (the quote bubble)
REFILED_KEY = "refiled"  # "refiled:<ticket>": the finalize's scan of `ticket` ran to its end


def message_id_for(connection_id: str, provider_message_id: str) -> str:
    """Deterministic, id-shaped: the same provider message on the same connection is one `_id`
    (a redelivery stores nothing twice); also the id of a change recorded for it ("revoke:<id>:…",
    `record_change`), so the same change from two sides is one record."""
    return hashlib.sha256(f"{connection_id}:{provider_message_id}".encode()).hexdigest()[:24]


def change_id_for(connection_id: str, kind: str, provider_message_id: str, change_id: str) -> str:
    """The record of a change to the message `provider_message_id` (webhooks `_apply_change`)."""
    return message_id_for(connection_id, change_key(kind, provider_message_id, change_id))


async def append(
    db: Database,
    ticket: tickets.Ticket,
    *,
    direction: str,
    sender_type: str,
    sender_id: str | None,
    sender_name: str,
    body: str,
    status: str,
    message_id: str | None = None,
    type_: str = "text",
    media: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    keep_in_finalized: bool = False,
    opened: bool = False,
) -> tuple[Message, bool]:
    """Stores the message, then moves the ticket's activity. Returns (message, created).

    With a deterministic `message_id` (e.g. derived from a provider's message id) a redelivery
    finds the stored message and changes nothing. `keep_in_finalized`: a client's rating of its
    finalized ticket (backend/automation), which belongs to that ticket and is marked `rating`:
    the handshake below and the finalize's refile leave it there. `opened`: a client message whose
    arrival opened `ticket`, which shows it from event v1 (tickets/intake.py): it takes the
    ticket's creation time, the activity event v1 already shows, so no activity write is made.
    """
    doc = Message(
        id=message_id or new_id(),
        ticket_id=ticket.id,
        reseller_id=ticket.reseller_id,
        department_id=ticket.department_id,
        agent_id=ticket.agent_id,
        channel=ticket.channel,
        direction=direction,
        sender_type=sender_type,
        sender_id=sender_id,
        sender_name=sender_name,
        type=type_,
        body=body,
        media=media,
        status=status,
        created_at=ticket.created_at if opened else utcnow(),
        **(extra or {}),
    )
    try:
        await repository.insert(db, doc)
    except DuplicateKeyError:
        existing = await read_winner(lambda: repository.get_internal(db, doc.id), what=f"message {doc.id}")
        return existing, False
    if direction in COUNTED_DIRECTIONS:
        metrics.MESSAGES.labels(reseller_id=ticket.reseller_id, direction=direction).inc()
    if sender_type == CLIENT and not keep_in_finalized:
        doc = await _file_client_message(db, ticket, doc, opened=opened)
    else:
        await _after_stored(db, ticket, doc)
    await _recorded(db, doc, ticket)
    return doc, True


def on_stored(db: Database, hook: MessageHook) -> None:
    """Registers what records every stored message (the reports; backend/gates.py)."""
    hooks = runtime_of(db).message_hooks
    if hook not in hooks:
        hooks.append(hook)


async def _recorded(db: Database, message: Message, ticket: tickets.Ticket) -> None:
    """Runs the message hooks once the message is filed where it stays (after any move); each
    hook is idempotent, and a retried delivery runs them again (`complete_stored`)."""
    for hook in runtime_of(db).message_hooks:
        await hook(db, message, ticket)


async def _file_client_message(db: Database, ticket: tickets.Ticket, message: Message, *, opened: bool) -> Message:
    """A client message just stored under `ticket` (as its caller read it, open, before the
    insert): its activity is written, and the write answers with the document as it found it —
    a read made after our insert was acknowledged — which `projection.settle` completes with the
    event log (events v+1, v+2, … by `_id`): that is the message side's re-load of the handshake
    (module docstring), so no separate read of the ticket is made, before or after the write.
    The message that opened the ticket (`opened`) writes no activity: event v1 shows it already,
    and settle's read of the log past v1, made after the insert, is the re-load. When the settled ticket is
    finalizado, a finalize came between the caller's read and now: the message moves on as
    `_keep_out_of_finalized` moves it, and is announced only where it ends. The activity written
    to the finalized ticket meanwhile is that of a message that raced its finalize and moved on,
    which a finalized ticket may keep (the same as when its writer saw it open). Its number in
    the unread count is taken only in the ticket it ends in."""
    activity = _activity(ticket, message)
    # A ticket this message opened shows it already (event v1: tickets/intake.py): no write, and
    # settle's read of the log past event v1, made after the insert, is the re-load all the same.
    shown = opened and activity.shown_by(ticket)
    written = ticket if shown else await tickets.touch_activity(db, ticket, activity=activity)
    settled = await projection.settle(db, ticket.id, activity=activity, read=written)
    if settled is not None and is_open(settled.status):
        number = await unread.record_inbound(db, ticket, message)
        await _announce(db, settled, message, number)
        return message
    filed, message = await _keep_out_of_finalized(db, message, stamped_after_only=False)
    await _after_stored(db, filed, message)
    return message


async def _keep_out_of_finalized(
    db: Database, message: Message, *, stamped_after_only: bool
) -> tuple[tickets.Ticket, Message]:
    """Re-loads the ticket the client message is filed under and, while it is finalizado, moves
    the message on to the client's next open ticket on the channel (see the module docstring).
    Returns (the ticket it is in, message), also when another mover moved it first: the caller
    completes it there, as that mover does unless it fails first. `stamped_after_only`: the
    finalize's side, which moves a message only if it is stamped after `finalized_at`."""
    for _ in range(MAX_MOVES):
        ticket = await tickets.load(db, message.ticket_id)
        assert ticket is not None  # a message is only ever filed under a ticket that exists
        if is_open(ticket.status):
            return ticket, message
        if stamped_after_only and ticket.finalized_at and as_utc(message.created_at) <= as_utc(ticket.finalized_at):
            return ticket, message
        hook = runtime_of(db).raced_opening  # what the ticket opened for it starts with (on_raced_open)
        target = await tickets.open_after(db, ticket, opening=hook(db, ticket, message) if hook is not None else None)
        if await repository.move_to_ticket(
            db, message.id, from_ticket_id=ticket.id, to_ticket_id=target.id, at=utcnow()
        ):
            message = message.model_copy(update={"ticket_id": target.id, "moved_from_ticket_id": ticket.id})
        else:  # another mover's move: followed to where it went (module docstring)
            fresh = await repository.get_internal(db, message.id)
            assert fresh is not None  # messages are never deleted
            message = fresh
        # The move (ours or the other mover's) may have landed after the target's finalize:
        # judged like an insert.
        stamped_after_only = False
    raise Conflict("the client's tickets are being finalized too fast; retry")


def on_raced_open(db: Database, hook: RacedOpening) -> None:
    """Registers what a ticket opened for a client message that raced a finalize starts with (the
    automatic messages' markers: it is greeted and offered the menu as any new ticket is,
    backend/automation; gates.connect_domains)."""
    runtime_of(db).raced_opening = hook


async def refile_after_finalize(db: Database, ticket: tickets.Ticket) -> None:
    """The finalize's half of the handshake: `ticket` was just finalized (event stored and
    projected); its client messages stamped after `finalized_at` raced it and move on.

    Once a scan has run to its end after the finalize, any later client message is re-checked by
    its own writer (module docstring), so the scan is marked done (a natural key) and a re-run
    skips it: the sweep re-runs the finalize's hooks for every finalized ticket with a message
    after its finalize, which the automatic closing message makes the usual case, and on FerretDB
    this scan reads the whole collection.

    Each message is refiled on its own: one that fails (a bug, a store error) is logged and the
    ones after it still move on; the first failure is then raised, so the scan is not marked done
    and the finalize's hooks are not either (tickets.after_finalize): the sweep runs them again,
    and this scan with them. A document that does not read as a message is logged and passed over
    (repository.client_messages_after_internal) and does not hold the scan open: an operator who
    mends it finds it in the finalized ticket."""
    if await natural_keys.lookup(db, REFILED_KEY, ticket.id) is not None:
        return
    assert ticket.finalized_at is not None  # just finalized
    failed: list[Exception] = []
    for message in await repository.client_messages_after_internal(db, ticket.id, as_utc(ticket.finalized_at)):
        try:
            await _refile(db, ticket, message)
        except Exception as exc:
            log.error("raced message not refiled", ticket_id=ticket.id, message_id=message.id, error=str(exc))
            failed.append(exc)
    if failed:
        raise failed[0]
    await natural_keys.claim(db, REFILED_KEY, ticket.id, target=ticket.id)


async def _refile(db: Database, ticket: tickets.Ticket, message: Message) -> None:
    """One client message found after `ticket`'s finalize, moved on. One moved on already (by an
    earlier run of the scan that stopped after the move, by another run under way, or by its own
    writer) is completed where it is: its number, activity and announcement there may be what that
    mover never wrote; each is safe to repeat. The scan is marked done once every one returned, so
    no later run looks at it again."""
    filed, moved = await _keep_out_of_finalized(db, message, stamped_after_only=message.ticket_id == ticket.id)
    if filed.id != ticket.id:
        await _after_stored(db, filed, moved)


def _activity(ticket: tickets.Ticket, message: Message) -> Activity:
    activity = Activity.of(message)
    if as_utc(ticket.created_at) > activity.at:
        # A message moved on from a finalized ticket can predate the ticket it moved to, which
        # was opened for it: its activity is then the opening, or the queue shows no preview.
        activity = replace(activity, at=as_utc(ticket.created_at))
    return activity


async def _after_stored(db: Database, ticket: tickets.Ticket, message: Message) -> None:
    """What follows a stored message: a client message takes its number in the ticket's unread
    count, the ticket's activity moves, then the announcement. The activity write is read back
    (projection.settle): on FerretDB a concurrent transition can write back the older activity,
    and our write can put back an older status."""
    number = await unread.record_inbound(db, ticket, message)
    activity = _activity(ticket, message)
    written = await tickets.touch_activity(db, ticket, activity=activity)
    settled = await projection.settle(db, ticket.id, activity=activity, read=written)
    # Announced as the ticket now is (log and activity), not as it was when this message arrived.
    current = settled if settled is not None else ticket.model_copy(update=activity.fields())
    await _announce(db, current, message, number)


async def _announce(db: Database, ticket: tickets.Ticket, message: Message, number: int | None) -> None:
    """`message.created`, with a client message's inbound number: a screen whose reader's
    `ticket.read` counted through it already (a read made before this announcement) does not
    count it again. Required: a stored message no screen was told of is lost to them until a
    reload, so the error goes to the caller, whose retry announces it (`complete_stored`)."""
    await feed.publish(
        db,
        reseller_id=ticket.reseller_id,
        type_="message.created",
        ticket=ticket,
        message=message,
        data={"inbound_n": number} if number is not None else None,
        required=True,
    )


async def complete_stored(db: Database, message: Message) -> None:
    """For a retry that finds its message already stored: the earlier attempt may have stopped
    (process killed, database error) between storing it and announcing it, which would leave
    the ticket's activity behind and every open screen without the message until a reload.
    Both steps are safe to repeat — activity only moves forward, and a second announcement is a
    later feed seq that clients apply by message id — so the retry simply does them again."""
    ticket: tickets.Ticket | None
    if message.sender_type == CLIENT and message.rating is None and message.annotates is None:
        # The killed attempt may have stopped before its re-check (module docstring).
        ticket, message = await _keep_out_of_finalized(db, message, stamped_after_only=False)
    else:
        ticket = await tickets.load(db, message.ticket_id)
    if ticket is not None:
        await _after_stored(db, ticket, message)
        await _recorded(db, message, ticket)
        # A reply whose insert landed after the worker passed its entry (its answer lost, this
        # the repeat): queued again, or it would never be sent.
        await outbound.queue_again_if_passed(db, message, ticket)


def chat_sender(*, ours: bool, client_id: str, client_name: str) -> dict[str, Any]:
    """Who a message of a WhatsApp chat is from, as `append` takes it: the client, or the
    connection's own phone (typed there, outside IAZE: no IAZE user wrote it; it already left)."""
    if ours:
        return {
            "direction": "out",
            "sender_type": "system",
            "sender_id": None,
            "sender_name": "WhatsApp",
            "status": "sent",
        }
    return {
        "direction": "in",
        "sender_type": CLIENT,
        "sender_id": client_id,
        "sender_name": client_name,
        "status": "received",
    }


async def record_change(
    db: Database,
    target: Message,
    *,
    kind: str,
    message_id: str,
    body: str,
    from_me: bool | None,
    connection_id: str,
) -> tuple[Message, bool] | None:
    """Records what was done to `target` (an edit, a deletion for everyone, a reaction) as a
    message of its own beside it, in its ticket, quoting it: `target` itself is never rewritten,
    so it keeps what it said, and no second writer of its document can undo a move of it or its
    media's status (on FerretDB every update writes the whole document back). Like a survey's
    rating, it stays in that ticket whatever its state: a reaction to a closed conversation opens
    no new one, and neither the finalize's refile nor a retry moves it. `from_me`: made on the
    connection's own phone (None: by whoever sent `target`, the only one who can edit or delete
    it). Returns (message, created), None when the ticket is gone (never: nothing is deleted).
    Idempotent by `message_id`."""
    ticket = await tickets.load(db, target.ticket_id)
    if ticket is None:
        return None
    ours = from_me if from_me is not None else target.direction == "out"
    return await append(
        db,
        ticket,
        **chat_sender(ours=ours, client_id=ticket.client_id, client_name=ticket.client_name),
        body=body,
        message_id=message_id,
        type_=kind,
        extra={"annotates": target.id, "quoted": quote(target), "connection_id": connection_id},
        keep_in_finalized=True,
    )


async def set_media(
    db: Database, message_id: str, changes: dict[str, Any], *, message: Message | None = None
) -> Message | None:
    """Merges `changes` into a message's `media` (the media fetch: pending → ready or failed, and
    back to pending on a retry) and announces the message again, as delivery status changes are
    (`message.status`, carrying the whole message). None when there is no such message.
    `message`: the caller's read of it, tried first; the write is conditioned on its ticket, so
    a move since makes it read the message again, as a move during the write does."""
    for _ in range(MAX_MOVES):
        if message is None:
            message = await repository.get_internal(db, message_id)
        if message is None:
            return None
        updated = await repository.set_media_internal(db, message, changes)
        if updated is not None:
            await outbound.announce_status(db, updated)
            return updated
        message = None
    raise Conflict("the message is being moved too fast; retry")


async def announce_again(db: Database, message: Message) -> None:
    """Announces the message as stored (`message.status`, as `set_media` does), for a worker that
    finds its own write done but may have lost the answer to it (and so the announcement after it)."""
    await outbound.announce_status(db, message)


def signed(agent_name: str, body: str) -> str:
    """The reply as WhatsApp shows an agent's message in shared-number helpdesks: the name in
    bold (WhatsApp's `*bold*` markup) with a colon, then the text on the next line: "*Ana:*",
    a line break, "Bom dia!". Stored exactly so: the thread shows what the client received, and the
    echo of the send matches the stored body. Asterisks in the name would break the bold markup,
    so they are left out of it."""
    name = " ".join(agent_name.replace("*", "").split())
    return f"*{name}:*\n{body}" if name else body


async def held_for_reply(db: Database, actor: Actor, ticket_id: str) -> tickets.Ticket:
    """The ticket, when the actor may reply in it: the person holding it — an agent, or the
    reseller owner acting as one (403, 404, 409 otherwise). Refused too (409 with `reason`) when
    nothing can reach the client — no connection, or one deactivated or not connected — rather
    than store a message that would show as sent, or wait forever, without ever leaving; checked
    before any upload is read."""
    if actor.role not in ("agent", "reseller"):
        raise Forbidden("only the person holding the ticket can reply")
    ticket = await tickets.get_visible_or_404(db, actor, ticket_id=ticket_id)
    if ticket.status != Status.ATENDENDO.value or ticket.agent_id != actor.id:
        raise Conflict({"message": "assume the ticket before replying", "status": ticket.status})
    blocked = connections.blocked(await connections.of_ticket(db, ticket))
    if blocked is not None:
        raise Conflict({"message": "the client cannot be reached from this ticket", "reason": blocked})
    return ticket


async def quote_of(db: Database, ticket: tickets.Ticket, quoted_message_id: str | None) -> Quoted | None:
    """What a reply quotes: a message of the same ticket, as it reads now (internal notes are never
    sent, so never quoted). 404 for anything else, other tenants' messages included."""
    if quoted_message_id is None:
        return None
    quoted = await repository.get_internal(db, quoted_message_id)
    if quoted is None or quoted.ticket_id != ticket.id or quoted.direction == repository.NOTE_DIRECTION:
        raise NotFound("quoted message not found in this ticket")
    return quote(quoted)


def quote(message: Message) -> Quoted:
    """How a message is quoted by one that answers or changes it: its id, kind and first words."""
    return Quoted(message_id=message.id, body=message.body[:QUOTE_PREVIEW_CHARS], type=message.type)


async def send_as_agent(
    db: Database,
    actor: Actor,
    ticket: tickets.Ticket,
    *,
    body: str,
    message_id: str | None = None,
    sign: bool = True,
    type_: str = "text",
    media: dict[str, Any] | None = None,
    quoted: Quoted | None = None,
    annotates: str | None = None,
    scheduled_id: str | None = None,
) -> Message:
    """Stores `body` (and a file's media, a quote) as `actor`'s message to the client and queues
    it for sending, signed as the reseller's settings say. The caller checked that the client can
    be reached (held_for_reply, or the start of a conversation in tickets.intake). `annotates`:
    the message a reaction, a deletion or an edit changes (`react`, `revoke`, `edit`);
    `scheduled_id`: the scheduled message it is (backend/scheduled)."""
    message_id = message_id or new_id()
    if sign and await resellers.signature_enabled(db, ticket.reseller_id):
        body = signed(actor.name, body) if body else signed(actor.name, "").rstrip("\n")
    # Queued before the message is stored and before any network call: a crash anywhere
    # after this leaves the worker something to pick up (backend/outbound).
    await outbound.enqueue(db, message_id=message_id, ticket=ticket)
    doc, created = await append(
        db,
        ticket,
        direction="out",
        sender_type="agent",
        sender_id=actor.id,
        sender_name=actor.name,
        body=body,
        status="pending",
        message_id=message_id,
        type_=type_,
        media=media,
        extra={
            **({"quoted": quoted} if quoted is not None else {}),
            **({"annotates": annotates} if annotates else {}),
            **({"scheduled_id": scheduled_id} if scheduled_id else {}),
        },
    )
    if not created:
        # A concurrent attempt with this id (a repeated click's Idempotency-Key, a scheduled
        # message's second pass) stored it between the caller's look and our insert: it may yet
        # fail before announcing it, and this answer tells the caller it is done.
        await complete_stored(db, doc)
    else:
        await outbound.queue_again_if_passed(db, doc, ticket)  # an insert that landed past a lease
    outbound.wake(db)
    return doc


async def _whatsapp_message_of(db: Database, ticket: tickets.Ticket, message_id: str) -> Message:
    """A message of `ticket` that went over WhatsApp (not an internal note); 404 for anything else."""
    target = await repository.get_internal(db, message_id)
    if target is None or target.ticket_id != ticket.id or target.direction == repository.NOTE_DIRECTION:
        raise NotFound("message not found in this ticket")
    return target


async def revoke(db: Database, actor: Actor, *, ticket_id: str, message_id: str) -> MessageRead:
    """The person holding the ticket deletes for everyone a message the connection sent (WhatsApp
    lets only the sender, within its own time limit, which the provider enforces: a refusal shows
    as the failure of this entry). Recorded like a client's deletion (type "revoke", `annotates`,
    quoting it): the message itself is kept, as everything is. Its id is the one the provider's
    report of the deletion files under (`change_id_for`), so that report is no second record, and
    a second click is the same one."""
    ticket = await held_for_reply(db, actor, ticket_id)
    target = await _whatsapp_message_of(db, ticket, message_id)
    if target.direction != "out" or target.annotates is not None or not target.provider_message_id:
        raise Conflict("only a message the connection sent can be deleted for everyone")
    connection_id = str(target.connection_id or ticket.channel)
    record_id = change_id_for(connection_id, "revoke", target.provider_message_id, REVOKE_CHANGE)
    sent = await send_as_agent(
        db,
        actor,
        ticket,
        body="",
        sign=False,
        type_="revoke",
        quoted=quote(target),
        annotates=target.id,
        message_id=record_id,
    )
    return MessageRead.of_message(sent)


async def edit(db: Database, actor: Actor, *, ticket_id: str, message_id: str, body: str) -> MessageRead:
    """The person holding the ticket corrects a text reply of its own, within WhatsApp's
    EDIT_WINDOW (the provider is told to edit it; WhatsApp refuses later edits). Recorded like a
    client's edit (type "edit", `annotates`, quoting the message, the new text signed as a reply
    is): the message itself keeps its first text, as everything is kept, and the thread shows
    the edit beside it. Sent through the outbox in the chat's order, with ticks. The provider's
    report of this edit (its echo) is told apart from an edit made on the phone as a reply's
    echo is (webhooks `_apply_change`, outbound.from_me_verdict)."""
    ticket = await held_for_reply(db, actor, ticket_id)
    target = await _whatsapp_message_of(db, ticket, message_id)
    if target.sender_type != "agent" or target.sender_id != actor.id or target.type != "text":
        raise Conflict("only a text message you sent can be edited")
    if not target.provider_message_id:
        raise Conflict("the message has not been sent yet; edit it once it is")
    if utcnow() - as_utc(target.created_at) > EDIT_WINDOW:
        raise Conflict("WhatsApp lets a message be edited only within 15 minutes of sending it")
    sent = await send_as_agent(db, actor, ticket, body=body, type_="edit", quoted=quote(target), annotates=target.id)
    return MessageRead.of_message(sent)


async def react(db: Database, actor: Actor, *, ticket_id: str, message_id: str, emoji: str) -> MessageRead:
    """The person holding the ticket reacts to one of its WhatsApp messages (the client's, or one
    the connection sent), or takes its reaction back (`emoji` ""): recorded like a client's
    reaction (type "reaction", `annotates`, quoting it) and sent through the outbox in the chat's
    order, with the same ticks. 409 for a message WhatsApp cannot react to (a note, one not sent
    yet, a record of a change)."""
    ticket = await held_for_reply(db, actor, ticket_id)
    target = await _whatsapp_message_of(db, ticket, message_id)
    if target.annotates is not None or not target.provider_message_id:
        raise Conflict("this message cannot be reacted to")
    sent = await send_as_agent(
        db, actor, ticket, body=emoji, sign=False, type_="reaction", quoted=quote(target), annotates=target.id
    )
    return MessageRead.of_message(sent)


def keyed_reply_id(actor: Actor, ticket_id: str, key: str | None) -> str | None:
    """The id of `actor`'s reply in `ticket_id` sent with `Idempotency-Key: key` (None without a
    key): the same for every attempt, so an attempt repeated because its answer never came back
    (a timeout, a dropped connection, a second click) stores and sends that reply once. Taken by
    the message's unique `_id`: of two attempts at once, one inserts it, the other gets it back
    (`append`); its outbox entries are one send, since the worker sends a message, not an entry."""
    if key is None:
        return None
    return hashlib.sha256(f"reply\0{actor.reseller_id}\0{ticket_id}\0{actor.id}\0{key}".encode()).hexdigest()[:24]


async def replayed(db: Database, actor: Actor, ticket_id: str, message_id: str | None) -> MessageRead | None:
    """The reply an earlier attempt with the same key stored (`keyed_reply_id`), as it is now:
    answered again as it was, even if the ticket was finalized since, nothing stored or sent. The
    earlier attempt may have failed after storing it (its answer was lost): what follows a stored
    reply (activity, announcement, reports) is done again, each step safe to repeat."""
    if message_id is None:
        return None
    earlier = await repository.get_internal(db, message_id)
    whose = (actor.reseller_id, ticket_id, actor.id)
    if earlier is None or (earlier.reseller_id, earlier.ticket_id, earlier.sender_id) != whose:
        return None
    await complete_stored(db, earlier)
    return MessageRead.of_message(earlier)


async def reply(
    db: Database,
    actor: Actor,
    *,
    ticket_id: str,
    body: str,
    quoted_message_id: str | None = None,
    idempotency_key: str | None = None,
) -> MessageRead:
    """The person holding the ticket answers, optionally quoting one of its messages."""
    message_id = keyed_reply_id(actor, ticket_id, idempotency_key)
    if (earlier := await replayed(db, actor, ticket_id, message_id)) is not None:
        return earlier
    ticket = await held_for_reply(db, actor, ticket_id)
    quoted = await quote_of(db, ticket, quoted_message_id)
    sent = await send_as_agent(db, actor, ticket, body=body, quoted=quoted, message_id=message_id)
    return MessageRead.of_message(sent)


async def list_page(db: Database, actor: Actor, *, ticket_id: str, cursor: str | None, limit: int) -> MessagePage:
    await tickets.get_visible_or_404(db, actor, ticket_id=ticket_id)
    return await thread_page(db, actor.scope, ticket_id, cursor=cursor, limit=limit)


async def thread_page(
    db: Database, scope: TenantScope, ticket_id: str, *, cursor: str | None, limit: int
) -> MessagePage:
    """One page of a ticket's thread, for a caller that has authorized the read. Without a cursor
    the newest page (an agent opens a ticket to answer its latest message); `next_cursor` leads
    to the page before it. Items are oldest first within every page, so a screen prepends pages."""
    before = decode_time_cursor(cursor) if cursor else None
    docs = await repository.newest_for_ticket(db, scope, ticket_id, before=before, limit=limit + 1)
    nxt = None
    if len(docs) > limit:
        oldest = docs[limit - 1]
        nxt = encode_cursor([oldest.created_at.isoformat(), oldest.id])
    return MessagePage(items=[MessageRead.of_message(m) for m in reversed(docs[:limit])], next_cursor=nxt)
