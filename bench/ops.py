"""The measured operations: each one call into the real service layer with a real Actor, i.e.
what the named HTTP route runs minus routing, auth and JSON rendering."""

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from backend.clients import service as clients
from backend.core import natural_keys
from backend.core.db import Database
from backend.core.indexes import declared
from backend.core.pagination import encode_cursor
from backend.messages import service as messages
from backend.tickets import intake
from backend.tickets import service as tickets
from backend.tickets.states import Status
from bench.seed import Pools, Tenant

Call = Callable[[int], Awaitable[None]]


@dataclass(frozen=True)
class Op:
    name: str
    route: str
    # "collection.index_name" as declared with backend.core.indexes.declare, or "collection._id"
    indexes: tuple[str, ...]
    call: Call
    max_samples: int | None = None
    note: str = ""
    # off unless asked for with --ops (keeps the default run inside its time budget)
    optional: bool = False


def describe_index(ref: str) -> str:
    """'tickets.inbox_tenant_status_activity' -> 'tickets.inbox_tenant_status_activity {reseller_id:1, ...}'."""
    collection, _, name = ref.partition(".")
    if name == "_id":
        return f"{collection}._id"
    for spec in declared():
        if spec.collection == collection and spec.name == name:
            keys = ", ".join(f"{k}:{d}" for k, d in spec.keys)
            return f"{ref} {{{keys}}}" + (" unique" if spec.unique else "")
    raise LookupError(f"index {ref} is not declared in the backend (backend.core.indexes.declared())")


class Check(Exception):
    """A measured call returned something other than what the seeded data says it must."""


