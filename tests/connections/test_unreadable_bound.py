"""The connection watch and the catch-up read every tenant's bound connections at once
(`bound_internal`): one stored connection that does not read is passed over, logged with its
`_id`, and every other one is still read."""

from typing import Any

from structlog.testing import capture_logs

from backend.connections import repository
from backend.connections.models import Connection
from backend.core.clock import utcnow
from backend.core.ids import new_id

UNREADABLE = "connection unreadable; passed over"


async def test_an_unreadable_bound_connection_is_passed_over_and_the_others_are_read(db: Any) -> None:
    made = []
    for n in range(3):
        now = utcnow()
        connection = Connection(
            id=new_id(),
            reseller_id=new_id(),
            name=f"conexão {n}",
            active=True,
            default_department_id=new_id(),
            created_at=now,
            updated_at=now,
            provider="evolution",
            instance_name=f"instance-{new_id()}",
            webhook_token=new_id(),
            provider_created=True,
            status="open",
        )
        await db.whatsapp_connections.insert_one(connection.stored())
        made.append(connection.id)
    bad = made[1]
    await db.whatsapp_connections.update_one({"_id": bad}, {"$set": {"status": 5}})

    with capture_logs() as logs:
        bound = {c.id for c in await repository.bound_internal(db)}

    assert bound >= {made[0], made[2]}
    assert bad not in bound
    assert [e["connection_id"] for e in logs if e["event"] == UNREADABLE] == [bad]
    assert (await db.whatsapp_connections.find_one({"_id": bad}))["status"] == 5  # left for an operator
