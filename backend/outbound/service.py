"""Outbound rules shared by the API (enqueue), the worker (sent/failed) and inbound webhooks
(provider status receipts)."""

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from backend.connections.providers.base import StatusUpdate
from backend.core import natural_keys
from backend.core.clock import as_utc, utcnow
from backend.core.db import Database
from backend.core.runtime import runtime_of
from backend.messages import public as messages
from backend.messages.models import Message
from backend.outbound import repository
from backend.outbound.models import HeldEcho, PassedBody, QueueBody, SendAttempt
from backend.outbound.repository import chat_key as chat_key  # one WhatsApp chat (the surveys' key too)
from backend.realtime import feed
from backend.tickets import projection
from backend.tickets.models import Ticket

# Provider message id -> our message id, per connection. Claimed once, so the echo of our own
# send (fromMe upsert) and status receipts find the message the agent wrote.
PROVIDER_KEY = "wa-out"


async def enqueue(db: Database, *, message_id: str, ticket: Ticket, again: bool = False) -> int:
    """Called before the message itself is stored: an entry whose message never got stored
    (the request died in between) is skipped by the worker, never sent.

    The reply first takes its place in its chat (connection + client number, across tickets:
    the client sees one conversation), then its queue entry, which records that place. The
    worker sends a reply only once the one before it in the chat is sent or failed for good
    (backend/outbound/worker.py). A request that dies between the two writes leaves a chat
    position whose message never gets stored; the worker passes it once it is older than the
    lease, as it passes the orphan queue entry. `again`: a stored message queued once more after
    its first entry was passed (`queue_again_if_passed`); the replies after this place wait for it."""
    connection_id = ticket.channel
    now = utcnow()
    chat = chat_key(connection_id, ticket.client_address)
    k = await repository.append_to_chat(db, chat, message_id=message_id, enqueued_at=now)
    seq = await repository.enqueue(
        db,
        QueueBody(
            message_id=message_id,
            chat=chat,
            chat_seq=k,
            connection_id=connection_id,
            ticket_id=ticket.id,
            reseller_id=ticket.reseller_id,
            enqueued_at=now,
        ),
    )
    if again:
        # Only once its entry is stored: a place marked `again` holds the replies after it, and
        # one whose entry was never written (the request died, a store error) would hold them
        # for good; unmarked, it is passed like the message's first place.
        await repository.mark_chat_again(db, chat, k)
    return seq


# A handshake between the worker, giving up on a queued message it never found stored, and the
# message's writer, whose insert may land later all the same (`pass_unstored`):
# - PASSED_KEY: the worker is about to give up on it (bound before its last look);
# - GAVE_UP_KEY: it did (that last look found no message either): its entry is done with;
# - REQUEUED_KEY: the message, stored after all, was queued again (`queue_again_if_passed`).
PASSED_KEY = "outbox-passed"
GAVE_UP_KEY = "outbox-gave-up"
REQUEUED_KEY = "outbox-requeued"


async def pass_unstored(db: Database, *, message_id: str, ticket_id: str) -> bool:
    """The worker's half of a handshake with a writer whose insert lands more than a lease after it
    queued the message (a stalled store; an insert whose answer timed out and landed later): the
    message is marked passed, then looked for once more. True when it is still not stored: the
    entry is done with, and a writer storing it from now on finds the mark. False when it showed
    up meanwhile: the entry is handled as any other, on a later pass (the mark then only costs
    the writer a redundant second entry, one send).
    The pass is logged first (`outbox_passed`): the worker walks that log for late inserts
    (`OutboundWorker._recheck_passed`), the case of a writer that died before its own look."""
    if await natural_keys.lookup(db, GAVE_UP_KEY, message_id) is not None:
        return True  # a pass repeated (a restart, another process's walk): logged already
    await repository.log_passed(db, PassedBody(message_id=message_id, ticket_id=ticket_id, passed_at=utcnow()))
    await natural_keys.bind(db, PASSED_KEY, message_id, target=f"{LOOKED_AGAIN}{message_id}")
    if await messages.get_internal(db, message_id) is not None:
        return False
    await natural_keys.bind(db, GAVE_UP_KEY, message_id, target=message_id)
    return True


