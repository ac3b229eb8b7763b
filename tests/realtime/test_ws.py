"""The realtime socket end to end: real websocket clients against two running backend processes
sharing one FerretDB and one redis-server."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt

from backend.realtime import records
from backend.tickets.models import Ticket
from tests.conftest import JWT_SECRET
from tests.factories import make_agent, make_department, make_tenant, make_ticket
from tests.realtime.conftest import Server, Socket, bearer, open_socket

TICKET_EVENTS = {"ticket.created", "ticket.assumed", "ticket.transferred", "ticket.finalized"}


async def _connect(server: Server, headers: dict[str, str], sockets: list[Socket], since: int | None = None) -> Socket:
    s = await open_socket(server.ws_url(bearer(headers), since))
    sockets.append(s)
    hello = await s.next()
    assert hello["type"] == "hello" and isinstance(hello["seq"], int) and hello["heartbeat"] == 1, hello
    return s


async def test_bad_tokens_are_closed_with_4401_and_admins_with_4403(
    client: httpx.AsyncClient, admin_headers: dict[str, str], servers: list[Server]
) -> None:
    server = servers[0]
    tenant = await make_tenant(client, admin_headers, agents=1)
    agent = tenant.agents[0]
    expired = jwt.encode(
        {
            "sub": agent["id"],
            "role": "agent",
            "iat": datetime.now(UTC) - timedelta(hours=2),
            "exp": datetime.now(UTC) - timedelta(hours=1),
        },
        JWT_SECRET,
        algorithm="HS256",
    )
    forged = jwt.encode(
        {"sub": agent["id"], "role": "agent", "iat": datetime.now(UTC), "exp": datetime.now(UTC) + timedelta(hours=1)},
        "not-the-secret-" + "y" * 40,
        algorithm="HS256",
    )
    for url in (
        f"ws://127.0.0.1:{server.port}/api/v1/ws",
        server.ws_url("garbage"),
        server.ws_url(expired),
        server.ws_url(forged),
    ):
        s = await open_socket(url)
        assert await s.close_code() == 4401, url

    s = await open_socket(server.ws_url(bearer(admin_headers)))
    assert await s.close_code() == 4403

    # A deactivated user: refused on connect, and an open socket is closed at once (the change is
    # announced; the periodic re-check is an hour away in these servers).
    open_one = await open_socket(server.ws_url(bearer(agent["headers"])))
    assert (await open_one.next())["type"] == "hello"
    r = await client.patch(f"/api/v1/users/{agent['id']}", json={"active": False}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert await open_one.close_code() == 4401
    s = await open_socket(server.ws_url(bearer(agent["headers"])))
    assert await s.close_code() == 4401


async def test_hello_live_events_and_heartbeat(
    client: httpx.AsyncClient, admin_headers: dict[str, str], servers: list[Server], sockets: list[Socket]
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    owner = await _connect(servers[0], tenant.headers, sockets)
    assert owner.frames[0]["seq"] == 0  # a brand-new tenant has no events yet
    ticket = await make_ticket(client, tenant, message="primeira mensagem")
    got = await owner.until_seq(2)
    assert [(e["seq"], e["event"]) for e in got] == [(1, "ticket.created"), (2, "message.created")]
    created, message = got
    assert created["ticket"]["id"] == ticket["id"] and created["ticket"]["status"] == "espera"
    assert created["message"] is None and created["connection"] is None
    assert message["message"]["body"] == "primeira mensagem" and message["ticket"]["id"] == ticket["id"]
    assert datetime.fromisoformat(message["at"]).tzinfo is not None
    # Heartbeats: a silent socket is pinged (and nothing else arrives meanwhile).
    await owner.until_ping()
    assert owner.pings >= 1 and owner.seqs == [1, 2]


async def test_each_role_receives_exactly_its_audience(
    client: httpx.AsyncClient, admin_headers: dict[str, str], servers: list[Server], sockets: list[Socket]
) -> None:
    tenant = await make_tenant(client, admin_headers, departments=2, agents=0)
    d1, d2 = (d["id"] for d in tenant.departments)
    a = await make_agent(client, tenant, [d1])
    b = await make_agent(client, tenant, [d2])
    c = await make_agent(client, tenant, [d1])
    other = await make_tenant(client, admin_headers, agents=1)

    # Spread over both processes: delivery must not depend on where a socket is.
    owner = await _connect(servers[0], tenant.headers, sockets)
    sa = await _connect(servers[1], a["headers"], sockets)
    sb = await _connect(servers[0], b["headers"], sockets)
    sc = await _connect(servers[1], c["headers"], sockets)
    so = await _connect(servers[0], other.headers, sockets)
    so_agent = await _connect(servers[1], other.agents[0]["headers"], sockets)

    ticket = await make_ticket(client, tenant, department_id=d1)  # 1 created, 2 message (espera in d1)
    tid = ticket["id"]
    assert (await client.post(f"/api/v1/tickets/{tid}/assume", headers=a["headers"])).status_code == 200  # 3
    # A note, not a reply: this ticket has no WhatsApp connection, so replies are refused (409);
    # a note reaches the same audience (the staff who see the ticket).
    r = await client.post(f"/api/v1/tickets/{tid}/notes", json={"body": "oi"}, headers=a["headers"])  # 4
    assert r.status_code in (200, 201), r.text
    r = await client.post(f"/api/v1/tickets/{tid}/transfer", json={"agent_id": b["id"]}, headers=a["headers"])  # 5
    assert r.status_code == 200, r.text
    r = await client.post(f"/api/v1/tickets/{tid}/transfer", json={"department_id": d2}, headers=b["headers"])  # 6
    assert r.status_code == 200, r.text
    assert (await client.post(f"/api/v1/tickets/{tid}/assume", headers=b["headers"])).status_code == 200  # 7
    assert (await client.post(f"/api/v1/tickets/{tid}/finalize", headers=b["headers"])).status_code == 200  # 8

    everything = await owner.until_seq(8)
    assert [e["event"] for e in everything] == [
        "ticket.created",
        "message.created",
        "ticket.assumed",
        "message.created",
        "ticket.transferred",
        "ticket.transferred",
        "ticket.assumed",
        "ticket.finalized",
    ]
    assert [e["seq"] for e in everything] == list(range(1, 9))
    expected = {
        # a: espera in its department (1,2), holds it (3,4), loses it to b (5); nothing after.
        "a": [1, 2, 3, 4, 5],
        # b: gets it (5), holds it while sending it to d2's queue (6), espera in d2 (6), assumes, finalizes.
        "b": [5, 6, 7, 8],
        # c: espera in d1 (1,2) and the moment it leaves the queue (3); never a's conversation.
        "c": [1, 2, 3],
    }
    for name, sock in (("a", sa), ("b", sb), ("c", sc)):
        await sock.until_seq(expected[name][-1])
        await sock.drain()
        assert sock.seqs == expected[name], (name, sock.seqs)
    # The ticket in each frame is the state after the change, enough to update a list in place.
    assert sa.events[-1]["ticket"]["agent_id"] == b["id"]
    assert sb.events[-1]["ticket"]["status"] == "finalizado"
    # Another tenant hears nothing of it.
    assert await so.drain() == [] and await so_agent.drain() == []


async def test_reconnect_with_since_gets_every_missed_event_in_order_once(
    client: httpx.AsyncClient, admin_headers: dict[str, str], servers: list[Server], sockets: list[Socket]
) -> None:
    tenant = await make_tenant(client, admin_headers, departments=2, agents=0)
    d1, d2 = (d["id"] for d in tenant.departments)
    agent = await make_agent(client, tenant, [d1])
    first = await _connect(servers[0], agent["headers"], sockets)
    await make_ticket(client, tenant, department_id=d1)
    await first.until_seq(2)
    last_seen = first.seqs[-1]
    await first.close()

    # While away: visible and invisible events.
    visible = await make_ticket(client, tenant, department_id=d1)  # 3, 4
    await make_ticket(client, tenant, department_id=d2)  # 5, 6 (not its department)
    assert (await client.post(f"/api/v1/tickets/{visible['id']}/assume", headers=agent["headers"])).status_code == 200
    owner_view = await _connect(servers[1], tenant.headers, sockets, since=0)  # 7 = the assume
    await owner_view.until_seq(7)

    # Resume on the other process; then one live event follows the replay.
    again = await _connect(servers[1], agent["headers"], sockets, since=last_seen)
    assert again.frames[0]["seq"] >= 7
    replayed = await again.until_seq(7)
    assert [(e["seq"], e["event"]) for e in replayed] == [
        (3, "ticket.created"),
        (4, "message.created"),
        (7, "ticket.assumed"),
    ]
    r = await client.post(f"/api/v1/tickets/{visible['id']}/notes", json={"body": "live"}, headers=agent["headers"])
    assert r.status_code in (200, 201)
    await again.until_seq(8)
    await again.drain()
    assert again.seqs == [3, 4, 7, 8]  # in order, nothing twice
    # The owner's socket that asked for since=0 got the whole history, once each.
    await owner_view.until_seq(8)
    assert owner_view.seqs == list(range(1, 9))


async def test_resync_when_gap_is_older_than_the_replay_window_or_ahead(
    client: httpx.AsyncClient, admin_headers: dict[str, str], servers: list[Server], sockets: list[Socket], db: Any
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=0)
    for _ in range(22):  # 44 events > REALTIME_REPLAY_MAX=40
        await make_ticket(client, tenant)
    old = await _connect(servers[0], tenant.headers, sockets, since=1)
    assert old.frames[0]["seq"] == 44
    frame = await old.next()
    assert frame["type"] == "resync" and "replay window" in frame["reason"]
    # Then it goes on live from the head.
    await make_ticket(client, tenant)
    got = await old.until_seq(46)
    assert [e["seq"] for e in got] == [45, 46]

    ahead = await _connect(servers[1], tenant.headers, sockets, since=1000)
    assert (await ahead.next())["type"] == "resync"
    bad = await _connect(servers[1], tenant.headers, sockets, since="abc")  # type: ignore[arg-type]
    assert (await bad.next())["type"] == "resync"
    within = await _connect(servers[1], tenant.headers, sockets, since=46 - 40)
    await within.until_seq(46)
    assert within.seqs == list(range(7, 47))


async def test_lost_notices_never_leave_gaps(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    servers: list[Server],
    sockets: list[Socket],
    db: Any,
    redis_url: str,
) -> None:
    """Records stored without any pub/sub notice (as if Redis dropped them), and a notice for n+2
    arriving before n+1 was announced, are still delivered in seq order, each once."""
    import redis.asyncio as redis

    from backend.realtime import bus, feed

    tenant = await make_tenant(client, admin_headers, agents=0)
    on_a = await _connect(servers[0], tenant.headers, sockets)
    on_b = await _connect(servers[1], tenant.headers, sockets)
    ticket = await make_ticket(client, tenant)  # 1, 2 through the normal path
    await on_a.until_seq(2)
    doc = Ticket.model_validate(await db.tickets.find_one({"_id": ticket["id"]}))

    def body() -> dict[str, Any]:
        return feed.build(
            reseller_id=tenant.id,
            type_="ticket.created",
            ticket=doc,
            previous=None,
            message=None,
            connection=None,
            data={"test": True},
        )

    silent = [await records.append(db, tenant.id, body()) for _ in range(2)]  # 3, 4: no notice at all
    assert [r["seq"] for r in silent] == [3, 4]
    await on_a.until_seq(4)  # found by the tail poll (rare while Redis is up)
    n1 = await records.append(db, tenant.id, body())  # 5: never announced
    n2 = await records.append(db, tenant.id, body())  # 6: announced first
    r = redis.Redis.from_url(redis_url)
    try:
        await r.publish("iaze:realtime", bus.encode("test-origin", n2))
    finally:
        await r.aclose()
    assert n1["seq"] == 5
    for sock in (on_a, on_b):
        await sock.until_seq(6)
        await sock.drain(0.2)
        assert sock.seqs == [1, 2, 3, 4, 5, 6]


async def test_events_from_one_process_reach_sockets_on_the_other(
    admin_headers: dict[str, str], client: httpx.AsyncClient, servers: list[Server], sockets: list[Socket]
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=1)
    agent = tenant.agents[0]
    on_0 = await _connect(servers[0], agent["headers"], sockets)
    on_1 = await _connect(servers[1], agent["headers"], sockets)
    ids = []
    # Writes go through the real HTTP API of each process in turn.
    for i in range(6):
        server = servers[i % 2]
        async with httpx.AsyncClient(base_url=server.http, timeout=30) as http:
            customer = await http.post(
                "/api/v1/clients", json={"name": f"C{i}", "phone": f"5511977{i:06d}"}, headers=tenant.headers
            )
            assert customer.status_code == 201, customer.text
            r = await http.post(
                "/api/v1/tickets",
                headers=tenant.headers,
                json={
                    "client_id": customer.json()["id"],
                    "department_id": tenant.departments[0]["id"],
                    "message": f"m{i}",
                },
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
    for sock in (on_0, on_1):
        await sock.until_seq(12)
        assert sock.seqs == list(range(1, 13))
        assert [e["ticket"]["id"] for e in sock.events if e["event"] == "ticket.created"] == ids


async def test_a_client_that_stops_reading_is_closed_with_4408_and_can_resume(
    client: httpx.AsyncClient, admin_headers: dict[str, str], servers: list[Server], sockets: list[Socket], db: Any
) -> None:
    import socket as pysocket

    from backend.messages.models import Message
    from backend.realtime import feed

    tenant = await make_tenant(client, admin_headers, agents=0)
    ticket = await make_ticket(client, tenant)  # 1, 2
    doc = Ticket.model_validate(await db.tickets.find_one({"_id": ticket["id"]}))
    fat = Message(
        id="f" * 24,
        ticket_id=ticket["id"],
        reseller_id=tenant.id,
        direction="in",
        sender_type="client",
        body="x" * 60_000,
        status="received",
        created_at=datetime.now(UTC),
    )

    # A real client whose transport stops reading (a frozen tab): the server's writes back up.
    # A small fixed receive buffer (or loopback autotuning absorbs megabytes) and no deflate (or
    # the repetitive body shrinks to nothing).
    raw = pysocket.socket(pysocket.AF_INET, pysocket.SOCK_STREAM)
    raw.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_RCVBUF, 16384)
    raw.connect(("127.0.0.1", servers[0].port))
    slow = await open_socket(servers[0].ws_url(bearer(tenant.headers), since=2), sock=raw, compression=None)
    sockets.append(slow)
    assert (await slow.next())["type"] == "hello"
    slow.conn.transport.pause_reading()
    healthy = await _connect(servers[0], tenant.headers, sockets, since=2)

    # Publish until the server gives up on the stalled socket (its queue of 16 overflows).
    published = 0
    metrics = httpx.AsyncClient(base_url=servers[0].http, timeout=30)  # a flooded server on a loaded machine
    while "iaze_realtime_slow_consumers_total 1.0" not in (await metrics.get("/metrics")).text:
        assert published < 400, "the stalled socket was never cut off"
        for _ in range(10):
            await feed.publish(db, reseller_id=tenant.id, type_="message.created", ticket=doc, message=fat)
        published += 10
    await metrics.aclose()
    slow.conn.transport.resume_reading()
    assert await slow.close_code() == 4408
    last = 2 + published
    await healthy.until_seq(last, within=60)  # the others were not held up
    assert healthy.seqs == list(range(3, last + 1))
    got = slow.seqs
    assert got == list(range(3, 3 + len(got))) and len(got) < published  # a gap-free prefix
    resumed = await _connect(servers[0], tenant.headers, sockets, since=got[-1] if got else 2)
    await resumed.until_seq(last, within=30)
    assert got + resumed.seqs == list(range(3, last + 1))


async def test_shutdown_closes_sockets_with_1001(
    app: Any,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    mongo_url: str,
    db_name: str,
    redis_url: str,
    tmp_path: Any,
    sockets: list[Socket],
) -> None:
    from tests.realtime.conftest import SERVER_OPTIONS, start_server

    server = start_server(mongo_url, db_name, tmp_path, REDIS_URL=redis_url, **SERVER_OPTIONS)
    try:
        tenant = await make_tenant(client, admin_headers, agents=0)
        s = await _connect(server, tenant.headers, sockets)
        await asyncio.get_running_loop().run_in_executor(None, server.stop)
        assert await s.close_code() == 1001
        # uvicorn re-raises the SIGTERM it handled once it is done, hence -15; no traceback on the way.
        assert server.proc.returncode in (0, -15)
        assert "Traceback" not in server.log_path.read_text()
    finally:
        server.stop()


async def test_department_change_takes_effect_on_an_open_socket(
    client: httpx.AsyncClient, admin_headers: dict[str, str], servers: list[Server], sockets: list[Socket]
) -> None:
    tenant = await make_tenant(client, admin_headers, departments=1, agents=1)
    agent = tenant.agents[0]
    new_dept = await make_department(client, tenant)
    s = await _connect(servers[0], agent["headers"], sockets)
    await make_ticket(client, tenant, department_id=new_dept["id"])  # 1, 2: not its department yet
    r = await client.patch(
        f"/api/v1/users/{agent['id']}", json={"department_ids": [new_dept["id"]]}, headers=tenant.headers
    )
    assert r.status_code == 200, r.text
    # Told at once (no periodic re-check in these servers): refetch what it now sees.
    assert await s.next() == {"type": "resync", "reason": "access changed"}
    await make_ticket(client, tenant, department_id=new_dept["id"])  # 3, 4
    await s.until_seq(4)
    assert s.seqs == [3, 4]


async def test_a_deactivated_reseller_loses_every_open_socket_on_every_process(
    client: httpx.AsyncClient, admin_headers: dict[str, str], servers: list[Server], sockets: list[Socket]
) -> None:
    tenant = await make_tenant(client, admin_headers, agents=2)
    other = await make_tenant(client, admin_headers, agents=1)
    mine = [
        await _connect(servers[0], tenant.headers, sockets),
        await _connect(servers[0], tenant.agents[0]["headers"], sockets),
        await _connect(servers[1], tenant.agents[1]["headers"], sockets),
    ]
    theirs = await _connect(servers[1], other.agents[0]["headers"], sockets)
    r = await client.patch(f"/api/v1/resellers/{tenant.id}", json={"active": False}, headers=admin_headers)
    assert r.status_code == 200, r.text
    for s in mine:
        assert await s.close_code() == 4401
    await make_ticket(client, other, department_id=other.departments[0]["id"])
    assert [e["event"] for e in await theirs.until_seq(1)] == ["ticket.created"]  # another tenant: untouched


async def test_without_the_notice_the_periodic_recheck_still_closes_a_deactivated_user(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    mongo_url: str,
    db_name: str,
    tmp_path: Any,
    sockets: list[Socket],
) -> None:
    from tests.realtime.conftest import SERVER_OPTIONS, start_server

    # No REDIS_URL: this process never hears the in-test app's notices, like one whose Redis
    # connection was down at that moment.
    server = start_server(mongo_url, db_name, tmp_path, **{**SERVER_OPTIONS, "REALTIME_RECHECK_SECONDS": 1})
    try:
        tenant = await make_tenant(client, admin_headers, agents=1)
        s = await _connect(server, tenant.agents[0]["headers"], sockets)
        r = await client.patch(
            f"/api/v1/users/{tenant.agents[0]['id']}", json={"active": False}, headers=tenant.headers
        )
        assert r.status_code == 200, r.text
        assert await s.close_code() == 4401
    finally:
        server.stop()
