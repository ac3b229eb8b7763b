"""Clients (end customers) live in `users` with role "client", keyed by phone per tenant."""

import asyncio
import csv
import io
import re
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError

from backend.clients.phones import key_form
from backend.clients.schemas import (
    MAX_IMPORT_LINES,
    ClientCreate,
    ClientImport,
    ClientImportResult,
    ClientPage,
    ClientRead,
    ClientUpdate,
    ImportLineError,
    ImportRow,
    normalize_phone,
)
from backend.core import natural_keys
from backend.core.clock import utcnow
from backend.core.db import Database
from backend.core.errors import Conflict, Forbidden, Unprocessable, or_404
from backend.core.ids import is_valid_id, new_id
from backend.core.pagination import decode_id_cursor, next_id_cursor
from backend.core.retry import read_winner
from backend.core.schemas import iso_ms
from backend.core.tenancy import Actor, TenantScope
from backend.exports.service import cell, csv_lines
from backend.tags.schemas import normalize_tag
from backend.users import service as users
from backend.users.models import User as User  # published: a client is a user with role "client"

# The phone key: "client-phone:<reseller>:<key_form(phone)>" -> the client's id. Every claim and
# look-up goes through `_phone_key_parts`, so the numbers WhatsApp treats as one account find one
# client (backend/clients/phones.py).
PHONE_KEY = "client-phone"
# The LID key: "client-lid:<reseller>:<lid>" -> the client a WhatsApp LID chat is (phones.py).
LID_KEY = "client-lid"
ROLES = ("client",)
# A merged client names the one it was merged into (`merged_into`); the chain is followed this far.
MAX_MERGE_HOPS = 8
# Search by name or phone matches at most this many clients when it narrows tickets by client.
MAX_MATCHED_CLIENTS = 1000


def _phone_key_parts(reseller_id: str, phone: str) -> tuple[str, str]:
    return reseller_id, key_form(phone)


async def id_by_phone(db: Database, reseller_id: str, phone: str) -> str | None:
    """The id the tenant's phone key binds for `phone` in any of its forms (a key never changes
    its target), or None: nobody has claimed it yet."""
    return await natural_keys.lookup(db, PHONE_KEY, *_phone_key_parts(reseller_id, phone))


async def claim_phone_key(db: Database, *, reseller_id: str, phone: str, target: str) -> tuple[str, bool]:
    """Binds the phone key of `phone` (its `key_form`) to `target` unless it is bound already:
    (the bound target, won). `upsert_by_phone`'s claim, and the migration's for clients whose key
    was stored in the form given (backend/migrations/versions.py, version 2)."""
    return await natural_keys.claim(db, PHONE_KEY, *_phone_key_parts(reseller_id, phone), target=target)


async def upsert_by_phone(
    db: Database, *, reseller_id: str, phone: str, name: str, extra: dict[str, Any] | None = None
) -> tuple[User, bool]:
    """The one way a client comes to exist: race-safe, so two first messages make one client —
    also from the two forms of one number (the key is the number's `key_form`; the new client's
    `phone` is the number as given). `extra`: fields a new client starts with (e-mail, notes,
    tags); an existing one is returned as is."""
    bound, won = await claim_phone_key(db, reseller_id=reseller_id, phone=phone, target=new_id())
    # Having just bound the phone to a new id, nobody else can have written that id: no read.
    existing = None if won else await users.get_internal(db, bound)
    if existing is not None:
        return await followed(db, existing), False
    return await _insert_client(db, bound, reseller_id=reseller_id, name=name, fields={**(extra or {}), "phone": phone})


async def _insert_client(
    db: Database, client_id: str, *, reseller_id: str, name: str, fields: dict[str, Any]
) -> tuple[User, bool]:
    """Writes the client its keys were just bound to: (client, created). A concurrent caller that
    bound (or found bound) the same keys writes the same id, and the loser reads the winner."""
    now = utcnow()
    client = User(
        **fields, id=client_id, role="client", reseller_id=reseller_id, name=name, created_at=now, updated_at=now
    )
    try:
        await users.insert(db, client)
    except DuplicateKeyError:
        found = await read_winner(lambda: users.get_internal(db, client_id), what=f"client {client_id}")
        return found, False
    return client, True


