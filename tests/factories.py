"""Builders that create realistic data through the public API, as a user would."""

import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

_seq = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{next(_seq)}-{uuid.uuid4().hex[:6]}"


def unique_phone() -> str:
    return "55" + str(11_900_000_000 + uuid.uuid4().int % 99_999_999)


async def login(client: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@dataclass
class Tenant:
    id: str
    owner_id: str
    headers: dict[str, str]
    departments: list[dict[str, Any]] = field(default_factory=list)
    agents: list[dict[str, Any]] = field(default_factory=list)  # each with "headers"


async def make_tenant(
    client: httpx.AsyncClient, admin_headers: dict[str, str], *, departments: int = 1, agents: int = 2
) -> Tenant:
    email = f"{unique('owner')}@example.com"
    r = await client.post(
        "/api/v1/resellers",
        json={"name": unique("Revenda "), "email": email, "password": "owner-pass-1"},
        headers=admin_headers,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    tenant = Tenant(id=body["id"], owner_id=body["owner_id"], headers=await login(client, email, "owner-pass-1"))
    for _ in range(departments):
        tenant.departments.append(await make_department(client, tenant))
    for _ in range(agents):
        tenant.agents.append(await make_agent(client, tenant, [d["id"] for d in tenant.departments]))
    return tenant


async def make_department(client: httpx.AsyncClient, tenant: Tenant, name: str | None = None) -> dict[str, Any]:
    r = await client.post("/api/v1/departments", json={"name": name or unique("Depto ")}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def make_agent(client: httpx.AsyncClient, tenant: Tenant, department_ids: list[str]) -> dict[str, Any]:
    email = f"{unique('agent')}@example.com"
    r = await client.post(
        "/api/v1/users",
        json={
            "name": unique("Agente "),
            "email": email,
            "password": "agent-pass-1",
            "role": "agent",
            "department_ids": department_ids,
        },
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    agent: dict[str, Any] = r.json()
    agent["headers"] = await login(client, email, "agent-pass-1")
    agent["email"] = email
    return agent


async def make_client(client: httpx.AsyncClient, tenant: Tenant, phone: str | None = None) -> dict[str, Any]:
    r = await client.post(
        "/api/v1/clients", json={"name": unique("Cliente "), "phone": phone or unique_phone()}, headers=tenant.headers
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def make_ticket(
    client: httpx.AsyncClient,
    tenant: Tenant,
    *,
    department_id: str | None = None,
    message: str = "Olá, preciso de ajuda",
) -> dict[str, Any]:
    customer = await make_client(client, tenant)
    r = await client.post(
        "/api/v1/tickets",
        json={
            "client_id": customer["id"],
            "department_id": department_id or tenant.departments[0]["id"],
            "message": message,
        },
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


# --- helpers for the API-level suite (additive; the builders above keep their signatures) ---

API = "/api/v1"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create_reseller(
    client: httpx.AsyncClient, admin_headers: dict[str, str], *, password: str = "owner-pass-1"
) -> tuple[dict[str, Any], str]:
    """A reseller straight from the API, without departments or agents. Returns (reseller, owner email)."""
    email = f"{unique('owner')}@example.com"
    r = await client.post(
        f"{API}/resellers",
        json={"name": unique("Revenda "), "email": email, "password": password},
        headers=admin_headers,
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body, email


async def open_ticket(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    *,
    client_id: str,
    department_id: str,
    message: str = "Olá, preciso de ajuda",
) -> dict[str, Any]:
    """A ticket for an existing client (make_ticket makes a new client every time)."""
    r = await client.post(
        f"{API}/tickets",
        json={"client_id": client_id, "department_id": department_id, "message": message},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def get_ticket(client: httpx.AsyncClient, headers: dict[str, str], ticket_id: str) -> dict[str, Any]:
    r = await client.get(f"{API}/tickets/{ticket_id}", headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def ticket_events(client: httpx.AsyncClient, headers: dict[str, str], ticket_id: str) -> list[dict[str, Any]]:
    r = await client.get(f"{API}/tickets/{ticket_id}/events", params={"limit": 200}, headers=headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def assume(client: httpx.AsyncClient, headers: dict[str, str], ticket_id: str) -> dict[str, Any]:
    r = await client.post(f"{API}/tickets/{ticket_id}/assume", headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def collect_pages(
    client: httpx.AsyncClient, headers: dict[str, str], path: str, *, limit: int = 200, **params: Any
) -> list[dict[str, Any]]:
    """Every item of a cursor-paginated list."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        r = await client.get(path, params=query, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if not cursor:
            return items


COLLECTIONS = (
    "users",
    "resellers",
    "reseller_configs",
    "departments",
    "tickets",
    "messages",
    "ticket_events",
    "natural_keys",
    "counters",
)


async def collection_counts(db: Any) -> dict[str, int]:
    """Document counts of every collection the API writes, to prove a refused request wrote nothing."""
    return {name: await db[name].count_documents({}) for name in COLLECTIONS}


async def make_open_connection(client: httpx.AsyncClient, tenant: Tenant, db: Any) -> dict[str, Any]:
    """A WhatsApp connection through the API, then reported connected as a provider webhook would
    (tests without the fake Evolution process: sends from it fail and show as failed)."""
    from backend.connections import service as connections

    r = await client.post(
        "/api/v1/whatsapp-connections",
        json={
            "name": unique("Loja "),
            "provider": "evolution",
            "instance_name": unique("inst-"),
            "default_department_id": tenant.departments[0]["id"],
        },
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    stored = connections.Connection.model_validate(await db.whatsapp_connections.find_one({"_id": r.json()["id"]}))
    await connections.record_status(db, stored, status="open", qr_code=None)
    conn: dict[str, Any] = await db.whatsapp_connections.find_one({"_id": stored.id})
    return conn


async def make_client_ticket(
    client: httpx.AsyncClient,
    tenant: Tenant,
    db: Any,
    *,
    message: str = "Olá, preciso de ajuda",
    department_id: str | None = None,
    connection: dict[str, Any] | None = None,
    signed: bool = False,
    customer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ticket the client opened by writing in on WhatsApp (espera, the client's message first),
    filed by the same intake webhook deliveries use: one its holder can answer (replies are only
    accepted where they can reach the client). Unless `signed`, the tenant's replies are
    stored unsigned, as the text typed (tests about threads, not signatures)."""
    from backend.tickets import intake
    from backend.users.models import User

    conn = connection or await make_open_connection(client, tenant, db)
    if not signed:
        r = await client.patch("/api/v1/reseller-config", json={"signature_enabled": False}, headers=tenant.headers)
        assert r.status_code == 200, r.text
    customer = customer or await make_client(client, tenant)
    stored = User.model_validate(await db.users.find_one({"_id": customer["id"]}))
    ticket, _, _ = await intake.receive_client_message(
        db,
        reseller_id=tenant.id,
        client=stored,
        department_id=department_id or tenant.departments[0]["id"],
        channel=conn["_id"],
        body=message,
    )
    return await get_ticket(client, tenant.headers, ticket.id)
