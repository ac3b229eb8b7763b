"""The automatic messages' reactions (the rules: backend/automation/__init__.py).

Every automatic message goes out as an agent reply does: queued in the durable outbox, then
stored as an outgoing message (`sender_type: "system"`, `automatic: true`, never signed). Its id
is derived from (ticket, purpose, period), so whoever runs a step again — a webhook redelivery,
the processor retrying a delivery whose attempt was killed, the sweep re-running a finalize's
hooks — finds it stored and queues nothing: the unique `_id` insert decides, and the outbox
worker sends a message once whatever number of queue entries point at it (attempts are claimed
per message id, backend/outbound/worker.py).

Nothing automatic is queued on a connection deactivated in IAZE, nor for a suspended tenant
(`_speaks`, asked by `_send`, which every automatic message goes through): what their clients
write is still filed (webhooks.service), the helpdesk itself stays quiet there, as their agents
must (messages.held_for_reply; a suspended tenant's staff cannot sign in).
"""

import asyncio
import contextlib
import enum
import hashlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from backend.audit import service as ticket_events
from backend.automation import hours, repository, texts
from backend.automation.models import Survey
from backend.clients import service as clients
from backend.clients.phones import whatsapp_addresses
from backend.connections import service as connections
from backend.connections.providers.base import CALL, VIDEO_CALL
from backend.core import natural_keys
from backend.core.clock import as_utc, utcnow
from backend.core.db import Database
from backend.core.errors import Conflict
from backend.core.ids import is_valid_id
from backend.core.logging import get_logger
from backend.core.tenancy import TenantScope
from backend.departments import service as departments
from backend.messages import public as message_store
from backend.messages import service as messages
from backend.messages.models import Message
from backend.outbound import service as outbound
from backend.resellers import service as resellers
from backend.resellers.schemas import CSAT_WINDOW_DEFAULT_HOURS
from backend.tickets import service as tickets
from backend.tickets.models import Ticket
from backend.tickets.states import Status
from backend.unread import service as unread
from backend.users import service as users

log = get_logger("automation")

GREETING, AWAY, MENU, CLOSING, SURVEY = "greeting", "away", "menu", "closing", "survey"
MENU_ANSWER_KEY = "menu-answer"
FIRST_MENU = "0"
HIGHEST_RATING = 5
# The delivery statuses of a message the provider took (backend/messages/models.py: pending →
# sent → delivered → read, or failed): a survey question in one of them reached the chat.
LEFT = frozenset({"sent", "delivered", "read"})
EVENTS_PAGE = 100


def now() -> datetime:
    """The instant business hours and the survey window are judged at: when the message is
    processed (seconds after it arrived). A function of this module so tests can move it."""
    return utcnow()


def automatic_id(ticket_id: str, purpose: str, period: str = "") -> str:
    """Deterministic and id-shaped: one automatic message per (ticket, purpose, period)."""
    return hashlib.sha256(f"auto:{ticket_id}:{purpose}:{period}".encode()).hexdigest()[:24]


ConfigSource = Callable[[], Awaitable[resellers.ResellerConfig]]


def config_once(db: Database, reseller_id: str) -> ConfigSource:
    """The tenant's config, read at most once however often asked: one inbound message's
    processing passes it to the opening of its ticket and to the automatic messages after it,
    which then see one read of it (taken moments apart before, either could see an edit the
    other did not; now both see the same)."""
    held: list[resellers.ResellerConfig] = []

    async def get() -> resellers.ResellerConfig:
        if not held:
            held.append(await resellers.config_internal(db, reseller_id))
        return held[0]

    return get


async def _speaks(db: Database, *, reseller_id: str, connection_id: str) -> bool:
    """Whether automatic messages may be queued on this WhatsApp connection now: only while it is
    active in IAZE and its tenant is not suspended. A deactivated connection may still be
    connected at the provider, and so may a suspended tenant's; their clients' messages are filed
    as on any other (webhooks.service.process), but nothing automatic goes out — no greeting,
    away message, menu, closing message or survey — as no agent may reply there either
    (messages.held_for_reply; a suspended tenant's staff cannot sign in). The store answers,
    never a process's copy of the connection (the delivery's own, or one up to
    SETUP_CACHE_SECONDS old: connections.get_cached_internal), which may predate a deactivation
    or a reactivation. Asked where every automatic message is queued (`_send`) and where a ticket
    is born awaiting a menu (`ticket_opening`), and nowhere else."""
    if not is_valid_id(connection_id):
        return False
    conn, tenant = await asyncio.gather(connections.get_internal(db, connection_id), resellers.get(db, reseller_id))
    return conn is not None and conn.reseller_id == reseller_id and conn.active and tenant is not None and tenant.active