async def id_for_chat(db: Database, reseller_id: str, *, phone: str, lid: str) -> str | None:
    """The client a WhatsApp chat's keys name, or None: the LID's when the chat names one and it
    is bound (a LID chat is one client, whether or not a delivery carries its number), else the
    number's."""
    if lid and (bound := await natural_keys.lookup(db, LID_KEY, reseller_id, lid)) is not None:
        return bound
    return await id_by_phone(db, reseller_id, phone) if phone else None


async def upsert_for_chat(db: Database, *, reseller_id: str, phone: str, lid: str, name: str) -> tuple[User, bool]:
    """The client of a WhatsApp chat named by its number, its LID, or both (backend/clients/phones.py),
    made when new: race-safe like `upsert_by_phone`. Returns (client, created).

    The LID key decides: bound, its client is the chat's; unbound, it is claimed for the client
    the number already names (a known client seen by its LID for the first time), else for a new
    client. When both come, the client also gets what it lacked: its `whatsapp_lid`, and the
    number when nobody holds that number's key (a client first known only by its LID). Every
    step is a claim of a unique key or a write of what the keys already say, so a redelivery or a
    second process repeats it harmlessly, and one killed between two steps is completed by the
    next message of the chat. Where it ends: a number whose key another client holds (that
    client wrote by number, the LID chat was seen first without it) stays with that client, and
    the chat with the LID's client; the two are not merged, but WhatsApp has just said they are
    one account, so the LID's client is marked `same_person_as` the number's, which the contacts
    screen offers to merge (backend/clients/merge.py)."""
    if not lid:
        client, created = await upsert_by_phone(db, reseller_id=reseller_id, phone=phone, name=name)
        return (client if created else await _complete(db, client, phone=phone, lid="")), created
    bound = await natural_keys.lookup(db, LID_KEY, reseller_id, lid)
    if bound is None:
        by_phone = await id_by_phone(db, reseller_id, phone) if phone else None
        bound, _ = await natural_keys.claim(db, LID_KEY, reseller_id, lid, target=by_phone or new_id())
    holder = (await claim_phone_key(db, reseller_id=reseller_id, phone=phone, target=bound))[0] if phone else None
    phone = phone if holder == bound else ""
    existing = await users.get_internal(db, bound)
    if existing is not None and existing.merged_into:
        return await _complete(db, await followed(db, existing), phone=phone, lid=lid), False
    split = {"same_person_as": holder} if holder is not None and holder != bound else {}
    if existing is None:  # new, or its creator died between the key and the document
        fields = {"phone": phone or None, "whatsapp_lid": lid, **split}
        client, created = await _insert_client(db, bound, reseller_id=reseller_id, name=name, fields=fields)
        return (client if created else await _complete(db, client, phone=phone, lid=lid, also=split)), created
    return await _complete(db, existing, phone=phone, lid=lid, also=split), False


async def followed(db: Database, client: User) -> User:
    """The client whose conversations `client`'s are: itself, or the one it was merged into (a
    chain of merges followed to its end). Its keys still name the merged client (a key never
    changes its target): whoever resolves a chat by them comes here."""
    seen: dict[str, User] = {}
    for _ in range(MAX_MERGE_HOPS):
        if not client.merged_into:
            return client
        seen[client.id] = client
        into = await users.get_internal(db, client.merged_into)
        if into is None:
            return client
        if into.id in seen:
            # Two opposite merges at one moment (each checked the other unmerged) make a loop:
            # every chat of it goes to the same one of its clients, whichever it entered by.
            order = list(seen)
            return min((seen[i] for i in order[order.index(into.id) :]), key=lambda c: c.id)
        client = into
    return client


