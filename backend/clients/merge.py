"""Merging two clients that are one person: WhatsApp's LID split.

WhatsApp names a chat by the person's LID (a privacy id) or by their number. A chat first seen by
its LID alone, from someone the tenant already knows by number, makes a second client
(clients.service.upsert_for_chat: a key never changes its target, and nothing in the delivery
said they were one). The reseller's owner merges the extra client into the one kept: from then
on every chat the merged client's keys name is the kept client's (`followed`, in ingestion and in
the look-up by number), its history shows both clients' tickets (`merged_ids`, read by
clients.service `merged_group`), and the merged client leaves the contacts list. Nothing is moved
or deleted: the merged client keeps its tickets and messages, under its own id, and names the
kept one (`merged_into`).

Decided once: the merge is a unique key per merged client ("client-merge:<tenant>:<id>" -> kept
id), claimed before the documents say it, so two merges at once (into two different clients)
cannot both happen; a key per pair of clients, claimed first, names the one way two clients merge,
so two opposite merges at one moment (A into B, B into A) cannot both happen either. The kept
client's `merged_ids`, then the merged client's `merged_into`, are written after it and read back,
and written again by a repeat, which answers as the first did: a merge stopped between the two
leaves the merged client in the contacts list until that repeat. Refused while the merged client
has an open ticket — checked again by a repeat that finds the key but no pointer, since its chats
open tickets of their own until the pointer says otherwise: two open tickets of one person on one
channel are what the merge ends, and the person's agent finalizes it first. A merge decided into
a client that was merged on since completes into the client it decided (`followed` goes on to the
end of the chain). A message that arrives between the last check and the pointer may still open a
ticket under the merged client; it stays visible in its queue, and the next message of the chat
goes to the kept client.
"""

from collections.abc import Callable
from typing import Any

from backend.clients import service as clients
from backend.clients.schemas import ClientRead
from backend.core import natural_keys
from backend.core.clock import utcnow
from backend.core.db import Database
from backend.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from backend.core.ids import is_valid_id
from backend.core.tenancy import Actor
from backend.tickets import service as tickets
from backend.users import service as users

MERGE_KEY = "client-merge"
MERGE_PAIR_KEY = "client-merge-pair"
TARGET_MERGED = "the target client was merged into another: merge into that one"
WRITE_TRIES = 3


async def _until_shown(
    db: Database, actor: Actor, client: users.User, missing: Callable[[users.User], dict[str, Any]]
) -> users.User:
    """Writes what `missing` says the client's document lacks and reads it back, until it shows:
    on FerretDB every update writes the whole document, so ingestion completing the client (its
    LID or number, clients.service._complete) at the same moment can write back a copy without
    it. The key stays the truth; a repeat of the merge writes again whatever is still missing."""
    for _ in range(WRITE_TRIES):
        if not (changes := missing(client)):
            break
        await users.update_doc(db, actor.scope, client.id, {**changes, "updated_at": utcnow()})
        client = await users.get_internal(db, client.id) or client
    return client


async def merge(db: Database, actor: Actor, *, client_id: str, into_client_id: str) -> ClientRead:
    """The owner merges `client_id` into `into_client_id` (module docstring). Returns the kept client."""
    if actor.role != "reseller":
        raise Forbidden("only the reseller's owner merges clients")
    assert actor.reseller_id
    if not is_valid_id(into_client_id):
        raise NotFound("client not found")
    merged = await clients.get_doc_or_404(db, actor, client_id=client_id)
    kept = await clients.get_doc_or_404(db, actor, client_id=into_client_id)
    if merged.id == kept.id:
        raise Unprocessable("a client cannot be merged into itself")
    if (done := merged.merged_into) is None:
        done = await natural_keys.lookup(db, MERGE_KEY, actor.reseller_id, merged.id)
    if done is None:
        if kept.merged_into:
            raise Conflict({"message": TARGET_MERGED, "client_id": kept.merged_into})
        await _no_open_ticket(db, actor, merged)
        # One direction per pair: two opposite merges at one moment would each see the other
        # unmerged and leave a loop of two clients, neither of them in the contacts list.
        pair = sorted((merged.id, kept.id))
        way, _ = await natural_keys.claim(db, MERGE_PAIR_KEY, actor.reseller_id, *pair, target=kept.id)
        if way != kept.id:
            raise Conflict({"message": TARGET_MERGED, "client_id": way})
        done, _ = await natural_keys.claim(db, MERGE_KEY, actor.reseller_id, merged.id, target=kept.id)
    elif merged.merged_into is None:
        # Decided, not yet said (the pointer's write was lost): until it is, the client's chats
        # still open tickets of its own, which the pointer would leave without their answers.
        await _no_open_ticket(db, actor, merged)
    if done != kept.id:
        # Decided into a client merged on since: the owner may name either, and it completes.
        decided = await users.get_internal(db, done)
        survivor = done if decided is None else (await clients.followed(db, decided)).id
        if decided is None or survivor != kept.id:
            raise Conflict({"message": "the client was merged into another", "client_id": survivor})
        kept = decided
    # The kept client's history (`merged_ids`) and what it lacks and the merged one had (its LID,
    # its number) first, then the merged client's chats (ingestion follows the pointer): a merge
    # stopped between them leaves the merged client in the contacts list, where a repeat ends it.

    def kept_lacks(c: users.User) -> dict[str, Any]:
        lacks: dict[str, Any] = {"merged_ids": [*c.merged_ids, merged.id]} if merged.id not in c.merged_ids else {}
        for field in ("whatsapp_lid", "phone"):
            if getattr(merged, field) and not getattr(c, field):
                lacks[field] = getattr(merged, field)
        return lacks

    kept = await _until_shown(db, actor, kept, kept_lacks)
    await _until_shown(db, actor, merged, lambda c: {} if c.merged_into == kept.id else {"merged_into": kept.id})
    return ClientRead.of(kept)


async def _no_open_ticket(db: Database, actor: Actor, client: users.User) -> None:
    if opened := await tickets.open_tickets_of_client(db, actor.scope, client.id):
        raise Conflict({"message": "the client has an open ticket", "ticket_id": opened[0].id})