# The target of a PASSED_KEY mark bound by `pass_unstored` since it looks once more before giving
# up. A mark that names the message itself was bound by an older version, which gave the entry up
# with the mark alone (no GAVE_UP_KEY, no `outbox_passed` entry).
LOOKED_AGAIN = "look:"


async def gave_up(db: Database, message_id: str) -> bool:
    """Whether the worker passed the message's entry as never stored, for good (`pass_unstored`
    returned True, or an older version marked it passed): that entry will never send it."""
    mark = await natural_keys.lookup(db, PASSED_KEY, message_id)
    if mark is None:
        return False
    if not mark.startswith(LOOKED_AGAIN):
        return True
    return await natural_keys.lookup(db, GAVE_UP_KEY, message_id) is not None


async def queue_again_if_passed(db: Database, message: Message, ticket: Ticket) -> bool:
    """The writer's half, after its insert (and a retry's; the worker's on finding the message
    pending after its entry was given up on): a message stored after the worker passed its entry
    would stay pending forever, never sent, holding up the replies after it in its chat. Of the
    worker's look after its mark and this look after the insert, at least one sees the other's
    write. It is queued again at the end of its chat; the mark of that is taken after the entry,
    so a crash in between queues it once more (two entries of one message are one send). True
    when it was queued again (now or before): the replies queued after its first place in its
    chat do not wait for it there; it goes with its new entry, after them."""
    if message.direction != "out" or message.status != "pending":
        return False
    if await natural_keys.lookup(db, PASSED_KEY, message.id) is None:
        return False
    if await natural_keys.lookup(db, REQUEUED_KEY, message.id) is None:
        await enqueue(db, message_id=message.id, ticket=ticket, again=True)
        await natural_keys.bind(db, REQUEUED_KEY, message.id, target=message.id)
        wake(db)
    return True


def wake(db: Database) -> None:
    """This process's send loops look at the queue now rather than at their next poll: called
    once a queued message is stored (before that the worker would find its entry without it)."""
    for event in runtime_of(db).outbound_wakeups:
        event.set()


async def bind_provider_id(db: Database, *, connection_id: str, provider_message_id: str, message_id: str) -> str:
    """Returns the message id the provider id is bound to (ours, or whoever bound it first)."""
    bound, _ = await natural_keys.claim(db, PROVIDER_KEY, connection_id, provider_message_id, target=message_id)
    return bound


class FromMe(StrEnum):
    """What a fromMe upsert (a message the connection's own number sent) is."""

    OWN = "own"  # typed on the phone (or WhatsApp Web): a message of its own, stored
    ECHO = "echo"  # the provider reporting our own reply back: already stored as the agent's
    HELD = "held"  # probably that echo, but the send is not answered yet: settled when it is


