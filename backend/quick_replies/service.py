"""Quick replies: the tenant's shared ones (managed by the reseller owner) and each agent's own.

Shortcuts are unique per owner among active replies, enforced by a unique index on
(reseller_id, owner, shortcut_key) so concurrent creates are decided by the store. The
variables ({{cliente}}, {{agente}}, {{protocolo}}) are filled in the composer, where the agent
edits the text before sending; the server keeps the template as written.
"""

from typing import Any

from backend.core.clock import utcnow
from backend.core.db import Database, unique_or_conflict
from backend.core.errors import Forbidden, NotFound
from backend.core.ids import is_valid_id, new_id
from backend.core.tenancy import Actor
from backend.quick_replies import repository
from backend.quick_replies.models import RESELLER_OWNER, QuickReply
from backend.quick_replies.schemas import QuickReplyCreate, QuickReplyPage, QuickReplyRead, QuickReplyUpdate

TAKEN = "a quick reply with this shortcut already exists"


def _key(shortcut: str) -> str:
    return shortcut.casefold()


def _owner_for(actor: Actor) -> str:
    return RESELLER_OWNER if actor.role == "reseller" else actor.id


async def create(db: Database, actor: Actor, *, data: QuickReplyCreate) -> QuickReplyRead:
    assert actor.reseller_id
    now = utcnow()
    owner = _owner_for(actor)
    reply = QuickReply(
        id=new_id(),
        reseller_id=actor.reseller_id,
        scope="reseller" if owner == RESELLER_OWNER else "personal",
        owner=owner,
        shortcut=data.shortcut,
        shortcut_key=_key(data.shortcut),
        text=data.text,
        active=True,
        created_by=actor.id,
        created_at=now,
        updated_at=now,
    )
    with unique_or_conflict(TAKEN):
        await repository.insert(db, reply)
    return QuickReplyRead.of(reply)


async def list_visible(db: Database, actor: Actor, *, active: bool | None) -> QuickReplyPage:
    """The reseller sees the tenant's replies; an agent sees those and its own."""
    owners = [RESELLER_OWNER] if actor.role == "reseller" else [RESELLER_OWNER, actor.id]
    replies = await repository.list_for(db, actor.scope, owners=owners, active=active)
    return QuickReplyPage(items=[QuickReplyRead.of(r) for r in replies])


async def _get_visible_or_404(db: Database, actor: Actor, reply_id: str) -> QuickReply:
    reply = await repository.get(db, actor.scope, reply_id) if is_valid_id(reply_id) else None
    if reply is None or reply.owner not in (RESELLER_OWNER, actor.id):
        raise NotFound("quick reply not found")
    return reply


async def update(db: Database, actor: Actor, *, reply_id: str, data: QuickReplyUpdate) -> QuickReplyRead:
    reply = await _get_visible_or_404(db, actor, reply_id)
    if reply.owner != _owner_for(actor):
        raise Forbidden("only the reseller edits the company's quick replies")
    changes: dict[str, Any] = data.model_dump(exclude_unset=True, exclude_none=True)
    if not changes:
        return QuickReplyRead.of(reply)
    shortcut = changes.get("shortcut", reply.shortcut)
    active = changes.get("active", reply.active)
    changes["shortcut_key"] = _key(shortcut) if active else f"{_key(shortcut)}#{reply.id}"
    changes["updated_at"] = utcnow()
    with unique_or_conflict(TAKEN):
        updated = await repository.update(db, actor.scope, reply_id, changes)
    assert updated is not None
    return QuickReplyRead.of(updated)
