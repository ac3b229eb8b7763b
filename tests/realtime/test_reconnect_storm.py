"""A reconnect storm (every socket of a tenant dropped at once, all back with since= within
seconds) must be answered from memory: the hub keeps a tenant's feed a while after its last
socket left, and a gap read from the store is read once however many sockets replay it."""

import asyncio
from typing import Any

from backend.core.clock import utcnow
from backend.core.ids import new_id
from backend.core.tenancy import Actor
from backend.realtime import records
from backend.realtime.hub import Entry, Hub, Subscriber


def _news(n: int) -> dict[str, Any]:
    """Tenant-level news (no ticket): the tenant's reseller receives it."""
    return {
        "type": "connection.status",
        "at": utcnow(),
        "ticket": None,
        "message": None,
        "connection": None,
        "data": {"n": n},
        "audience": {"after": None, "before": None},
    }


async def _announce(db: Any, hub: Hub, tenant: str, count: int) -> list[int]:
    seqs = []
    for n in range(count):
        record = await records.append(db, tenant, _news(n))
        hub.announce(record)
        seqs.append(int(record["seq"]))
    return seqs


async def _replayed(hub: Hub, tenant: str, first: int, last: int) -> list[int]:
    return [entry[0] async for entry in hub.replay(tenant, first, last)]


async def _queued(sub: Subscriber, count: int) -> list[int]:
    got: list[Entry] = [await sub.queue.get() for _ in range(count)]
    return [entry[0] for entry in got]


def _count_reads(monkeypatch: Any) -> list[int]:
    reads: list[int] = []
    get = records.get

    async def counted(db: Any, reseller_id: str, seq: int) -> dict[str, Any] | None:
        reads.append(seq)
        return await get(db, reseller_id, seq)

    monkeypatch.setattr(records, "get", counted)
    return reads


async def test_a_tenants_last_socket_leaving_keeps_its_feed_so_the_reconnect_replays_from_memory(
    db: Any, monkeypatch: Any
) -> None:
    tenant = new_id()
    owner = Actor(id=new_id(), role="reseller", name="R", reseller_id=tenant)
    hub = Hub(db, queue_size=100, poll_seconds=0.5)
    try:
        sub, head = await hub.attach(owner)
        before = await _announce(db, hub, tenant, 3)
        assert await _queued(sub, 3) == before
        hub.detach(sub)  # the drop: the tenant's only socket here is gone
        away = await _announce(db, hub, tenant, 4)  # published while it was away
        reads = _count_reads(monkeypatch)

        back, head = await hub.attach(owner)  # reconnects with since=<last seq it saw>
        since = before[-1]
        caught_up = await _replayed(hub, tenant, since + 1, head) + await _queued(back, away[-1] - head)
        assert caught_up == away
        assert reads == []  # every missed record came from memory
    finally:
        await hub.close()


async def test_sockets_replaying_the_same_gap_at_once_read_each_record_once(db: Any, monkeypatch: Any) -> None:
    tenant = new_id()
    owner = Actor(id=new_id(), role="reseller", name="R", reseller_id=tenant)
    stored = [int((await records.append(db, tenant, _news(n)))["seq"]) for n in range(5)]
    reads = _count_reads(monkeypatch)
    hub = Hub(db, queue_size=100, poll_seconds=0.5)  # a process that just started: nothing held
    try:
        subs = [await hub.attach(owner) for _ in range(3)]
        head = subs[0][1]
        assert head == stored[-1]
        together = await asyncio.gather(*(_replayed(hub, tenant, 1, head) for _ in subs[:2]))
        assert together == [stored, stored]
        assert sorted(reads) == stored  # one read per record for both sockets
        assert await _replayed(hub, tenant, 1, head) == stored  # a later socket: from memory
        assert sorted(reads) == stored
    finally:
        await hub.close()
