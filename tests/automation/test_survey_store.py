"""A chat's survey document (automation.repository): the chat's first survey is inserted, a later
one's fields are set over it (an earlier answer or close does not carry over), and two first
surveys of a chat racing both land on the one document."""

import asyncio
from datetime import timedelta
from typing import Any

from backend.automation import repository
from backend.automation.models import Survey
from backend.core.clock import utcnow
from backend.core.ids import new_id
from backend.outbound import service as outbound


def _survey(chat: str, *, minutes: int = 0) -> Survey:
    asked_at = utcnow() + timedelta(minutes=minutes)
    return Survey(id=chat, ticket_id=new_id(), reseller_id=new_id(), asked_at=asked_at, expires_at=asked_at)


async def test_a_later_survey_of_the_chat_replaces_the_answered_one(db: Any) -> None:
    chat = outbound.chat_key(new_id(), "+55 11 90000-0001")
    first = _survey(chat)
    await repository.put_survey(db, first)
    marks = {"answered_by": "m1", "answered_at": utcnow()}
    await repository.mark_survey(db, chat, ticket_id=first.ticket_id, changes=marks)
    answered = await repository.get_survey_internal(db, chat)
    assert answered is not None and answered.answered_by == "m1" and not answered.pending

    second = _survey(chat, minutes=5)
    await repository.put_survey(db, second)
    stored = await repository.get_survey_internal(db, chat)
    assert stored is not None and stored.pending
    assert (stored.ticket_id, stored.reseller_id, stored.answered_at) == (second.ticket_id, second.reseller_id, None)
    # A mark for the first ticket (a late run of its steps) no longer applies to the chat.
    await repository.mark_survey(db, chat, ticket_id=first.ticket_id, changes={"closed_at": utcnow()})
    after = await repository.get_survey_internal(db, chat)
    assert after is not None and after.pending


async def test_two_first_surveys_of_a_chat_racing_both_land(db: Any) -> None:
    chat = outbound.chat_key(new_id(), "+55 11 90000-0002")
    surveys = [_survey(chat), _survey(chat)]
    await asyncio.gather(*(repository.put_survey(db, s) for s in surveys))
    stored = await repository.get_survey_internal(db, chat)
    assert stored is not None and stored.ticket_id in {s.ticket_id for s in surveys}
    assert await db[repository.SURVEYS].count_documents({"_id": chat}) == 1