async def merged_into_chain(db: Database, client_id: str) -> list[str]:
    """`client_id` and the clients it was merged into, in order (whose histories show its tickets)."""
    chain = [client_id]
    client = await users.get_internal(db, client_id)
    for _ in range(MAX_MERGE_HOPS):
        if client is None or not client.merged_into:
            break
        chain.append(client.merged_into)
        client = await users.get_internal(db, client.merged_into)
    return chain


async def merged_group(db: Database, scope: TenantScope, client_id: str) -> list[str]:
    """`client_id` and every client merged into it, directly or along a chain (its history): the
    clients' own `merged_ids`, so a client never merged costs one `_id` read, not a scan."""
    group, frontier = [client_id], [client_id]
    for _ in range(MAX_MERGE_HOPS):
        found = await asyncio.gather(*(users.get(db, scope, i, roles=ROLES) for i in frontier))
        frontier = [m for c in found if c is not None for m in c.merged_ids if m not in group]
        if not frontier:
            break
        group.extend(frontier)
    return group


async def _complete(db: Database, client: User, *, phone: str, lid: str, also: dict[str, str] | None = None) -> User:
    """Writes onto the client what its keys name and its document lacks (and `also`, when the
    document does not say it yet)."""
    changes: dict[str, Any] = {k: v for k, v in (also or {}).items() if getattr(client, k) != v}
    if lid and not client.whatsapp_lid:
        changes["whatsapp_lid"] = lid
    if phone and not client.phone:
        changes["phone"] = phone
    if not changes:
        return client
    assert client.reseller_id
    changes["updated_at"] = utcnow()
    updated = await users.update_doc(db, TenantScope(client.reseller_id), client.id, changes)
    return updated or client


def _extra(data: ClientCreate) -> dict[str, Any]:
    return data.model_dump(include={"email", "notes", "tags"})


async def create(db: Database, actor: Actor, *, data: ClientCreate) -> ClientRead:
    assert actor.reseller_id
    client, created = await upsert_by_phone(
        db, reseller_id=actor.reseller_id, phone=data.phone, name=data.name, extra=_extra(data)
    )
    if not created:
        raise Conflict({"message": "a client with this phone already exists", "client_id": client.id})
    return ClientRead.of(client)


async def get_doc_or_404(db: Database, actor: Actor, *, client_id: str) -> User:
    client = await users.get(db, actor.scope, client_id, roles=ROLES) if is_valid_id(client_id) else None
    return or_404(client, "client")


async def get_by_phone(db: Database, actor: Actor, *, phone: str) -> User | None:
    if actor.reseller_id is None:
        return None
    client_id = await id_by_phone(db, actor.reseller_id, phone)
    found = await users.get(db, actor.scope, client_id, roles=ROLES) if client_id else None
    return await followed(db, found) if found is not None else None


def search_filter(q: str, *, name: str = "name", phone: str = "phone") -> dict[str, Any]:
    """Part of the name (any case, literal) or part of the number, in the fields named so
    (a ticket keeps its client's as `client_name` and `client_phone`)."""
    text = q.strip()
    ors: list[dict[str, Any]] = [{name: {"$regex": re.escape(text), "$options": "i"}}]
    digits = re.sub(r"[\s\-().+]", "", text)
    if digits.isdigit():
        ors.append({phone: {"$regex": re.escape(digits)}})
    return {"$or": ors}


async def ids_tagged(db: Database, scope: TenantScope, tag: str) -> list[str]:
    """Ids of the clients in `scope` tagged `tag` (the inbox's tag filter)."""
    return await users.ids_matching(db, scope, {"tags": normalize_tag(tag)}, role="client", limit=MAX_MATCHED_CLIENTS)


async def ids_matching(db: Database, scope: TenantScope, q: str) -> list[str]:
    """Ids of the clients in `scope` whose current name or number matches `q` (ticket search)."""
    return await users.ids_matching(db, scope, search_filter(q), role="client", limit=MAX_MATCHED_CLIENTS)


