"""The stored shape of a person (collection `users`): staff who sign in (admin, a reseller's
owner, agents) and the tenant's clients (role "client", keyed by phone: backend/clients)."""

from datetime import datetime

from backend.core.schemas import StoredModel
from backend.core.tenancy import Actor, Role


class User(StoredModel):
    role: Role
    name: str = ""
    reseller_id: str | None = None
    active: bool = True
    created_at: datetime
    updated_at: datetime | None = None
    # Staff.
    email: str | None = None
    password_hash: str | None = None
    department_ids: list[str] = []
    # Bumped by every change that must end the user's sessions; access tokens carry the value they
    # were issued under (backend/core/security.py). Absent on users never bumped: 0.
    token_version: int = 0
    # Clients.
    phone: str | None = None  # None: known only by its WhatsApp LID (backend/clients/phones.py)
    whatsapp_lid: str | None = None
    notes: str = ""
    tags: list[str] = []
    # Where the client's open-ticket slots on each channel start (users.repository.raise_ticket_slot).
    ticket_slots: dict[str, int] = {}
    ticket_slot: int | None = None  # before per-channel hints: one per client (tickets.service._walk_start)
    merged_into: str | None = None  # the client this one was merged into (backend/clients/merge.py)
    merged_ids: list[str] = []  # the clients merged into this one (its history shows theirs too)
    # The client WhatsApp said is the same account (a LID chat's delivery naming the number
    # another client holds): offered to merge, never merged by itself (clients.upsert_for_chat).
    same_person_as: str | None = None

    def as_actor(self) -> Actor:
        """This user acting: a request's principal, or the person some work is done for."""
        return Actor(
            id=self.id,
            role=self.role,
            name=self.name,
            reseller_id=self.reseller_id,
            department_ids=tuple(self.department_ids),
        )


class ReleaseOwed(StoredModel):
    """A deactivation whose hand-back of the person's tickets may not have run to its end
    (collection `user_releases`, `_id` the person's: users/deactivation.py). `owed` names the
    deactivation that wrote it; None once a release ran to its end after it."""

    reseller_id: str
    owed: str | None = None
    owed_at: datetime
    paid_at: datetime | None = None
