"""A backend process whose Redis subscription goes silent without closing (half-open).

The process reaches Redis through a relay (tests/tcp_relay.py) that stops relaying its open
connections, both ways, and leaves them open: nothing errors, so only the subscriber's own check
of its silence (realtime/bus.py) can tell. The tail poll is set an hour apart in this process, so
what reaches its sockets after the stall came through a new subscription, not the poll."""

import asyncio
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.factories import make_tenant, make_ticket
from tests.realtime.conftest import SERVER_OPTIONS, Socket, bearer, open_greeted, start_server
from tests.tcp_relay import TcpRelay


async def test_a_silent_subscription_is_dropped_and_made_again_and_nothing_announced_meanwhile_is_missed(
    app: Any,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    mongo_url: str,
    db_name: str,
    redis_url: str,
    tmp_path: Any,
    sockets: list[Socket],
) -> None:
    target = urlsplit(redis_url)
    assert target.hostname is not None and target.port is not None
    relay = TcpRelay(target.hostname, target.port)
    await relay.start()
    options = {
        **SERVER_OPTIONS,
        "REDIS_URL": f"redis://127.0.0.1:{relay.port}/0",
        "REALTIME_POLL_SECONDS": 360,  # with the bus up, a tail poll every hour: never within this test
        "REALTIME_BUS_PING_SECONDS": 0.5,
    }
    loop = asyncio.get_running_loop()
    # Started off the loop: the relay serves the process's connections from this loop meanwhile.
    server = await loop.run_in_executor(None, lambda: start_server(mongo_url, db_name, tmp_path, **options))
    try:
        tenant = await make_tenant(client, admin_headers, agents=1)
        agent = tenant.agents[0]
        owner = await open_greeted(server.ws_url(bearer(tenant.headers)), sockets)
        watched = await open_greeted(server.ws_url(bearer(agent["headers"])), sockets)
        # The in-test app writes and announces on Redis directly; the process hears it through the relay.
        first = await make_ticket(client, tenant)
        await owner.until_seq(2)

        made = relay.stall_open()  # the subscription (and the publisher) now hear nothing, and nothing errors
        # Announced while the subscription is silent: both notices are lost in the relay.
        r = await client.patch(f"/api/v1/users/{agent['id']}", json={"active": False}, headers=tenant.headers)
        assert r.status_code == 200, r.text
        second = await make_ticket(client, tenant)

        # The silence is noticed (0.5 s, then 2 s for the PING's answer), the process subscribes
        # again through a new connection, reads its tenants' tails and re-reads its sockets' users.
        await owner.until_seq(4)
        assert len(relay.links) > made
        assert await watched.close_code() == 4401  # the lost deactivation notice, made good
        third = await make_ticket(client, tenant)  # and the new subscription carries notices again
        await owner.until_seq(6)
        await owner.drain(0.3)
        assert owner.seqs == [1, 2, 3, 4, 5, 6]
        created = [e["ticket"]["id"] for e in owner.events if e["event"] == "ticket.created"]
        assert created == [first["id"], second["id"], third["id"]]
    finally:
        await loop.run_in_executor(None, server.stop)
        await relay.close()