async def list_page(
    db: Database,
    actor: Actor,
    *,
    cursor: str | None,
    limit: int,
    phone: str | None,
    q: str | None = None,
    tag: str | None = None,
    active: bool | None = None,
) -> ClientPage:
    if phone is not None:
        try:
            normalized = normalize_phone(phone)
        except ValueError as exc:
            raise Unprocessable(str(exc)) from exc
        client = await get_by_phone(db, actor, phone=normalized)
        return ClientPage(items=[ClientRead.of(client)] if client else [])
    before = decode_id_cursor(cursor) if cursor else None
    extra: dict[str, Any] = {}
    if q and q.strip():
        extra.update(search_filter(q))
    if tag:
        extra["tags"] = normalize_tag(tag)
    if active is not None:
        # Clients stored before deactivation existed have no field: active.
        extra["active"] = False if not active else {"$ne": False}
    extra["merged_into"] = None  # merged ones are part of another contact now (null or absent)
    found = await users.list_docs(db, actor.scope, roles=ROLES, before_id=before, limit=limit + 1, extra=extra)
    return ClientPage(items=[ClientRead.of(c) for c in found[:limit]], next_cursor=next_id_cursor(found, limit))


async def update(db: Database, actor: Actor, *, client_id: str, data: ClientUpdate) -> ClientRead:
    current = await get_doc_or_404(db, actor, client_id=client_id)
    if data.active is not None and actor.role != "reseller":
        raise Forbidden("only the reseller's owner deactivates or reactivates clients")
    # A null e-mail clears it; a null elsewhere leaves the field as it is.
    changes = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None or k == "email"}
    if "phone" in changes:
        await _give_phone(db, current, changes["phone"])
    changes["updated_at"] = utcnow()
    client = await users.update_doc(db, actor.scope, client_id, changes)
    assert client is not None
    return ClientRead.of(client)


async def _give_phone(db: Database, client: User, phone: str) -> None:
    """A number for a client known without one (a WhatsApp LID chat): claimed like a new
    client's, so it is nobody else's; a client's number never changes once it has one."""
    if client.phone:
        if key_form(client.phone) == key_form(phone):
            return
        raise Unprocessable("the phone of a client does not change")
    assert client.reseller_id
    bound, _ = await claim_phone_key(db, reseller_id=client.reseller_id, phone=phone, target=client.id)
    if bound != client.id:
        raise Conflict({"message": "a client with this phone already exists", "client_id": bound})


async def distinct_tags(db: Database, actor: Actor) -> list[str]:
    if actor.reseller_id is None:
        return []
    return [str(t) for t in await users.distinct_with_role(db, actor.scope, "tags", role="client")]


# --- CSV import and export -------------------------------------------------------------------

_COLUMNS = {
    "nome": "name",
    "name": "name",
    "telefone": "phone",
    "phone": "phone",
    "celular": "phone",
    "whatsapp": "phone",
    "email": "email",
    "e-mail": "email",
    "notas": "notes",
    "notes": "notes",
    "observacoes": "notes",
    "observações": "notes",
    "tags": "tags",
    "etiquetas": "tags",
}
EXPORT_HEADER = ["nome", "telefone", "email", "notas", "tags", "criado_em"]


def _parse_csv(text: str) -> tuple[list[tuple[int, dict[str, Any]]], list[ImportLineError]]:
    """(line number, raw fields) for each non-empty line after the header, or the header's errors."""
    text = text.removeprefix("\ufeff")
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") >= first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return [], [ImportLineError(line=1, field="header", message="the file is empty")]
    except csv.Error as exc:
        return [], [ImportLineError(line=1, field="header", message=str(exc))]
    fields = [_COLUMNS.get(h.strip().casefold()) for h in header]
    if "name" not in fields or "phone" not in fields:
        message = "the header must name the columns nome and telefone"
        return [], [ImportLineError(line=1, field="header", message=message)]
    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            raw: dict[str, Any] = {}
            for field, cell in zip(fields, cells, strict=False):
                if field is not None and cell.strip():
                    raw[field] = [t for t in re.split(r"[|,]", cell) if t.strip()] if field == "tags" else cell
            rows.append((reader.line_num, raw))
    except csv.Error as exc:
        return [], [ImportLineError(line=reader.line_num, field="csv", message=str(exc))]
    return rows, []