class Sent(enum.Enum):
    """What `_send` did with an automatic message."""

    QUEUED = "queued"  # this call queued and stored it
    BEFORE = "before"  # an earlier run stored it (a redelivery, a retried step): nothing queued
    SILENT = "silent"  # the ticket's connection is deactivated (`_speaks`): nothing queued
    MOOT = "moot"  # `while_waiting`, and the ticket no longer waits in espera: nothing queued


async def _send(
    db: Database,
    ticket: Ticket,
    config: resellers.ResellerConfig,
    *,
    purpose: str,
    body: str,
    period: str = "",
    extra: dict[str, Any] | None = None,
    retry: bool = False,
    while_waiting: bool = False,
) -> Sent:
    """Queues and stores one automatic message unless it is stored already, or the ticket's
    connection is deactivated (then nothing is queued or stored: `_speaks`, read once it is known
    that one would be queued). Queued first, as an agent's reply is (messages.reply): a crash
    between the two leaves a queue entry whose message never got stored, which the worker passes.
    `retry`: an earlier run of this step may have stopped after storing the message and before
    moving the ticket's activity and announcing it; found stored, those are done again.
    `while_waiting`: only while the ticket still waits in espera, read again (`_waiting`)."""
    message_id = automatic_id(ticket.id, purpose, period)
    stored, raced = await message_store.get_internal(db, message_id), False
    if stored is None:
        if while_waiting and not await _waiting(db, ticket):
            return Sent.MOOT
        if not await _speaks(db, reseller_id=ticket.reseller_id, connection_id=ticket.channel):
            log.info("automatic message not queued: connection inactive", ticket_id=ticket.id, purpose=purpose)
            return Sent.SILENT
        await outbound.enqueue(db, message_id=message_id, ticket=ticket)
        stored, created = await messages.append(
            db,
            ticket,
            direction="out",
            sender_type="system",
            sender_id=None,
            sender_name=config.company_name,
            body=body,
            status="pending",
            message_id=message_id,
            extra={"automatic": True, "automatic_purpose": purpose, **(extra or {})},
        )
        if created:
            await outbound.queue_again_if_passed(db, stored, ticket)  # an insert that landed past a lease
            outbound.wake(db)
            log.info("automatic message queued", ticket_id=ticket.id, purpose=purpose, message_id=message_id)
            return Sent.QUEUED
        raced = True
    # `raced`: a concurrent run stored it between our look and our insert (the sweep's re-run of
    # a finalize's hooks beside the finalize's own run). That run may yet fail before announcing
    # it, and once this run ends its step, no later run looks at it again.
    if retry or raced:
        await messages.complete_stored(db, stored)
    return Sent.BEFORE


def _render(template: str, ticket: Ticket, config: resellers.ResellerConfig) -> str:
    return texts.render(template, client=ticket.client_name, company=config.company_name, protocol=ticket.number)


# --- a WhatsApp message opens a ticket -------------------------------------------------------


async def _menu_options(db: Database, conn: connections.Connection) -> list[departments.Department]:
    """The connection's menu departments that are still active, in the configured order."""
    if not conn.menu_enabled:
        return []
    found = [await departments.get(db, TenantScope(conn.reseller_id), d) for d in conn.menu_department_ids]
    return [d for d in found if d is not None and d.active]


