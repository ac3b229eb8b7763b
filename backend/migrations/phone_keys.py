"""Version 2: client phone keys in their canonical form (backend/clients/phones.py).

Until version 2 a client's phone key was the number exactly as given ("client-phone:<reseller>:
553188887777"); now every claim and look-up uses its `key_form` ("...:5531988887777"). A client
stored before, whose number is not in that form, gets the canonical key too, bound to the client
its own key names: so the other form of its number (an agent typing the ninth digit, WhatsApp
reporting the account without it) finds it instead of making a second client. Its old key stays
(keys are never removed) and its document is untouched (the phone shows as it was given).

Where one person is two clients already (one saved with each form), the canonical key is the
raw key of the one saved in the canonical form, bound long before: it is left as it is, since a
key never changes its target (backend/core/natural_keys.py; process-local hints rely on it,
backend/webhooks/service.py). Both clients are kept, nothing is merged or deleted, and the pair
is logged (which client holds the key, the other one, and whether the holder is the older) for a
person to look at. From then on both forms of the number reach the key's client.

Satisfaction surveys still open in a chat whose key changes form (`automation_surveys`, `_id` =
outbound.chat_key) are copied to the chat's new key, so the client's digit still rates its
ticket; the copy is a new document, the old one is left as it is.

Idempotent and resumable: every write is a unique `_id` insert (a re-run, or a run after one
killed midway, finds what was done and does the rest); nothing is read back in between but by
`_id`. It scans the clients (`users` with role "client") and the surveys once per run.
"""

from typing import Any

from pymongo.errors import DuplicateKeyError

from backend.clients import service as clients
from backend.clients.phones import key_form
from backend.core import natural_keys
from backend.core.clock import as_utc, utcnow
from backend.core.db import Database
from backend.core.logging import get_logger
from backend.outbound import service as outbound

USERS = "users"
SURVEYS = "automation_surveys"

log = get_logger("migrations")


async def claim_canonical_phone_keys(db: Database) -> dict[str, int]:
    """The canonical key for every client whose number is not in that form. Returns counts:
    `claimed` now, `found` claimed before (a re-run), `kept_apart` (the key names another client:
    the same person twice)."""
    counts = {"claimed": 0, "found": 0, "kept_apart": 0}
    projection = {"reseller_id": 1, "phone": 1, "created_at": 1}
    async for doc in db[USERS].find({"role": "client"}, projection=projection):
        phone, reseller_id = doc.get("phone"), doc.get("reseller_id")
        if not isinstance(phone, str) or not isinstance(reseller_id, str) or key_form(phone) == phone:
            continue
        # The client this number's key (in the form given) has named so far: the document's own
        # id, as the key and the document are written with one id (clients.upsert_by_phone).
        target = await natural_keys.lookup(db, clients.PHONE_KEY, reseller_id, phone) or str(doc["_id"])
        bound, won = await clients.claim_phone_key(db, reseller_id=reseller_id, phone=phone, target=target)
        if won:
            counts["claimed"] += 1
        elif bound == target:
            counts["found"] += 1
        else:
            counts["kept_apart"] += 1
            holder = await db[USERS].find_one({"_id": bound}, projection={"created_at": 1})
            log.warning(
                "one WhatsApp number, two clients: both kept; the number's key stays with the client it names",
                reseller_id=reseller_id,
                kept_on_key=bound,
                other_client=target,
                key_holder_is_older=_older(holder, doc),
            )
    return counts


def _older(first: dict[str, Any] | None, second: dict[str, Any]) -> bool | None:
    """Whether `first` was created before `second` (None: unknown)."""
    a, b = (first or {}).get("created_at"), second.get("created_at")
    return as_utc(a) < as_utc(b) if a is not None and b is not None else None


async def copy_open_surveys(db: Database) -> int:
    """Surveys still open under a chat key in the old form, copied under the new one (unless the
    chat has one there already). Returns how many this run copied."""
    copied = 0
    now = utcnow()
    async for doc in db[SURVEYS].find({}):
        connection_id, _, number = str(doc["_id"]).partition(":")
        chat = outbound.chat_key(connection_id, number)
        if chat == doc["_id"] or not _open(doc, now):
            continue
        try:
            await db[SURVEYS].insert_one({**doc, "_id": chat})
            copied += 1
        except DuplicateKeyError:  # copied by an earlier run, or the chat was asked anew since
            pass
    return copied


def _open(doc: dict[str, Any], now: Any) -> bool:
    expires = doc.get("expires_at")
    return (
        doc.get("answered_by") is None
        and doc.get("closed_at") is None
        and expires is not None
        and as_utc(expires) > now
    )


async def apply(db: Database) -> None:
    counts = await claim_canonical_phone_keys(db)
    surveys = await copy_open_surveys(db)
    log.info("client phone keys in canonical form", surveys_copied=surveys, **counts)