def _validate(rows: list[tuple[int, dict[str, Any]]]) -> tuple[list[tuple[int, ClientCreate]], list[ImportLineError]]:
    valid: list[tuple[int, ClientCreate]] = []
    errors: list[ImportLineError] = []
    seen: dict[str, int] = {}  # key_form of each phone -> its first line
    for line, raw in rows:
        try:
            data = ClientCreate.model_validate(raw)
        except ValidationError as exc:
            for issue in exc.errors():
                field = str(issue["loc"][0]) if issue["loc"] else "line"
                errors.append(
                    ImportLineError(line=line, field=field, message=issue["msg"].removeprefix("Value error, "))
                )
            continue
        key = key_form(data.phone)
        if key in seen:
            message = f"the same phone is on line {seen[key]}"
            errors.append(ImportLineError(line=line, field="phone", message=message))
            continue
        seen[key] = line
        valid.append((line, data))
    return valid, errors


async def import_csv(db: Database, actor: Actor, *, data: ClientImport) -> ClientImportResult:
    """Checks every line before writing any: a file with an error imports nothing (422 naming each
    bad line). Then writes line by line keyed by phone, so a retry after a crash part-way finishes
    the same import without duplicates: new phones become clients, known ones take the file's
    name, e-mail and notes and add its tags."""
    assert actor.reseller_id
    rows, errors = _parse_csv(data.csv)
    if len(rows) > MAX_IMPORT_LINES:
        errors.append(ImportLineError(line=0, field="csv", message=f"at most {MAX_IMPORT_LINES} lines per file"))
    valid, line_errors = _validate(rows) if not errors else ([], [])
    errors += line_errors
    if errors and not data.dry_run:
        raise Unprocessable([{"type": "csv_line", "loc": ["csv", e.line, e.field], "msg": e.message} for e in errors])
    existing = {line: await get_by_phone(db, actor, phone=item.phone) for line, item in valid}
    preview = [
        ImportRow(line=line, **item.model_dump(mode="json"), exists=existing[line] is not None) for line, item in valid
    ]
    result = ClientImportResult(dry_run=data.dry_run, rows=preview, errors=errors)
    if data.dry_run:
        return result
    for _line, item in valid:
        client, created = await upsert_by_phone(
            db, reseller_id=actor.reseller_id, phone=item.phone, name=item.name, extra=_extra(item)
        )
        if created:
            result.created += 1
            continue
        changes: dict[str, Any] = {"name": item.name, "tags": sorted(set(client.tags) | set(item.tags))}
        if item.email:
            changes["email"] = item.email
        if item.notes:
            changes["notes"] = item.notes
        if any(getattr(client, k) != v for k, v in changes.items()):
            await users.update_doc(db, actor.scope, client.id, {**changes, "updated_at": utcnow()})
        result.updated += 1
    return result


async def export_csv(db: Database, actor: Actor) -> AsyncIterator[str]:
    """The tenant's clients as CSV (UTF-8 with BOM, `;`), sent in chunks as they are read."""
    assert actor.reseller_id
    yield "\ufeff" + csv_lines([EXPORT_HEADER])
    chunk: list[list[str]] = []
    async for client in users.iter_with_role(db, actor.scope, role="client"):
        if client.merged_into:  # part of the client it was merged into, as in the list
            continue
        texts = (client.name, client.phone, client.email, client.notes, ", ".join(client.tags or []))
        chunk.append([*(cell(t) for t in texts), iso_ms(client.created_at)])
        if len(chunk) == 200:
            yield csv_lines(chunk)
            chunk = []
    yield csv_lines(chunk)
