from typing import Annotated

from pydantic import StringConstraints

from backend.core.pagination import Page
from backend.core.schemas import InputModel, ReadModel, Timestamp
from backend.quick_replies.models import Scope

# What follows the "/" in the composer: one word, so typing a space ends the lookup.
Shortcut = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32, pattern=r"^[\w\-.]+$")]
ReplyText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4096)]


class QuickReplyCreate(InputModel):
    shortcut: Shortcut
    text: ReplyText


class QuickReplyUpdate(InputModel):
    shortcut: Shortcut | None = None
    text: ReplyText | None = None
    active: bool | None = None


class QuickReplyRead(ReadModel):
    id: str
    reseller_id: str
    scope: Scope
    owner_id: str | None = None
    shortcut: str
    text: str
    active: bool
    created_at: Timestamp
    updated_at: Timestamp


QuickReplyPage = Page[QuickReplyRead]
