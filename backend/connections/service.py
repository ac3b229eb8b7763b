"""Connection rules: creation binds a provider instance (webhook set by us, so the secret never
has to be shown), status and QR code follow the provider, secrets never leave the backend."""

import secrets
from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError, PyMongoError

from backend.connections import repository
from backend.connections.models import Connection as Connection  # published: the stored shape
from backend.connections.providers import registry
from backend.connections.providers.base import (
    ConnectionStatus,
    ProviderError,
    QrCode,
    WebhookSetting,
    WhatsAppProvider,
)

# Published to other domains (they never import a repository: docs/ARCHITECTURE.md §2): a connection by id.
from backend.connections.repository import bound_internal as bound_internal
from backend.connections.repository import get_cached_internal as get_cached_internal
from backend.connections.repository import get_internal as get_internal
from backend.connections.repository import get_shared_internal as get_shared_internal
from backend.connections.repository import kept_internal as kept_internal
from backend.connections.schemas import ConnectionCreate, ConnectionPage, ConnectionRead, ConnectionUpdate, QrCodeRead
from backend.core import natural_keys
from backend.core.clock import as_utc, utcnow
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.errors import Conflict, ServiceUnavailable, Unprocessable, or_404
from backend.core.ids import is_valid_id, new_id
from backend.core.logging import get_logger
from backend.core.pagination import decode_id_cursor, next_id_cursor
from backend.core.tenancy import Actor, TenantScope
from backend.departments import service as departments
from backend.departments.schemas import DepartmentRead, DepartmentUpdate
from backend.realtime import feed
from backend.tickets.models import Ticket

log = get_logger("connections")

INSTANCE_KEY = "wa-instance"
INSTANCE_MISSING = "instance not found at the provider: pair the phone again"
WEBHOOK_TOKEN_HEADER = "X-Webhook-Token"


def webhook_url(settings: Settings, connection_id: str) -> str:
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}/api/v1/webhooks/whatsapp/{connection_id}"


def _webhook(settings: Settings, conn: Connection) -> dict[str, Any]:
    """Where the provider posts the connection's events, and the token it authenticates them with."""
    return {
        "webhook_url": webhook_url(settings, conn.id),
        "webhook_headers": {WEBHOOK_TOKEN_HEADER: conn.webhook_token},
    }


async def announce(db: Database, conn: Connection) -> None:
    """Tell the tenant's screens (reseller level) that a connection's status or QR changed. Only
    the API shape goes out: secrets are not fields of ConnectionRead."""
    shown = ConnectionRead.of(conn).model_dump(mode="json")
    await feed.publish(
        db, reseller_id=conn.reseller_id, type_="connection.status", connection=shown, data={"connection": shown}
    )


async def _bind_instance(db: Database, settings: Settings, conn: Connection) -> Connection:
    """Asks the provider to create the instance with our webhook. A provider failure is kept on
    the connection (`last_error`, status close) and retried by the next QR code request; unless
    the instance is there already with this connection's webhook (`_made_by_us`): an earlier
    create whose binding write was lost made it, and it is bound now, as that write would have."""
    async with registry.http_client(settings) as http:
        provider = registry.build(conn.provider, settings, http)
        try:
            created = await provider.create_instance(instance_name=conn.instance_name, **_webhook(settings, conn))
        except ProviderError as exc:
            log.warning("provider create_instance failed", connection_id=conn.id, error=str(exc))
            changes: dict[str, Any] = {"status": "close", "last_error": str(exc), "updated_at": utcnow()}
            if (held := await _made_by_us(settings, conn, provider)) is not None:
                try:
                    qr = await provider.fetch_qr_code(instance_name=conn.instance_name)
                except ProviderError as again:
                    raise ServiceUnavailable(f"provider unavailable: {again}") from again
                drift = webhook_drift(settings, conn, held, provider.webhook_events)
                changes = {
                    "status": qr.status,
                    "qr_code": qr.qr_code,
                    "provider_created": True,
                    # As held: a QR code request sets the webhook again when they differ (`_provider_qr`).
                    "webhook_events": provider.webhook_events if not drift else list(held.events),
                    "last_error": None,
                    "updated_at": utcnow(),
                }
        else:
            changes = {
                "status": created.status,
                "qr_code": created.qr_code,
                "provider_created": True,
                "provider_instance_id": created.instance_id,
                "provider_token": created.instance_token,
                "webhook_events": provider.webhook_events,
                "last_error": None,
                "updated_at": utcnow(),
            }
    return await repository.update(db, TenantScope(conn.reseller_id), conn.id, changes)


