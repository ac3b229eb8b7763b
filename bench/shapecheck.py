"""Proof that seeded documents have the shape the services write: one tenant is driven through
the real service path (client, ticket, assume, reply, finalize, reopen), another is seeded by
`bench.seed.Generator`; per collection and variant, the two must have identical shapes."""

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from backend.clients import service as clients
from backend.core.clock import utcnow
from backend.core.db import Database
from backend.messages import service as messages
from backend.tickets import intake
from backend.tickets import service as tickets
from backend.tickets.states import Status
from backend.users import repository as users_repo
from bench.seed import Generator, Tenant, last_status
from bench.tenants import create_tenants

Variant = Callable[[dict[str, Any]], str]


def shape(value: Any) -> Any:
    """Field names and value types, recursively (lists by their first element)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


async def _live_path(db: Database, tenant: Tenant) -> None:
    rid, dept, agent = tenant.reseller_id, tenant.department_ids[0], tenant.agents[0]

    async def say(client: clients.User, body: str) -> tickets.Ticket:
        fresh = await users_repo.get_internal(db, client.id)  # as ingestion would load it
        assert fresh is not None
        ticket, _, _ = await intake.receive_client_message(
            db, reseller_id=rid, client=fresh, department_id=dept, channel=intake.API_CHANNEL, body=body
        )
        return ticket

    a, _ = await clients.upsert_by_phone(db, reseller_id=rid, phone="5511900000001", name="Cliente A")
    first = await say(a, "Olá, preciso de ajuda")
    await tickets.assume(db, agent, ticket_id=first.id)
    await messages.reply(db, agent, ticket_id=first.id, body="Olá! Já estou verificando.")
    await say(a, "Obrigado")
    await tickets.finalize(db, agent, ticket_id=first.id)
    await say(a, "Voltei com outra dúvida")  # a new ticket (slot 1) in espera

    b, _ = await clients.upsert_by_phone(db, reseller_id=rid, phone="5511900000002", name="Cliente B")
    second = await say(b, "Boa tarde")
    await tickets.assume(db, agent, ticket_id=second.id)
    await messages.reply(db, agent, ticket_id=second.id, body="Boa tarde! Como posso ajudar?")

    c, _ = await clients.upsert_by_phone(db, reseller_id=rid, phone="5511900000003", name="Cliente C")
    await say(c, "Oi")


async def _seed(db: Database, tenant: Tenant) -> None:
    # An odd count whose one-ticket client is still open, so every variant (incl. a client that
    # never had a ticket finalized, hence no `ticket_slots`) is present on the seeded side too.
    n = 41
    while last_status((n + 1) // 2 - 1) is Status.FINALIZADO:
        n += 2
    gen = Generator([tenant], tickets=n, messages_per_ticket=10, end=utcnow(), span=timedelta(days=1))
    for name, docs in gen.build(0, gen.n).items():
        await db[name].insert_many(docs)
    await db["counters"].insert_many(gen.counters())


async def _shapes(db: Database, rid: str) -> dict[str, set[str]]:
    """'collection/variant' -> the distinct shapes stored for that tenant."""
    sources: list[tuple[str, dict[str, Any], Variant]] = [
        ("tickets", {"reseller_id": rid}, lambda d: str(d["status"])),
        ("ticket_events", {"reseller_id": rid}, lambda d: str(d["type"])),
        ("messages", {"reseller_id": rid}, lambda d: str(d["direction"])),
        ("users", {"reseller_id": rid, "role": "client"}, lambda d: "slot" if "ticket_slots" in d else "no-slot"),
        ("counters", {"_id": f"ticket-number:{rid}"}, lambda d: "ticket-number"),
    ]
    out: dict[str, set[str]] = {}
    for name, query, variant in sources:
        for doc in await db[name].find(query).to_list(length=None):
            out.setdefault(f"{name}/{variant(doc)}", set()).add(json.dumps(shape(doc), sort_keys=True))
    for doc in await db["natural_keys"].find({}).to_list(length=None):
        kind, _, rest = str(doc["_id"]).partition(":")
        if rest.startswith(rid) and kind != "email":
            out.setdefault(f"natural_keys/{kind}", set()).add(json.dumps(shape(doc), sort_keys=True))
    return out


async def verify(db: Database) -> list[str]:
    """Runs both paths in `db` (a scratch database) and returns the variants compared.
    Raises AssertionError naming every difference."""
    live, seeded = await create_tenants(db, 2, departments_per_tenant=3, tag="shape")
    await _live_path(db, live)
    await _seed(db, seeded)
    want, got = await _shapes(db, live.reseller_id), await _shapes(db, seeded.reseller_id)
    problems = []
    for key in sorted(set(want) | set(got)):
        if key not in got:
            problems.append(f"{key}: written by the services but never seeded")
        elif key not in want:
            problems.append(f"{key}: seeded but the service path never writes it")
        elif want[key] != got[key]:
            problems.append(f"{key}: shape differs\n  service: {sorted(want[key])}\n  seeded:  {sorted(got[key])}")
    if problems:
        raise AssertionError("seeded documents differ from the service path:\n" + "\n".join(problems))
    return sorted(want)
