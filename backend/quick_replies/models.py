"""The stored shape of a quick reply (collection `quick_replies`)."""

from datetime import datetime
from typing import Literal

from backend.core.schemas import StoredModel

Scope = Literal["reseller", "personal"]
RESELLER_OWNER = "reseller"


class QuickReply(StoredModel):
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

    @property
    def owner_id(self) -> str | None:
        """The agent a personal reply belongs to (the API's shape); None for the tenant's."""
        return None if self.owner == RESELLER_OWNER else self.owner
