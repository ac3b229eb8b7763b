"""A feed record that does not read (a field missing or of another shape) must not stall its
tenant's feed: every socket of the tenant would stop at it, live and replaying. It is delivered
to no one, and the records after it arrive. Real sockets against two backend processes."""

from typing import Any

import httpx

from backend.realtime import records
from tests.factories import make_tenant, make_ticket
from tests.realtime.conftest import Server, Socket, bearer, open_greeted


async def test_an_unreadable_record_is_passed_over_live_and_in_a_replay(
    client: httpx.AsyncClient, admin_headers: dict[str, str], servers: list[Server], sockets: list[Socket], db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    live = await open_greeted(servers[0].ws_url(bearer(tenant.headers)), sockets)
    await make_ticket(client, tenant)  # 1, 2
    await live.until_seq(2)
    # 3: no `type`, and an audience side that is not a document; written with no notice, as a
    # process that died after its insert leaves it (the tail poll finds it).
    bad = await records.append(db, tenant.id, {"at": "not a time", "audience": {"after": "x"}})
    assert bad["seq"] == 3
    await make_ticket(client, tenant)  # 4, 5
    await live.until_seq(5)
    await live.drain(0.3)
    assert live.seqs == [1, 2, 4, 5]

    # A reconnect from before it reads it back by `_id` on the other process: passed over too.
    again = await open_greeted(servers[1].ws_url(bearer(tenant.headers), since=2), sockets)
    await again.until_seq(5)
    await again.drain(0.3)
    assert again.seqs == [4, 5]