def deep_cursor(pools: Pools, *, page: int, limit: int) -> tuple[str | None, int]:
    """The cursor the service hands out for page `page` (1-based) of tenant 0's finalizado list,
    computed from the seeded data (newest activity first, ties by id) instead of walking pages.
    Returns (cursor, page actually used: the requested one, or the last full page)."""
    ordered = sorted(pools.home_finalized, reverse=True)
    page = max(1, min(page, len(ordered) // limit))
    if page == 1:
        return None, 1
    at, ticket_id = ordered[(page - 1) * limit - 1]
    return encode_cursor([at.isoformat(), ticket_id]), page


def build_ops(
    db: Database,
    tenants: list[Tenant],
    pools: Pools,
    *,
    rng: random.Random,
    page_size: int,
    messages_per_ticket: int,
    deep: tuple[str | None, int],
) -> list[Op]:
    home = tenants[0]
    deep_cursor_value, deep_page = deep

    def pick(seq: list[Any]) -> Any:
        return seq[rng.randrange(len(seq))]

    async def inbox_first(i: int) -> None:
        await tickets.list_page(db, home.owner, status=Status.ESPERA, department_id=None, cursor=None, limit=page_size)

    async def inbox_deep(i: int) -> None:
        page = await tickets.list_page(
            db, home.owner, status=Status.FINALIZADO, department_id=None, cursor=deep_cursor_value, limit=page_size
        )
        if not page.items:
            raise Check("deep inbox page is empty")

    async def agent_queue(i: int) -> None:
        agent = home.agents[0]
        await tickets.list_page(db, agent, status=Status.ESPERA, department_id=None, cursor=None, limit=page_size)

    async def counts(i: int) -> None:
        await tickets.counts(db, home.owner, department_id=None)

    async def message_list(i: int) -> None:
        ti, ticket_id = pick(pools.tickets)
        page = await messages.list_page(db, tenants[ti].owner, ticket_id=ticket_id, cursor=None, limit=page_size)
        if len(page.items) < min(messages_per_ticket, page_size):
            raise Check(f"ticket {ticket_id} lists {len(page.items)} messages")

    espera = list(pools.espera)
    rng.shuffle(espera)

    async def assume(i: int) -> None:
        ti, di, ticket_id = espera[i]
        ticket = await tickets.assume(db, tenants[ti].agents[di], ticket_id=ticket_id)
        if ticket.status != Status.ATENDENDO.value:
            raise Check("assume did not move the ticket to atendendo")

    async def client_by_phone(i: int) -> None:
        ti, phone = pick(pools.phones)
        page = await clients.list_page(db, tenants[ti].owner, cursor=None, limit=page_size, phone=phone)
        if len(page.items) != 1:
            raise Check(f"phone {phone} found {len(page.items)} clients")

    async def client_by_unknown_phone(i: int) -> None:
        ti = i % len(tenants)
        phone = f"5599{ti:02d}{i:09d}"  # outside the seeded numbering
        page = await clients.list_page(db, tenants[ti].owner, cursor=None, limit=page_size, phone=phone)
        if page.items:
            raise Check(f"unknown phone {phone} found a client")

    async def ticket_by_number(i: int) -> None:
        ti, number = pick(pools.numbers)
        tenant = tenants[ti]
        ticket_id = await natural_keys.lookup(db, tickets.NUMBER_KEY, tenant.reseller_id, str(number))
        if ticket_id is None:
            raise Check(f"ticket number {number} not found")
        doc = await tickets.get_visible_or_404(db, tenant.owner, ticket_id=ticket_id)
        if doc["number"] != number:
            raise Check("ticket-number key points at another ticket")

    async def ticket_get(i: int) -> None:
        ti, ticket_id = pick(pools.tickets)
        await tickets.get_visible_or_404(db, tenants[ti].owner, ticket_id=ticket_id)

    async def inbound(i: int) -> None:
        ti, di, client = pick(pools.open_clients)
        tenant = tenants[ti]
        _, _, created = await intake.receive_client_message(
            db,
            reseller_id=tenant.reseller_id,
            client=client,
            department_id=tenant.department_ids[di],
            channel=intake.API_CHANNEL,
            body=f"mensagem de benchmark {i}",
        )
        if created:
            raise Check("a client with an open ticket got a new one")

    by_id = ("tickets._id", "ticket_events._id")
    inbox_ix = ("tickets.inbox_tenant_status_activity",)
    return [
        Op("client_by_phone", "GET /clients?phone=…", ("natural_keys._id", "users._id"), client_by_phone),
        Op(
            "phone_not_found",
            "GET /clients?phone=… (no such client)",
            ("natural_keys._id",),
            client_by_unknown_phone,
            note="a natural-key miss: one `_id` lookup that finds nothing",
        ),
        Op(
            "ticket_by_number",
            "(no route) ticket-number key → GET /tickets/{id}",
            ("natural_keys._id", *by_id),
            ticket_by_number,
        ),
        Op("ticket_get", "GET /tickets/{id}", by_id, ticket_get),
        Op(
            "assume",
            "POST /tickets/{id}/assume",
            by_id,
            assume,
            max_samples=len(espera) - 1,
            note="each sample assumes a different espera ticket with an agent of its department",
        ),
        Op(
            "inbound_message",
            "receive_client_message (webhook ingestion)",
            ("natural_keys._id", *by_id, "messages._id"),
            inbound,
            note="appends to the client's open ticket",
        ),
        Op(
            "message_list",
            "GET /tickets/{id}/messages",
            (*by_id, "messages.ticket_created"),
            message_list,
            note=f"newest page (limit {page_size}) of a random ticket's {messages_per_ticket} messages",
        ),
        Op(
            "inbox_first",
            "GET /tickets?status=espera (reseller)",
            inbox_ix,
            inbox_first,
            note="first page",
        ),
        Op(
            "inbox_deep",
            "GET /tickets?status=finalizado&cursor=… (reseller)",
            inbox_ix,
            inbox_deep,
            note=f"page {deep_page} via keyset cursor",
        ),
        Op(
            "agent_queue",
            "GET /tickets?status=espera (agent)",
            (
                "tickets.inbox_tenant_status_activity",
                "tickets.inbox_department_status_activity",
                "tickets.inbox_agent_status_activity",
                "tickets.inbox_finalized_by_status_activity",
            ),
            agent_queue,
            note="first page of the agent's visible espera tickets ($or over department/agent/finalized_by)",
        ),
        Op("counts", "GET /tickets/counts (reseller)", inbox_ix, counts, note="three count queries", optional=True),
    ]
