"""Clients (end customers) live in `users` with role "client", keyed by phone per tenant."""

from typing import Any

from pymongo.errors import DuplicateKeyError

from backend.clients.schemas import ClientCreate, ClientPage, ClientRead, ClientUpdate, normalize_phone
from backend.core import natural_keys
from backend.core.clock import utcnow
from backend.core.db import Database
from backend.core.errors import Conflict, NotFound, Unprocessable
from backend.core.ids import is_valid_id, new_id
from backend.core.pagination import decode_id_cursor, next_id_cursor
from backend.core.retry import read_winner
from backend.core.tenancy import Actor
from backend.users import repository as users

PHONE_KEY = "client-phone"
ROLES = ("client",)


async def upsert_by_phone(db: Database, *, reseller_id: str, phone: str, name: str) -> tuple[dict[str, Any], bool]:
    """The one way a client comes to exist: race-safe, so two first messages make one client."""
    bound, _ = await natural_keys.claim(db, PHONE_KEY, reseller_id, phone, target=new_id())
    existing = await users.get(db, bound)
    if existing is not None:
        return existing, False
    now = utcnow()
    doc: dict[str, Any] = {
        "_id": bound,
        "role": "client",
        "reseller_id": reseller_id,
        "name": name,
        "phone": phone,
        "active": True,
        "created_at": now,
        "updated_at": now,
    }
    try:
        await users.insert(db, doc)
    except DuplicateKeyError:  # the concurrent caller wrote the same claimed client
        found = await read_winner(lambda: users.get(db, bound), what=f"client {bound}")
        return found, False
    return doc, True


async def create(db: Database, actor: Actor, *, data: ClientCreate) -> ClientRead:
    assert actor.reseller_id
    doc, created = await upsert_by_phone(db, reseller_id=actor.reseller_id, phone=data.phone, name=data.name)
    if not created:
        raise Conflict({"message": "a client with this phone already exists", "client_id": doc["_id"]})
    return ClientRead.from_doc(doc)


async def get_doc_or_404(db: Database, actor: Actor, *, client_id: str) -> dict[str, Any]:
    doc = await users.get_scoped(db, actor, client_id, roles=ROLES) if is_valid_id(client_id) else None
    if doc is None:
        raise NotFound("client not found")
    return doc


async def get_by_phone(db: Database, actor: Actor, *, phone: str) -> dict[str, Any] | None:
    if actor.reseller_id is None:
        return None
    client_id = await natural_keys.lookup(db, PHONE_KEY, actor.reseller_id, phone)
    return await users.get_scoped(db, actor, client_id, roles=ROLES) if client_id else None


async def list_page(db: Database, actor: Actor, *, cursor: str | None, limit: int, phone: str | None) -> ClientPage:
    if phone is not None:
        try:
            normalized = normalize_phone(phone)
        except ValueError as exc:
            raise Unprocessable(str(exc)) from exc
        doc = await get_by_phone(db, actor, phone=normalized)
        return ClientPage(items=[ClientRead.from_doc(doc)] if doc else [])
    before = decode_id_cursor(cursor) if cursor else None
    docs = await users.list_page(db, actor, roles=ROLES, before_id=before, limit=limit + 1)
    nxt = next_id_cursor(docs, limit)
    return ClientPage(items=[ClientRead.from_doc(d) for d in docs[:limit]], next_cursor=nxt)


async def update(db: Database, actor: Actor, *, client_id: str, data: ClientUpdate) -> ClientRead:
    await get_doc_or_404(db, actor, client_id=client_id)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    changes["updated_at"] = utcnow()
    doc = await users.update(db, actor, client_id, changes)
    assert doc is not None
    return ClientRead.from_doc(doc)
