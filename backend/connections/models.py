"""The stored shape of a WhatsApp connection (collection `whatsapp_connections`)."""

from datetime import datetime

from backend.connections.providers.base import ConnectionStatus
from backend.core.schemas import StoredModel

MENU_MAX_INVALID_DEFAULT = 2


class Connection(StoredModel):
    reseller_id: str
    name: str
    active: bool
    default_department_id: str
    # The default a change replaced, written with it: what its take-back restores when the new one
    # turns out inactive (connections.service.update), also on a repeat whose first take-back was lost.
    previous_default_department_id: str | None = None
    created_at: datetime
    updated_at: datetime
    provider: str
    instance_name: str
    webhook_token: str  # a secret, as is provider_token: never an API field (ConnectionRead)
    provider_created: bool = False  # the provider has the instance, with our webhook
    provider_instance_id: str | None = None
    provider_token: str | None = None
    # The events the instance's webhook was last asked for; None: at its creation, before this was
    # recorded. A connection paired again gets the current list first (connections.service.qrcode).
    webhook_events: list[str] | None = None
    status: ConnectionStatus  # as the provider last reported it, with the QR code to pair a phone
    qr_code: str | None = None
    # The provider's time (its clock) of the newest status news a webhook applied: older news,
    # redelivered late (a close whose acknowledgement was lost, posted again after the open), is
    # stale (connections.service.record_status).
    status_posted_at: datetime | None = None
    last_error: str | None = None  # why the last binding failed
    # The department menu a new WhatsApp ticket answers with (backend/automation), none on older
    # connections: `menu_text` heads the list (empty: the built-in line); an invalid answer past
    # `menu_max_invalid` (each one repeats the menu) leaves the ticket to the default department.
    menu_enabled: bool = False
    menu_department_ids: list[str] = []
    menu_text: str = ""
    menu_max_invalid: int = MENU_MAX_INVALID_DEFAULT