def ticket_opening(
    db: Database,
    conn: connections.Connection,
    *,
    message_id: str,
    config: ConfigSource | None = None,
    written_at: datetime | None = None,
    history: bool = False,
) -> tickets.LazyOpening:
    """What a ticket opened by this WhatsApp message starts with (tickets.open_for_client awaits
    it only when it creates the ticket): the message that opened it, whether the company was
    closed when the client wrote it (`written_at`, WhatsApp's stamp: a message processed late, after
    a backlog or an outage, was not written out of hours because it is filed after closing; none,
    or one ahead of this clock: now), whether the department menu now awaits the client's answer —
    never on a deactivated connection, which sends no menu (`_speaks`). `config`: the message's
    one read of the tenant's config (`config_once`). The away message is judged at processing
    time instead: it tells the client the company is closed now. `history`: a message of a
    history import (`after_client_message`), which no menu awaits."""

    async def starts() -> tickets.Opening:
        config_read = await (config or config_once(db, conn.reseller_id))()
        menu = not history and bool(await _menu_options(db, conn))
        current = now()
        written = min(as_utc(written_at), current) if written_at is not None else current
        return tickets.Opening(
            opening_message_id=message_id,
            out_of_hours=not hours.Schedule.of(config_read).is_open(written),
            menu_pending=menu and await _speaks(db, reseller_id=conn.reseller_id, connection_id=conn.id),
        )

    return starts


def raced_opening(db: Database, finalized: Ticket, message: Message) -> tickets.LazyOpening:
    """What a ticket opened for a client message that raced `finalized`'s finalize starts with
    (messages.service moves the message on): the same as a ticket the message would have opened
    itself, the message as its opening one — so it is greeted, told when the company is closed,
    and offered the menu, as any new ticket is. Run by whoever moved the message: the webhook
    delivery (`after_client_message` finds the message filed under the new ticket) or the
    finalize (`after_finalize` below)."""

    async def starts() -> tickets.Opening:
        conn = await connections.of_ticket(db, finalized)
        if conn is None or message.sender_type != "client" or message.direction != "in":
            return tickets.Opening()
        return await ticket_opening(db, conn, message_id=message.id, written_at=message.provider_sent_at)()

    return starts


async def after_client_message(
    db: Database,
    conn: connections.Connection,
    *,
    ticket: Ticket,
    message: Message,
    retry: bool = False,
    config: ConfigSource | None = None,
    new_client: bool = False,
    history: bool = False,
) -> list[str]:
    """Runs after a client's WhatsApp message is filed under `ticket` (and again, finding done
    what was done, for a redelivery or a retried delivery: `retry`). Returns what it sent or moved.
    `config`: the message's one read of the tenant's config (`config_once`). `new_client`: the
    message created its client (won the phone key), so the chat has no survey to close (surveys
    are made for finalized tickets, and a client's phone is its key and never changes).
    `history`: the message came in the history sync after a pairing (InboundMessage.from_history;
    not a catch-up IAZE asked for after an outage): the past, possibly answered on the phone
    meanwhile, and a burst of hundreds of chats at once. It is filed and its ticket opened for the agents,
    but nothing automatic answers it (no greeting, away message or menu, and it answers no menu);
    a new ticket still ends the chat's pending survey."""
    if message.sender_type != "client" or message.direction != "in":
        if _typed_on_the_phone(message):
            return await _phone_answered(db, ticket, message)
        return []  # anything else (an internal note, our own sends): nothing reacts
    if message.ticket_id != ticket.id:
        loaded = await tickets.load(db, message.ticket_id)
        if loaded is None:
            return []
        ticket = loaded
    if ticket.status != Status.ESPERA.value:
        return []  # a person has it (atendendo) or it is closed: the helpdesk itself stays quiet
    config_read = await (config or config_once(db, str(ticket.reseller_id)))()
    if ticket.opening_message_id == message.id:
        return await _opened(db, conn, ticket, config_read, retry=retry, new_client=new_client, history=history)
    if history:
        return []
    done: list[str] = []
    if ticket.menu_pending and message.type not in (CALL, VIDEO_CALL):  # ringing is no answer to the menu
        done += await _menu_answer(db, conn, ticket, message, config_read, retry=retry)
    if await _away(db, ticket, config_read, retry=retry):
        done.append(AWAY)
    return done


def _typed_on_the_phone(message: Message) -> bool:
    """A message a person typed on the connection's own phone (tickets/intake.py stores it as an
    outgoing "system" message; the echo of an IAZE send is never stored as one, and our own
    automatic messages carry `automatic`)."""
    return message.direction == "out" and message.sender_type == "system" and not message.automatic


