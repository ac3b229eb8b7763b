"""Where domain changes are announced for realtime delivery.

Services call `publish` after a change is durable. The realtime package turns each call into a
per-tenant, sequenced event (see issue 5); this module is the only seam between the two.
"""

from typing import Any

from backend.core.db import Database


async def publish(
    db: Database,
    *,
    reseller_id: str,
    type_: str,
    ticket: dict[str, Any],
    previous: dict[str, Any] | None = None,
    message: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Announce a change. `ticket` is the ticket after it; `previous` the ticket before it (for
    transitions), so that whoever loses sight of the ticket is told too."""
    return None
