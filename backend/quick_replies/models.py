"""The stored shape of a quick reply (collection `quick_replies`)."""

from datetime import datetime
from typing import Literal, TypedDict

Scope = Literal["reseller", "personal"]


class QuickReplyDoc(TypedDict):
    _id: str
    reseller_id: str
    scope: Scope
    # "reseller" for the tenant's shared replies, the agent's id for personal ones: the unit
    # within which a shortcut is unique.
    owner: str
    shortcut: str
    # casefolded shortcut while active; a deactivated reply gets its own id appended, which frees
    # the shortcut for a new reply without deleting anything.
    shortcut_key: str
    text: str
    active: bool
    created_by: str
    created_at: datetime
    updated_at: datetime


RESELLER_OWNER = "reseller"