async def _phone_answered(db: Database, ticket: Ticket, message: Message) -> list[str]:
    """A person answered the client from the phone: the menu ends there, as it ends when a person
    takes the ticket in IAZE (tickets.service `_transition`: a person acting ends it) — or the
    client's next words would be read as a wrong answer, repeat the menu and end in the fallback
    department. The phone's person is no IAZE user, so no staff transition can be theirs: the
    menu ends the one way the state machine offers automation, with the ticket kept where it
    waits (a `routed` event marked `by_phone`, naming this message)."""
    if message.ticket_id != ticket.id:
        loaded = await tickets.load(db, message.ticket_id)
        if loaded is None:
            return []
        ticket = loaded
    if ticket.status != Status.ESPERA.value or not ticket.menu_pending:
        return []
    moved = await _route(db, ticket, department_id=ticket.department_id, message_id=message.id, by_phone=True)
    if moved:
        log.info("menu ended by a reply from the phone", ticket_id=ticket.id, message_id=message.id)
    return ["menu ended: answered from the phone"] if moved else []


async def _opened(
    db: Database,
    conn: connections.Connection,
    ticket: Ticket,
    config: resellers.ResellerConfig,
    *,
    retry: bool,
    new_client: bool = False,
    history: bool = False,
) -> list[str]:
    done: list[str] = []
    # A new conversation ends the chat's pending survey: a digit now belongs to this ticket.
    chat = outbound.chat_key(conn.id, ticket.client_address)
    survey = None if new_client else await repository.get_survey_internal(db, chat)
    if survey is not None and survey.pending:
        await repository.mark_survey(db, chat, ticket_id=survey.ticket_id, changes={"closed_at": now()})
    if history:  # imported, not live: nothing is sent (after_client_message)
        return done
    welcome = _render(config.welcome_message, ticket, config)
    if welcome and await _send(db, ticket, config, purpose=GREETING, body=welcome, retry=retry) is Sent.QUEUED:
        done.append(GREETING)
    # The away message after the greeting, the menu last of all: a client reads "hello", "we are
    # closed", then the question to answer.
    if await _away(db, ticket, config, retry=retry):
        done.append(AWAY)
    if ticket.menu_pending:
        options = await _menu_options(db, conn)
        if not options:  # the menu's departments were deactivated since the ticket opened
            await _route(db, ticket, department_id=conn.default_department_id, message_id="", fallback=True)
            return [*done, "menu fallback"]
        body = texts.menu(conn.menu_text, [d.name for d in options])
        extra = {"menu_options": [d.id for d in options]}
        sent = await _send(
            db, ticket, config, purpose=MENU, period=FIRST_MENU, body=body, extra=extra, retry=retry, while_waiting=True
        )
        if sent is Sent.MOOT:
            return done
        if sent is Sent.SILENT:  # deactivated since the ticket opened awaiting it: no menu to answer
            await _route(db, ticket, department_id=conn.default_department_id, message_id="", fallback=True)
            return [*done, "menu fallback"]
        if sent is Sent.QUEUED:
            done.append(MENU)
    return done


async def _away(db: Database, ticket: Ticket, config: resellers.ResellerConfig, *, retry: bool) -> bool:
    """Once per ticket per closed period, while the ticket waits in espera."""
    since = hours.Schedule.of(config).closed_since(now())
    if since is None or not config.away_message:
        return False
    body = _render(config.away_message, ticket, config)
    sent = await _send(
        db, ticket, config, purpose=AWAY, period=since.isoformat(), body=body, retry=retry, while_waiting=True
    )
    return sent is Sent.QUEUED


async def _waiting(db: Database, ticket: Ticket) -> bool:
    """Whether the ticket still waits in espera, read again: a finalize or an Assumir that came
    while its opening messages were being sent leaves nothing to ask the client (a department,
    or patience out of hours) in a conversation that is closed or taken."""
    current = await tickets.load(db, ticket.id)
    return current is not None and current.status == Status.ESPERA.value