async def from_me_verdict(
    db: Database,
    *,
    connection_id: str,
    addresses: Sequence[str],
    text: str,
    provider_message_id: str,
    own_message_id: str,
    raw_id: str,
    type_: str = "text",
) -> FromMe:
    """Tells the echo of an agent's reply from a message typed on the phone. On OWN the provider
    id is bound to `own_message_id`.

    By provider id, always first: the worker binds the id Evolution answers a send with to the
    agent's message, so an upsert with a bound id is that reply's echo, and one with an id bound
    to nothing, once the send is answered, is not — whatever its text.

    Text is the last resort, for one window only: Evolution may post the echo before it answers
    the send, when no id is known yet. An upsert is held (not stored, not bound) only when the
    latest attempt sending this very text to this very number (`outbox_sending`) is still
    unanswered and its lease alive (`addresses`: the chat as the upsert names it; the worker marks
    a send under each form its ticket knows). Held upserts are not decided by their text: when the attempt
    is answered, the worker settles every upsert held for it by provider id — the one with the
    answered id was the echo; any other (the operator typed the same "ok" on the phone) is
    processed again from its raw delivery and stored as a message of its own
    (backend/webhooks/service.py, `release_held_echo`). A failed attempt releases them all.

    Limits: a released message is stored when the send is answered (seconds later), so it may
    come after messages that arrived in between. When a send's answer is lost (timeout, worker
    killed) its echo cannot be told by id: it is released and shown as a phone-typed copy of the
    reply — which the client did receive; never a message lost, at worst one shown twice.
    """
    bound = await lookup_provider_id(db, connection_id=connection_id, provider_message_id=provider_message_id)
    if bound is not None:
        return FromMe.OWN if bound == own_message_id else FromMe.ECHO
    marker = None
    for address in addresses:  # the chat as the upsert names it: its number, its LID, or both
        marker = marker or await repository.get_sending(db, connection_id=connection_id, phone=address, text=text)
    attempt = await repository.attempts.get(db, marker.attempt_id) if marker and marker.attempt_id else None
    if attempt is not None and attempt.result is None and as_utc(attempt.lease_until) > utcnow():
        echo = HeldEcho(
            id=repository.hold_id(attempt.id, 1),
            attempt_id=attempt.id,
            message_id=attempt.message_id,
            connection_id=connection_id,
            provider_message_id=provider_message_id,
            raw_id=raw_id,
            type=type_,
            own_message_id=own_message_id,
            held_at=utcnow(),
        )
        hold = await repository.hold_echo(db, hold=echo)
        if hold.resolution is None:
            # Look again after our own write: the worker may have settled this attempt's holds
            # before ours landed. Both sides look after their write, so one sees the other's.
            attempt = await repository.attempts.get(db, attempt.id)
            if attempt is None or attempt.result is None:
                return FromMe.HELD
            answered = _answered(attempt) == provider_message_id
            await repository.resolve_hold(db, hold.id, "echo" if answered else "released")
    # Answered with this very id but not bound by the worker yet: the echo, by its id.
    echoed = attempt is not None and _answered(attempt) == provider_message_id
    target = attempt.message_id if attempt is not None and echoed else own_message_id
    bound = await bind_provider_id(
        db, connection_id=connection_id, provider_message_id=provider_message_id, message_id=target
    )
    return FromMe.OWN if bound == own_message_id else FromMe.ECHO


def _answered(attempt: SendAttempt) -> str | None:
    """The provider id a finished attempt was answered with (None: no answer, or an error)."""
    return attempt.provider_message_id if attempt.result == "sent" else None


async def settle_held_echoes(db: Database, attempt: SendAttempt, *, answered: str | None) -> list[HeldEcho]:
    """Once `attempt` is answered with provider id `answered` (None: it failed), resolves the
    upserts held for it: the one with that id was its echo. Returns the others, which the
    caller releases as messages of their own."""
    release: list[HeldEcho] = []
    for hold in await repository.held_echoes(db, attempt):
        if hold.resolution is not None:  # the processor saw the answer and settled it
            continue
        if answered is not None and hold.provider_message_id == answered:
            await repository.resolve_hold(db, hold.id, "echo")
        else:
            release.append(hold)
    return release


async def echo_of_unanswered(db: Database, attempt: SendAttempt, *, type_: str) -> str | None:
    """The provider id of the probable echo of an attempt that was never answered (its worker died
    between the provider's answer and recording it, and its lease ran out): the first upsert held
    for it, of the reply's own type, still unsettled. Held means it came from the connection's
    number, with the reply's text (a file's caption) to the reply's client, while the attempt was
    in flight; so the provider took the send, and sending again would deliver it twice.

    Where it ends: an operator who, in that very window, sends from the phone the same text (or a
    file of the same type with the same caption) while our request never reached the provider makes
    that message stand for the reply: the client got that content once, shown as the agent's."""
    for hold in await repository.held_echoes(db, attempt):
        if hold.resolution is None and hold.type == type_:
            return hold.provider_message_id
    return None


