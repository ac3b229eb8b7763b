"""Queries of the automatic messages. Both collections are read by `_id` only (the one query
FerretDB pushes down), and only by webhook processing and finalize hooks, never for a user.

- `automation_surveys` (models.Survey): per WhatsApp chat, the satisfaction survey last asked
  there. Overwritten by the next survey of the chat; every change is a `$set` by `_id` (a survey's
  chat is processed in order by one webhook lane, and the finalize that asks it is the ticket's last move).
Menu answers are natural keys ("menu-answer:<ticket>:<k>" -> message id, backend/core/natural_keys):
the k-th invalid answer to a ticket's menu is claimed once, so a redelivered answer keeps its k.
"""

from typing import Any

from pymongo.errors import DuplicateKeyError

from backend.automation.models import Survey
from backend.core.conditional import one_writer
from backend.core.db import Database

SURVEYS = "automation_surveys"


async def get_survey_internal(db: Database, chat: str) -> Survey | None:
    return Survey.load(await db[SURVEYS].find_one({"_id": chat}))


async def put_survey(db: Database, survey: Survey) -> None:
    """The chat's new survey: the first one inserted, a later one's fields set over the last's."""
    try:
        await db[SURVEYS].insert_one(survey.stored())
    except DuplicateKeyError:  # the chat was asked before (or a racing first survey inserted it)
        async with one_writer(db, SURVEYS, survey.id):  # a finalize's question beside the chat's answer
            await db[SURVEYS].update_one({"_id": survey.id}, {"$set": survey.model_dump(exclude={"id"})})


async def mark_survey(db: Database, chat: str, *, ticket_id: str, changes: dict[str, Any]) -> None:
    """Only while the chat's survey is still that ticket's (a later finalize may have asked anew)."""
    async with one_writer(db, SURVEYS, chat):
        await db[SURVEYS].update_one({"_id": chat, "ticket_id": ticket_id}, {"$set": changes})