async def _menu_answer(
    db: Database,
    conn: connections.Connection,
    ticket: Ticket,
    message: Message,
    config: resellers.ResellerConfig,
    *,
    retry: bool,
) -> list[str]:
    """The client's answer while the menu is pending: a listed number moves the ticket to that
    department's espera; anything else repeats the menu, up to `menu_max_invalid` times, then the
    ticket stays with the connection's default department. The number is read against the menu
    the client was shown last (a repeat may list fewer departments than the first menu), and a
    repeat lists only the departments still active, numbered as it shows them."""
    shown = await _last_menu(db, ticket.id)
    options: list[str] = list(shown.menu_options or []) if shown is not None else []
    if not options:  # no menu was ever sent (its departments went away): nothing to choose from
        await _route(db, ticket, department_id=conn.default_department_id, message_id="", fallback=True)
        return ["menu fallback"]
    choice = texts.digit(message.body if message.type == "text" else None, highest=len(options))
    if choice is not None:
        department_id = options[choice - 1]
        dept = await departments.get(db, TenantScope(ticket.reseller_id), department_id)
        if dept is not None and dept.active:
            moved = await _route(db, ticket, department_id=department_id, message_id=message.id)
            return [f"menu choice {choice}"] if moved else []
    k = await _invalid_answer_number(db, ticket.id, message.id)
    if k > conn.menu_max_invalid:
        moved = await _route(db, ticket, department_id=conn.default_department_id, message_id=message.id, fallback=True)
        return ["menu fallback"] if moved else []
    scope = TenantScope(ticket.reseller_id)
    found = [await departments.get(db, scope, department_id) for department_id in options]
    active = [d for d in found if d is not None and d.active]
    if not active:  # every listed department was deactivated since: nothing left to offer
        moved = await _route(db, ticket, department_id=conn.default_department_id, message_id=message.id, fallback=True)
        return ["menu fallback"] if moved else []
    body = texts.menu(conn.menu_text, [d.name for d in active], repeat=True)
    extra = {"menu_options": [d.id for d in active]}
    sent = await _send(db, ticket, config, purpose=MENU, period=str(k), body=body, extra=extra, retry=retry)
    if sent is Sent.SILENT:  # the connection was deactivated: the menu cannot be repeated, it ends
        moved = await _route(db, ticket, department_id=conn.default_department_id, message_id=message.id, fallback=True)
        return ["menu fallback"] if moved else []
    return ["menu repeated"] if sent is Sent.QUEUED else []


async def _last_menu(db: Database, ticket_id: str) -> Message | None:
    """The newest menu stored for the ticket: the first (period "0"), then the repeat after the
    k-th invalid answer (period k). Repeats are stored in k order, each only after its answer
    claimed k, so the walk stops at the first k without one."""
    last = await message_store.get_internal(db, automatic_id(ticket_id, MENU, FIRST_MENU))
    k = 1
    while last is not None:
        repeat = await message_store.get_internal(db, automatic_id(ticket_id, MENU, str(k)))
        if repeat is None:
            break
        last, k = repeat, k + 1
    return last


async def _invalid_answer_number(db: Database, ticket_id: str, message_id: str) -> int:
    """k for the k-th invalid answer to the ticket's menu, the same k for the same message
    however often it is processed: position k is a natural key claimed once."""
    k = 1
    while True:
        bound, _ = await natural_keys.claim(db, MENU_ANSWER_KEY, ticket_id, str(k), target=message_id)
        if bound == message_id:
            return k
        k += 1


async def _route(
    db: Database, ticket: Ticket, *, department_id: str, message_id: str, fallback: bool = False, by_phone: bool = False
) -> bool:
    try:
        await tickets.choose_department(
            db, ticket, department_id=department_id, message_id=message_id, fallback=fallback, by_phone=by_phone
        )
    except Conflict:
        # A person assumed or finalized it first, or an earlier answer chose: the menu is over,
        # and the answer stays a message of the conversation.
        return False
    return True


# --- Finalizar -------------------------------------------------------------------------------


