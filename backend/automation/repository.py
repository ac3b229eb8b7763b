"""Queries of the automatic messages. Both collections are read by `_id` only (the one query
FerretDB pushes down), and only by webhook processing and finalize hooks, never for a user.

- `automation_surveys`: per WhatsApp chat (connection + client number), the satisfaction survey
  last asked there — the finalized ticket, when it was asked, until when a lone digit answers it,
  and how it ended (rated by a message, or closed by a new conversation). Overwritten by the next
  survey of the chat; every change is a `$set` by `_id` (a survey's chat is processed in order by
  one webhook lane, and the finalize that asks it is the ticket's last move).
Menu answers are natural keys ("menu-answer:<ticket>:<k>" -> message id, backend/core/natural_keys):
the k-th invalid answer to a ticket's menu is claimed once, so a redelivered answer keeps its k.
"""

from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from backend.core.db import Database

SURVEYS = "automation_surveys"


def chat_id(connection_id: str, phone: str) -> str:
    return f"{connection_id}:{''.join(ch for ch in phone if ch.isdigit())}"


async def get_survey_internal(db: Database, chat: str) -> dict[str, Any] | None:
    return await db[SURVEYS].find_one({"_id": chat})


async def put_survey(
    db: Database, chat: str, *, ticket_id: str, reseller_id: str, asked_at: datetime, expires_at: datetime
) -> None:
    doc = {
        "ticket_id": ticket_id,
        "reseller_id": reseller_id,
        "asked_at": asked_at,
        "expires_at": expires_at,
        "answered_by": None,
        "closed_at": None,
    }
    try:
        await db[SURVEYS].update_one({"_id": chat}, {"$set": doc}, upsert=True)
    except DuplicateKeyError:  # two first upserts of the chat racing: the other one created it
        await db[SURVEYS].update_one({"_id": chat}, {"$set": doc})


async def mark_survey(db: Database, chat: str, *, ticket_id: str, changes: dict[str, Any]) -> None:
    """Only while the chat's survey is still that ticket's (a later finalize may have asked anew)."""
    await db[SURVEYS].update_one({"_id": chat, "ticket_id": ticket_id}, {"$set": changes})