async def _made_by_us(settings: Settings, conn: Connection, provider: WhatsAppProvider) -> WebhookSetting | None:
    """The instance's webhook when the provider holds the instance with this connection's URL and
    token (a secret of this connection alone: no one else made it so), else None."""
    try:
        held = await provider.webhook_of(instance_name=conn.instance_name)
    except ProviderError:
        return None
    if held is None:
        return None
    ours = held.url == webhook_url(settings, conn.id) and held.headers.get(WEBHOOK_TOKEN_HEADER) == conn.webhook_token
    return held if ours else None


async def create(db: Database, actor: Actor, settings: Settings, *, data: ConnectionCreate) -> ConnectionRead:
    assert actor.reseller_id
    await departments.require_active_ids(db, actor.reseller_id, [data.default_department_id])
    # Instance names are global on a provider server: the natural key arbitrates concurrent creates.
    bound, won = await natural_keys.claim(db, INSTANCE_KEY, data.provider, data.instance_name, target=new_id())
    if not won and await repository.get_internal(db, bound) is not None:
        raise Conflict("instance name already in use")
    now = utcnow()
    conn = Connection(
        id=bound,  # a claimer that died before inserting left the key: complete it
        reseller_id=actor.reseller_id,
        **data.model_dump(),
        status="connecting",
        active=True,
        webhook_token=secrets.token_urlsafe(32),
        created_at=now,
        updated_at=now,
    )
    try:
        await repository.insert(db, conn)
    except DuplicateKeyError as exc:
        raise Conflict("instance name already in use") from exc
    return ConnectionRead.of(await _bind_instance(db, settings, conn))


async def get_doc_or_404(db: Database, actor: Actor, *, connection_id: str) -> Connection:
    conn = await repository.get(db, actor.scope, connection_id) if is_valid_id(connection_id) else None
    return or_404(conn, "connection")


async def list_page(db: Database, actor: Actor, *, cursor: str | None, limit: int) -> ConnectionPage:
    before = decode_id_cursor(cursor) if cursor else None
    found = await repository.list_page(db, actor.scope, before_id=before, limit=limit + 1)
    nxt = next_id_cursor(found, limit)
    items = [ConnectionRead.of(c) for c in found[:limit]]
    if actor.role == "agent":
        # Agents list them to start a conversation on one: which exist and whether they can
        # send, never the pairing QR code (scanning it binds a phone to the tenant's number).
        items = [c.model_copy(update={"qr_code": None, "last_error": None}) for c in items]
    return ConnectionPage(items=items, next_cursor=nxt)


async def update(db: Database, actor: Actor, *, connection_id: str, data: ConnectionUpdate) -> ConnectionRead:
    conn = await get_doc_or_404(db, actor, connection_id=connection_id)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    named = [changes["default_department_id"]] if "default_department_id" in changes else []
    kept = [conn.default_department_id, *conn.menu_department_ids]
    await departments.require_active_ids(
        db, conn.reseller_id, named + changes.get("menu_department_ids", []), kept=kept
    )
    after = conn.model_copy(update=changes)  # for the check only: the write sets `changes` alone
    if after.menu_enabled and not after.menu_department_ids:
        raise Unprocessable("a menu needs at least one department")
    changes["updated_at"] = utcnow()
    previous = conn.default_department_id
    if named and named[0] != conn.default_department_id:
        changes["previous_default_department_id"] = previous
    elif named and conn.previous_default_department_id is not None:
        # The same default again: the repeat of a change that gave way (below) and whose
        # take-back was lost leaves it inactive under us — checked, and taken back, as then.
        previous = conn.previous_default_department_id
    updated = await repository.update(db, actor.scope, connection_id, changes)
    if named and previous != named[0]:
        # Checked again after the write (`require_not_a_default`): a deactivation of that
        # department that passed its own check meanwhile leaves one of the two to give way.
        try:
            await departments.require_active_ids(db, conn.reseller_id, named)
        except Unprocessable:
            # Only our own value is taken back: a default another save set since stays.
            undo = {"default_department_id": previous, "updated_at": utcnow()}
            await repository.update(db, actor.scope, connection_id, undo, condition={"default_department_id": named[0]})
            raise
    return ConnectionRead.of(updated)


async def require_not_a_default(db: Database, actor: Actor, *, department_id: str) -> None:
    """Refuses (409, naming them) to let a department go inactive while a connection of the tenant
    opens its new conversations there (its default department): they would keep landing in a
    queue no agent can be added to, seen by the owner alone once its agents moved on. Called by
    the department route before it writes (backend/departments/routes.py: connections build on
    departments, so the departments service cannot ask them).

    Inactive connections count too: one deactivated in IAZE may still be connected at the
    provider, and its deliveries are processed like any other's (webhooks.service), new
    conversations included; it is also reactivated with the default it has.

    FerretDB has no transaction to join this check to the deactivation's write, nor the default
    change's check (`update`, departments.require_active_ids) to its own: each side checks again
    after its write and undoes it on a conflict (`update_department`, `update`). A deactivation
    and a default change racing each other then see at least one the other's write — whichever
    writes second and reads after — and never both stand."""
    names = await repository.names_defaulting_to(db, actor.scope, department_id)
    if names:
        listed = ", ".join(names)
        raise Conflict(f"department is the default of connection(s): {listed}; choose another default first")