async def after_finalize(db: Database, ticket: Ticket) -> None:
    """The finalize hook (backend/gates.py): the closing message, then the survey question. Runs
    again when the sweep re-runs a finalize's hooks; finding both stored, it sends nothing."""
    conn = await connections.of_ticket(db, ticket)
    if conn is None:
        return  # not a WhatsApp conversation: nobody to send to
    blocked = connections.blocked(conn)
    if blocked is not None:
        # Nothing queued now could leave (the worker would retry it, then mark it failed): the
        # client would get a late goodbye, or none, and a survey it never saw would wait for a
        # digit. Neither is queued; the finalize stands.
        log.info("closing message and survey skipped", ticket_id=ticket.id, reason=blocked)
    else:
        config = await resellers.config_internal(db, ticket.reseller_id)
        closing = _render(config.closing_message, ticket, config)
        if closing:
            await _send(db, ticket, config, purpose=CLOSING, body=closing, retry=True)
        if config.csat_enabled and await attended_with_client(db, ticket):
            await _ask_rating(db, conn, ticket, config)
    await _greet_raced(db, conn, ticket)


async def attended_with_client(db: Database, ticket: Ticket) -> bool:
    """Whether a finished ticket is an attendance to rate: a person held it at some point (an
    event of its log names a holder: assumed, transferred to them, or opened by them — replying
    needs holding it, messages.held_for_reply) and its client wrote in it. Not one nobody took
    (spam, a duplicate), nor a conversation an agent started that the client never answered, but
    one an agent handled and then sent back to a queue is."""
    return await _client_wrote(db, ticket) and await _held_by_a_person(db, ticket)


async def _held_by_a_person(db: Database, ticket: Ticket) -> bool:
    if ticket.agent_id:
        return True
    scope, after = TenantScope(ticket.reseller_id), 0
    while page := await ticket_events.list_for_ticket(db, scope, ticket.id, after_version=after, limit=EVENTS_PAGE):
        if any(event.state.agent_id for event in page):
            return True
        after = page[-1].version
    return False


async def _client_wrote(db: Database, ticket: Ticket) -> bool:
    """A client message opened it (`opening_message_id`), or one was numbered in it: the unread
    count's numbering covers every client message of a ticket (backend/unread), and the client
    itself never marks its tickets read, so its own unread count is that number."""
    if ticket.opening_message_id:
        return True
    return await unread.unread_for(db, ticket.client_id, ticket.id) > 0


async def _greet_raced(db: Database, conn: connections.Connection, finalized: Ticket) -> None:
    """The new ticket the finalize's refile opened for a client message that raced it (before this
    hook: backend/gates.py) reacts as any new ticket does — after the closing message and the
    survey question, whose pending rating its opening ends. Found as the client's open ticket on
    the channel, opened by a message moved on from `finalized`; the webhook delivery reacts the
    same when it moved the message itself, and each automatic message is stored once."""
    # Its slot hint (users.raise_ticket_slot) starts the walk at the finalized ticket's next slot.
    client = await users.get(db, TenantScope(finalized.reseller_id), finalized.client_id)
    if client is None:
        return
    found = await tickets.open_ticket_of(
        db, reseller_id=finalized.reseller_id, client=client, channel=finalized.channel
    )
    if found is None or not found.opening_message_id:
        return
    opening = await message_store.get_internal(db, str(found.opening_message_id))
    if opening is not None and opening.moved_from_ticket_id == finalized.id:
        await after_client_message(db, conn, ticket=found, message=opening, retry=True)


async def _ask_rating(
    db: Database, conn: connections.Connection, ticket: Ticket, config: resellers.ResellerConfig
) -> None:
    question = _render(config.csat_message or texts.DEFAULT_SURVEY_TEXT, ticket, config)
    await _send(db, ticket, config, purpose=SURVEY, body=question, retry=True)
    asked = await message_store.get_internal(db, automatic_id(ticket.id, SURVEY))
    if asked is None:
        return
    chat = outbound.chat_key(conn.id, ticket.client_address)
    current = await repository.get_survey_internal(db, chat)
    at = as_utc(asked.created_at)
    # Written after the question is stored (a digit is a rating only once it was asked); the
    # chat's newest question wins, so a re-run for an older ticket changes nothing.
    if current is None or (current.ticket_id != ticket.id and as_utc(current.asked_at) < at):
        window = timedelta(hours=config.csat_window_hours or CSAT_WINDOW_DEFAULT_HOURS)
        survey = Survey(
            id=chat, ticket_id=ticket.id, reseller_id=ticket.reseller_id, asked_at=at, expires_at=at + window
        )
        await repository.put_survey(db, survey)
        # A new conversation ends the chat's survey (`_opened`), but one opened before this
        # record was written found none to end: looked for after writing it, so one side sees
        # the other.
        client = await users.get(db, TenantScope(ticket.reseller_id), ticket.client_id)
        if client is not None and await tickets.open_ticket_of(
            db, reseller_id=ticket.reseller_id, client=await clients.followed(db, client), channel=ticket.channel
        ):
            await repository.mark_survey(db, chat, ticket_id=ticket.id, changes={"closed_at": now()})