async def lookup_provider_id(db: Database, *, connection_id: str, provider_message_id: str) -> str | None:
    return await natural_keys.lookup(db, PROVIDER_KEY, connection_id, provider_message_id)


async def announce_status(db: Database, message: Message) -> None:
    """`message.status`, the message as stored (its delivery, its media). Required: a "failed"
    no screen was told of keeps showing a reply the client never gets as on its way, and nothing
    later announces that message again — so the error goes to the caller, whose retry announces
    it (the outbound worker's next pass, the webhook processor's retry, the media fetch's)."""
    # The ticket as its log says, not the stored projection, which can be a moment behind it.
    ticket = await projection.settle(db, message.ticket_id)
    if ticket is None:
        return
    await feed.publish(
        db,
        reseller_id=message.reseller_id,
        type_="message.status",
        ticket=ticket,
        message=message,
        data={"message_id": message.id, "status": message.status},
        required=True,
    )


async def move(db: Database, message_id: str, *, to: str, extra: dict[str, Any] | None = None) -> Message | None:
    moved = await messages.move_status_internal(db, message_id, to=to, at=utcnow(), extra=extra)
    if moved is not None:
        await announce_status(db, moved)
    return moved


async def apply_receipt(
    db: Database, *, connection_id: str, update: StatusUpdate, fallback_id: str, retry: bool = False
) -> str:
    """A provider status receipt (MESSAGES_UPDATE). Returns what happened, for the raw log.
    `retry`: an earlier attempt at the same delivery did not finish and may have moved the
    status without announcing it; found already there, the message's status is announced again."""
    if update.status == "pending":
        return "ignored: pending"
    pid = update.provider_message_id
    message_id = await _receipt_target(db, connection_id, pid, fallback_id)
    if message_id is None:
        # Usually our own send whose receipt outran the worker's bookkeeping (or a message sent
        # from the phone, not stored yet). Parked; whoever makes the message known applies it.
        await repository.park_receipt(
            db, connection_id=connection_id, provider_message_id=pid, status=update.status, reason=update.reason
        )
        # It may have become known between the look-up and the parking: both sides look after
        # their own write, so at least one of them sees the other's.
        message_id = await _receipt_target(db, connection_id, pid, fallback_id)
        if message_id is None:
            return f"status {update.status} parked: its message is not known yet"
        await apply_parked(db, connection_id=connection_id, provider_message_id=pid, message_id=message_id)
        return f"status {update.status} parked, then applied"
    return await _apply_status(db, message_id, update.status, update.reason, retry=retry)


async def _receipt_target(db: Database, connection_id: str, provider_message_id: str, fallback_id: str) -> str | None:
    message_id = await lookup_provider_id(db, connection_id=connection_id, provider_message_id=provider_message_id)
    message_id = message_id or fallback_id  # a message sent from the phone, stored by its id
    return message_id if await messages.get_internal(db, message_id) is not None else None


async def _apply_status(db: Database, message_id: str, status: str, reason: str, *, retry: bool = False) -> str:
    extra = {"failure_reason": reason or "provider reported an error"} if status == "failed" else None
    moved = await move(db, message_id, to=status, extra=extra)
    if moved is None and retry:
        current = await messages.get_internal(db, message_id)
        if current is not None:
            await announce_status(db, current)
    return f"status {status}" if moved else f"status {status} (no change)"


async def apply_parked(db: Database, *, connection_id: str, provider_message_id: str, message_id: str) -> None:
    """Applies receipts that arrived before `message_id` was known by its provider id. Called once
    the message is stored and bound; applying twice changes nothing (statuses only move forward)."""
    parked = await repository.get_parked(db, connection_id=connection_id, provider_message_id=provider_message_id)
    if parked is None or not parked.unapplied():
        return
    for receipt in parked.receipts:
        await _apply_status(db, message_id, receipt.status, receipt.reason)
    await repository.mark_parked_applied(db, parked, message_id=message_id)
