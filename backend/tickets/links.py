"""The link "Reabrir" makes between a finalized ticket and the ticket it opened for it.

Two writes (tickets.service.reopen): the new ticket, born pointing back (`reopened_from_ticket_id`
in its event v1 and document), then the old ticket's forward key (REOPENED_KEY, a natural key
claimed once). The back link is the fact; the forward key is derived from it. A process killed
between the two writes leaves the back link alone, so whoever asks for the forward link and finds
none completes it from the back link: the old ticket's screen (presenter.read_one) and the next
"Reabrir" of it, which then answers 409 naming the ticket instead of opening a second one.
Where it ends: a new ticket whose document is not written yet (its creator killed after event v1)
is found once something completes its document (its slot's next reader, or the projection sweep).
"""

from backend.core import natural_keys
from backend.core.db import Database
from backend.core.tenancy import TenantScope
from backend.tickets import repository
from backend.tickets.models import Ticket
from backend.tickets.states import REOPENED_KEY, is_open


async def reopened_as(db: Database, ticket: Ticket) -> str | None:
    """The id of the ticket "Reabrir" opened for `ticket`, or None. One `_id` read when the link
    is whole or `ticket` is open; for a finalized ticket without it, one query for a ticket pointing
    back, whose forward key is then claimed (the same claim `reopen` makes: whoever claims first,
    the key names one ticket)."""
    bound = await natural_keys.lookup(db, REOPENED_KEY, ticket.reseller_id, ticket.id)
    if bound is not None or is_open(ticket.status):
        return bound
    pointing_back = await repository.reopened_from(db, TenantScope(ticket.reseller_id), ticket)
    if not pointing_back:
        return None
    return await link(db, ticket, pointing_back[0].id)


async def link(db: Database, old: Ticket, new_id: str) -> str:
    """Claims `old`'s forward key for `new_id`; returns the ticket it names (another one when an
    earlier "Reabrir" of `old` claimed it first)."""
    bound, _ = await natural_keys.claim(db, REOPENED_KEY, old.reseller_id, old.id, target=new_id)
    return bound