# --- the client's rating ---------------------------------------------------------------------


def rating_of(body: str | None) -> int | None:
    return texts.digit(body, highest=HIGHEST_RATING)


async def take_rating(
    db: Database,
    conn: connections.Connection,
    *,
    client: users.User,
    phone: str,
    message_id: str,
    body: str,
    extra: dict[str, Any],
) -> str | None:
    """A lone digit 1-5 from a chat whose survey is open: stored under the finalized ticket and
    recorded as its rating (a `rated` event). None when it is not a rating — no survey, asked
    for another client, answered or closed already, out of the window — and the message then
    goes where any message goes. Safe to repeat for the same message (redelivery, retry)."""
    rating = rating_of(body)
    if rating is None:
        return None
    survey = None
    # The survey is keyed by the address its ticket had; the digit may name the chat by its other
    # form (a LID chat without its number, or the number of a client known by its LID).
    for address in dict.fromkeys([phone, *whatsapp_addresses(client.phone, client.whatsapp_lid)]):
        if survey is None:
            survey = await repository.get_survey_internal(db, outbound.chat_key(conn.id, address))
    if survey is None:
        return None
    again = survey.answered_by == message_id
    if not again and (not survey.pending or now() > as_utc(survey.expires_at)):
        return None
    if not again:
        # A question the client never received (still queued, failed: the connection was down)
        # asks nothing: the digit is a message of its own.
        asked = await message_store.get_internal(db, automatic_id(survey.ticket_id, SURVEY))
        if asked is None or asked.status not in LEFT:
            return None
    ticket = await tickets.load(db, survey.ticket_id)
    if ticket is None or ticket.status != Status.FINALIZADO.value:
        return None
    # `client` is the one the chat's client was merged into, if it was (backend/clients/merge.py):
    # a survey asked before the merge is still answered from its chat.
    if ticket.client_id != client.id and ticket.client_id not in await clients.merged_group(
        db, TenantScope(conn.reseller_id), client.id
    ):
        return None
    if not again and await tickets.open_ticket_of(db, reseller_id=conn.reseller_id, client=client, channel=conn.id):
        return None  # a conversation is open on this number (an agent started one): the digit is its
    if ticket.rating is not None and not again:
        stored = await message_store.get_internal(db, message_id)
        if stored is None or stored.rating is None:
            return None
    message, _ = await messages.append(
        db,
        ticket,
        keep_in_finalized=True,
        direction="in",
        sender_type="client",
        sender_id=client.id,
        sender_name=client.name,
        body=body,
        status="received",
        message_id=message_id,
        extra={**extra, "rating": rating},
    )
    return await complete_rating(db, message)


async def complete_rating(db: Database, message: Message) -> str:
    """The rating's steps after its message is stored, each safe to repeat: the `rated` event,
    then the survey marked answered (a retried delivery whose attempt died between them)."""
    ticket = await tickets.load(db, message.ticket_id)
    assert ticket is not None
    if ticket.rating is None:
        with contextlib.suppress(Conflict):  # rated by this very message in a concurrent run
            await tickets.rate(db, ticket, rating=int(message.rating or 0), message_id=message.id)
    chat = outbound.chat_key(str(message.connection_id or ticket.channel), ticket.client_address)
    await repository.mark_survey(
        db, chat, ticket_id=ticket.id, changes={"answered_by": message.id, "answered_at": now()}
    )
    return f"rating {message.rating} of ticket {ticket.id} (message {message.id})"