async def update_department(
    db: Database, actor: Actor, *, department_id: str, data: DepartmentUpdate
) -> DepartmentRead:
    """A department's update (departments.service.update) where a deactivation must leave no
    connection opening its new conversations there: refused before the write (409 naming them),
    and checked again after it, when the department is put back active as it was before
    (`require_not_a_default`). Here because connections build on departments."""
    if data.active is not False:
        return await departments.update(db, actor, department_id=department_id, data=data)
    was_active = (await departments.get_or_404(db, actor, department_id=department_id)).active
    try:
        await require_not_a_default(db, actor, department_id=department_id)
    except Conflict:
        if not was_active:
            # Inactive under a connection's default: an earlier deactivation refused after its
            # write whose undo was lost (503). Its repeat finishes that undo, or new conversations
            # keep landing in a department no agent can be added to.
            await departments.update(db, actor, department_id=department_id, data=DepartmentUpdate(active=True))
        raise
    read = await departments.update(db, actor, department_id=department_id, data=data)
    try:
        await require_not_a_default(db, actor, department_id=department_id)
    except Conflict:
        if was_active:
            await departments.update(db, actor, department_id=department_id, data=DepartmentUpdate(active=True))
        raise
    return read


async def qrcode(db: Database, actor: Actor, settings: Settings, *, connection_id: str) -> QrCodeRead:
    conn = await get_doc_or_404(db, actor, connection_id=connection_id)
    if conn.provider_created:
        conn, qr = await _provider_qr(db, settings, conn)
        if qr is not None:
            await record_status(db, conn, status=qr.status, qr_code=qr.qr_code)
            return QrCodeRead(qr_code=qr.qr_code, status=qr.status)
    # Never made, or gone at the provider since (its store lost): made now, as a new one.
    conn = await _bind_instance(db, settings, conn)
    if not conn.provider_created:
        raise ServiceUnavailable(f"provider unavailable: {conn.last_error}")
    return QrCodeRead(qr_code=conn.qr_code, status=conn.status)


async def _provider_qr(db: Database, settings: Settings, conn: Connection) -> tuple[Connection, QrCode | None]:
    """The bound instance's QR code (or its "open"), None when the provider no longer has it."""
    async with registry.http_client(settings) as http:
        provider = registry.build(conn.provider, settings, http)
        if conn.status != "open" and conn.webhook_events != provider.webhook_events:
            conn = await _update_webhook(db, settings, conn, provider)
        try:
            return conn, await provider.fetch_qr_code(instance_name=conn.instance_name)
        except ProviderError as exc:
            if exc.instance_missing:
                return conn, None
            raise ServiceUnavailable(f"provider unavailable: {exc}") from exc


async def _update_webhook(db: Database, settings: Settings, conn: Connection, provider: WhatsAppProvider) -> Connection:
    """An instance made before this version asks for fewer events than it should: among them the
    history sync, the only way a message received while the phone was logged out arrives. Before
    the QR code that pairs it again is shown, its webhook is set as a new one's would be. A
    provider failure is logged and asked again at the next QR code request: the pairing goes on."""
    try:
        asked = await provider.update_webhook(instance_name=conn.instance_name, **_webhook(settings, conn))
    except ProviderError as exc:
        log.warning("provider webhook update failed", connection_id=conn.id, error=str(exc))
        return conn
    return await repository.update(
        db, TenantScope(conn.reseller_id), conn.id, {"webhook_events": asked, "updated_at": utcnow()}
    )


def webhook_drift(settings: Settings, conn: Connection, held: WebhookSetting | None, events: list[str]) -> list[str]:
    """Why the instance's webhook, as the provider holds it, would not bring every event of the
    connection here as `create_instance` set it (empty: it would). Any of these (but the inline
    media) loses what the provider posts meanwhile: it posts nothing, elsewhere, with a token
    the webhook refuses (401, never retried), or leaves events out."""
    if held is None:
        return ["missing"]
    wanted = _webhook(settings, conn)
    checks = {
        "disabled": not held.enabled,
        "url": held.url != wanted["webhook_url"],
        "token": held.headers.get(WEBHOOK_TOKEN_HEADER) != conn.webhook_token,
        "events": bool(held.events) and not set(events) <= set(held.events),
        "by_events": held.by_events,
        "base64": held.base64,
    }
    return [reason for reason, drifted in checks.items() if drifted]


