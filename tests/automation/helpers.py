"""A tenant set up for automatic messages, a client writing in through the fake Evolution, and
reads of what was stored and what the fake provider was asked to send."""

from collections import Counter
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from backend.automation import service as automation
from tests.factories import API, Tenant, make_agent, make_department, make_tenant
from tests.fakes.harness import FakeEvolution, make_connection, wait_for
from tests.webhooks.helpers import settled

TOKYO = ZoneInfo("Asia/Tokyo")
# Weekdays 09:00-18:00 in Tokyo; the server runs in UTC, where 21:00 Tokyo is 12:00 (open by UTC
# hours) and 10:00 Tokyo is 01:00 (closed by UTC hours): misjudging the zone fails every test.
TOKYO_HOURS = [{"weekday": d, "open": "09:00", "close": "18:00"} for d in range(5)]
TUESDAY_NIGHT = datetime(2026, 12, 1, 21, 0, tzinfo=TOKYO)  # 2026-12-01 is a Tuesday
WEDNESDAY_MORNING = datetime(2026, 12, 2, 10, 0, tzinfo=TOKYO)  # a holiday in these tests
THURSDAY_MORNING = datetime(2026, 12, 3, 10, 0, tzinfo=TOKYO)
THURSDAY_NIGHT = datetime(2026, 12, 3, 19, 0, tzinfo=TOKYO)


def at(monkeypatch: pytest.MonkeyPatch, when: datetime) -> None:
    """Business hours and the survey window are judged at this instant from now on."""
    monkeypatch.setattr(automation, "now", lambda: when.astimezone(UTC))


async def company(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    *,
    config: dict[str, Any],
    menu: dict[str, Any] | None = None,
    departments: int = 2,
    processed: bool = True,
) -> tuple[Tenant, dict[str, Any]]:
    """A tenant with `departments` departments (Suporte, Financeiro, ...) and one agent in each
    (`tenant.agents[i]` works in `tenant.departments[i]`), its config patched with `config`, and an
    open connection (default department: the first) patched with `menu` (`processed`: as
    make_connection's)."""
    tenant = await make_tenant(client, admin_headers, departments=0, agents=0)
    for name in ["Suporte", "Financeiro", "Comercial"][:departments]:
        tenant.departments.append(await make_department(client, tenant, name))
    for dept in tenant.departments:
        tenant.agents.append(await make_agent(client, tenant, [dept["id"]]))
    body = {"company_name": "Loja Azul", **config}
    r = await client.patch(f"{API}/reseller-config", json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    conn = await make_connection(client, tenant, evolution, processed=processed)
    if menu is not None:
        r = await client.patch(f"{API}/whatsapp-connections/{conn['id']}", json=menu, headers=tenant.headers)
        assert r.status_code == 200, r.text
        conn = r.json()
    return tenant, conn


async def write(evolution: FakeEvolution, db: Any, conn: dict[str, Any], phone: str, text: str, **extra: Any) -> Any:
    """The client sends `text`; returns the processed raw delivery."""
    result = await evolution.inbound(conn["instance_name"], phone, text, push_name="Maria", **extra)
    raw = await settled(db, result)
    assert raw["status"] == "processed", raw
    return raw


async def open_ticket(db: Any, tenant: Tenant, phone: str) -> dict[str, Any]:
    customer = await db.users.find_one({"reseller_id": tenant.id, "phone": phone})
    tickets = await db.tickets.find({"client_id": customer["_id"]}).to_list(None)
    open_ = [t for t in tickets if t["status"] != "finalizado"]
    assert len(open_) == 1, tickets
    return open_[0]


async def tickets_of(db: Any, tenant: Tenant, phone: str) -> list[dict[str, Any]]:
    customer = await db.users.find_one({"reseller_id": tenant.id, "phone": phone})
    return sorted(await db.tickets.find({"client_id": customer["_id"]}).to_list(None), key=lambda t: t["number"])


async def automatic(db: Any, ticket_id: str) -> list[dict[str, Any]]:
    """The ticket's automatic messages, oldest first."""
    found = await db.messages.find({"ticket_id": ticket_id}).to_list(None)
    return sorted((m for m in found if m.get("automatic")), key=lambda m: (m["created_at"], m["_id"]))


async def sent_to(evolution: FakeEvolution, phone: str) -> list[str]:
    return [s["text"] for s in await evolution.sent() if s["number"] == phone]


async def all_sent(evolution: FakeEvolution, phone: str, texts: list[str], *, within: float = 60.0) -> list[str]:
    """Waits until the provider was asked to send each of `texts` to `phone`; returns every text
    sent there (for counting: a text sent twice shows twice)."""

    async def done() -> list[str] | None:
        sent = await sent_to(evolution, phone)
        return sent if all(t in sent for t in texts) else None

    result: list[str] = await wait_for(done, timeout=within)
    return result


async def sent_counts(
    evolution: FakeEvolution, phone: str, expected: dict[str, int], *, within: float = 60.0
) -> Counter[str]:
    """Waits until the provider was asked to send each text at least as often as `expected`
    says; returns the counts of every text sent to `phone`."""

    async def done() -> Counter[str] | None:
        counts = Counter(await sent_to(evolution, phone))
        return counts if all(counts[t] >= n for t, n in expected.items()) else None

    result: Counter[str] = await wait_for(done, timeout=within)
    return result


async def left(db: Any, ticket_id: str, purpose: str, *, within: float = 60.0) -> dict[str, Any]:
    """The ticket's automatic message of `purpose` once the provider took it (status sent or
    later): a client answers a question only after receiving it."""

    async def done() -> dict[str, Any] | None:
        found = [m for m in await automatic(db, ticket_id) if m["automatic_purpose"] == purpose]
        return found[0] if found and found[0]["status"] in ("sent", "delivered", "read") else None

    result: dict[str, Any] = await wait_for(done, timeout=within)
    return result
