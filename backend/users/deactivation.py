"""Deactivating a person hands back the conversations it holds: `PATCH /users/{id}` with
`{"active": false}` stores the user (users.service.update), then sends each ticket it holds in
atendendo back to espera in the ticket's own department, as a transfer by whoever deactivated it
(tickets.service.release_held_by). Without that the client's next messages would land in a ticket
nobody can see or answer. A module of its own: it builds on the tickets service, which builds on
the users service (the module graph is acyclic: docs/ARCHITECTURE.md §2).

The order of the writes (no transaction spans them; FerretDB has none):
1. the user, inactive, its token version raised in the same write: from here no request of the
   person authenticates, so it starts no new assume, transfer, Reabrir or conversation;
2. then the release, read from the tickets as they are after that write.

Before step 1 the release is marked owed (`user_releases`, users.service.owe_release), and the
mark is paid once step 2 ran to its end. A user write whose answer was lost is read back, and the
release runs when it landed (the page then offers no second click). Crash between the steps, or
during the release: the user is inactive and some tickets still held, the mark unpaid; the ticket
sweep runs the release for every unpaid mark whose person is inactive (tickets.service.release_owed,
every TICKET_SWEEP_SECONDS), idle conversations included, and repeating the PATCH finishes it all
too: step 1 again changes nothing (no second token bump) and step 2 runs every time `active` is
false, the user already inactive or not, and is idempotent (a ticket handed back is no longer
listed). Releasing first and deactivating after would be repaired the same way, but would leave a
window where the still-active person assumes a ticket after the release read its list; releasing
on both sides of the deactivation narrows that window without closing it.

The sweep also pays a mark whose person is still active once it is older than
TICKET_SWEEP_LOOKBACK_SECONDS, taking step 1 for lost; but step 1 can land later than that (a
failover holds a write up to MONGO_SOCKET_TIMEOUT_MS). So once step 1 landed, before step 2, a mark
found paid is owed again under this deactivation's name with a fresh `owed_at`
(users.service.owe_release_again; paid by a later deactivation instead, it costs one idempotent
release more), while a mark a later deactivation rewrote names that one and is left alone. A crash
between step 1 and that re-owe, the mark already paid, is the window left: the idle conversations
stay with the inactive person until their clients write again.

A move of the person's that authenticated before step 1 and lands after it (an assume in flight)
is the one interleaving the order alone does not cover. Each such move, once its event landed,
reads the user (tickets.service.hand_back_if_inactive) and hands the ticket back itself when the
person is inactive. The deactivation writes the user then reads the tickets; the move writes the
ticket then reads the user: whichever comes second sees the other's write, so the ticket is either
in step 2's list or handed back by the move."""

from pymongo.errors import PyMongoError

from backend.core.db import Database
from backend.core.logging import get_logger
from backend.core.tenancy import Actor
from backend.tickets import service as tickets
from backend.users import service
from backend.users.schemas import UserRead, UserUpdate

log = get_logger("users.deactivation")


async def update(db: Database, actor: Actor, *, user_id: str, data: UserUpdate) -> UserRead:
    """users.service.update, then, when it deactivates (or deactivates again), the release."""
    owed = await service.owe_release(db, actor, user_id=user_id) if data.active is False else None
    try:
        user = await service.update(db, actor, user_id=user_id, data=data)
    except PyMongoError:
        # The user write may have landed with its answer lost: the reloaded page then shows the
        # person inactive and offers no second click, so the release runs here all the same.
        if data.active is False and not (await service.get_or_404(db, actor, user_id=user_id)).active:
            await _release(db, actor, user_id, owed)
        raise
    if data.active is False:
        await _release(db, actor, user.id, owed)
    return user


async def _release(db: Database, actor: Actor, user_id: str, owed: str | None) -> None:
    """Run once the user write landed (acknowledged, or read back inactive)."""
    if owed is not None:
        await service.owe_release_again(db, user_id, owed)
    try:
        await tickets.release_held_by(db, actor, holder_id=user_id)
    except tickets.HeldUnreadable as exc:
        # The deactivation stands and every other ticket went back to its queue: answered as
        # done, its mark left owed, paid by the sweep once an operator mended the ones that do
        # not read (tickets.release_owed).
        log.error("deactivation's release not paid: held tickets do not read", user_id=user_id, error=str(exc))
        return
    if owed is not None:
        await service.release_paid(db, user_id, owed)