async def check_at_provider(
    db: Database, settings: Settings, conn: Connection, provider: WhatsAppProvider
) -> list[str]:
    """Asks the provider how it holds the connection, for the periodic check
    (backend/webhooks/watch.py). Its state is recorded: a CONNECTION_UPDATE posted while the
    webhook was broken never arrived, and the owner must see a disconnected phone. Returns the
    drift of its webhook (`webhook_drift`: someone changed it in Evolution's manager, Evolution's
    store was restored, PUBLIC_BASE_URL moved), or ["instance"] when the provider no longer has
    the instance at all: the connection is then recorded closed and unbound (`last_error` says
    why), so that the owner sees it disconnected and its next QR code request creates the
    instance again with our webhook. Any other provider failure propagates."""
    try:
        state = await provider.connection_state(instance_name=conn.instance_name)
    except ProviderError as exc:
        if not exc.instance_missing:
            raise
        log.warning("provider instance missing; the connection needs pairing again", connection_id=conn.id)
        lost = {"status": "close", "qr_code": None, "provider_created": False, "last_error": INSTANCE_MISSING}
        unbound = await repository.update(db, TenantScope(conn.reseller_id), conn.id, {**lost, "updated_at": utcnow()})
        await announce(db, unbound)
        return ["instance"]
    await record_status(db, conn, status=state, qr_code=conn.qr_code)
    held = await provider.webhook_of(instance_name=conn.instance_name)
    return webhook_drift(settings, conn, held, provider.webhook_events)


async def send_read_receipts(settings: Settings, conn: Connection, *, to: str, provider_message_ids: list[str]) -> bool:
    """Tells the client's phone its messages were read (tickets/reads.py). Best effort: a receipt
    that fails is logged, and the next read sends the next ones. Whether the provider took it."""
    async with registry.http_client(settings) as http:
        provider = registry.build(conn.provider, settings, http)
        try:
            await provider.mark_read(instance_name=conn.instance_name, to=to, provider_message_ids=provider_message_ids)
        except ProviderError as exc:
            log.warning("read receipt not sent", connection_id=conn.id, error=str(exc))
            return False
    return True


async def set_webhook_again(settings: Settings, conn: Connection, provider: WhatsAppProvider) -> None:
    """The instance's webhook set as a new instance's would be (after `check_at_provider` found
    it drifted). A provider failure propagates."""
    await provider.update_webhook(instance_name=conn.instance_name, **_webhook(settings, conn))


async def record_status(
    db: Database,
    conn: Connection,
    *,
    status: ConnectionStatus,
    qr_code: str | None,
    retry: bool = False,
    posted_at: datetime | None = None,
) -> Connection:
    """Stores what the provider says (webhook or poll) and announces it when it changed. An open
    connection has no QR code to show. `retry`: an earlier attempt at the same delivery did not
    finish, and may have stored the change without announcing it; found unchanged, it is
    announced again (screens apply it idempotently). `posted_at`: a webhook's news, by the
    provider's clock; news older than the newest applied is stale and changes nothing (a
    redelivered close after the open). The watch and the QR code request ask the provider now:
    what they record is current whatever its clock says."""
    qr = None if status == "open" else qr_code
    newest = conn.status_posted_at
    stale = posted_at is not None and newest is not None and as_utc(posted_at) < as_utc(newest)
    if stale or (conn.status == status and conn.qr_code == qr):
        if retry:
            await announce(db, conn)
        return conn
    scope = TenantScope(conn.reseller_id)
    changes: dict[str, Any] = {"status": status, "qr_code": qr, "updated_at": utcnow()}
    if posted_at is not None:
        changes["status_posted_at"] = posted_at
    try:
        updated = await repository.update(db, scope, conn.id, changes)
    except PyMongoError:
        # Stored with its answer lost, the change would be found made by every later caller and
        # announced by none (the watch and the QR code request pass no `retry`): look.
        stored = await repository.get_internal(db, conn.id)
        if stored is None or (stored.status, stored.qr_code) != (status, qr):
            raise
        updated = stored
    await announce(db, updated)
    return updated


async def of_ticket(db: Database, ticket: Ticket) -> Connection | None:
    """The tenant's WhatsApp connection the ticket runs on (its channel is the connection's id), or None."""
    conn = await repository.get_internal(db, ticket.channel) if is_valid_id(ticket.channel) else None
    return conn if conn is not None and conn.reseller_id == ticket.reseller_id else None


def blocked(conn: Connection | None) -> str | None:
    """Why nothing typed in a ticket on `conn` (`of_ticket`) can reach its client now, or None when
    it can: no WhatsApp connection (a ticket opened through the API without one), or one
    deactivated or not connected."""
    if conn is None:
        return "no_connection"
    if not conn.active:
        return "connection_inactive"
    return None if conn.status == "open" else "connection_disconnected"
