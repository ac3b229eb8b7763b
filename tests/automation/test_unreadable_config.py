"""A tenant's config document that does not read as a whole (an operator's slip, an older
version's shape: an item of its hours or closed days of the wrong type or an impossible time, a
setting of the wrong type) stops none of its clients' messages: each is stored and filed into its
ticket as usual, by what of the config reads (the rest: its defaults), and logged. The settings
page shows the same, so the owner can save a good config over it; a bad save is still refused."""

from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.automation.helpers import TOKYO_HOURS, TUESDAY_NIGHT, all_sent, at, company, open_ticket, write
from tests.factories import API, unique_phone
from tests.fakes.harness import FakeEvolution

WELCOME = "Olá {{cliente}}! Bem-vindo à {{empresa}}."
GREETING = "Olá Maria! Bem-vindo à Loja Azul."
GOOD = {"welcome_message": WELCOME, "timezone": "Asia/Tokyo", "business_hours": TOKYO_HOURS}
# No range of these reads (a text, an impossible time, no such weekday, no close); one closed day
# does (Christmas, not the Tuesday the messages are written on).
BROKEN = {
    "business_hours": [
        "all day",
        {"weekday": 1, "open": "25:00", "close": "18:00"},
        {"weekday": 9, "open": "09:00", "close": "18:00"},
        {"weekday": 1, "open": "09:00"},
    ],
    "closed_dates": [20261201, "2026-02-30", "2026-12-25"],
    "csat_window_hours": "a day",
    "updated_at": "yesterday",
}


@pytest.fixture(scope="module")
def settings_overrides() -> dict[str, Any]:
    return {"SETUP_CACHE_SECONDS": 0}  # the raw writes below are read by the very next message


async def test_a_message_to_a_tenant_whose_config_does_not_read_is_filed_and_a_save_mends_it(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    evolution: FakeEvolution,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken, conn = await company(client, admin_headers, evolution, config=GOOD)
    sound, sound_conn = await company(client, admin_headers, evolution, config=GOOD)
    await db.reseller_configs.update_one({"_id": broken.id}, {"$set": BROKEN})
    at(monkeypatch, TUESDAY_NIGHT)  # closed in Tokyo by the good hours; open with none set
    phone, other = unique_phone(), unique_phone()

    with capture_logs() as logs:
        await write(evolution, db, conn, phone, "oi")
    ticket = await open_ticket(db, broken, phone)
    # No hours read: open all day, as a tenant that set none; the welcome still reads.
    assert (ticket["status"], ticket["out_of_hours"]) == ("espera", False)
    assert await all_sent(evolution, phone, [GREETING])
    r = await client.get(f"{API}/tickets", headers=broken.headers)
    assert r.status_code == 200, r.text
    assert [t["id"] for t in r.json()["items"]] == [ticket["_id"]]
    r = await client.get(f"{API}/tickets/{ticket['_id']}/messages", headers=broken.headers)
    first = r.json()["items"][0]
    assert (first["sender_type"], first["body"]) == ("client", "oi")
    logged = [e for e in logs if e["log_level"] == "error" and e.get("reseller_id") == broken.id]
    assert logged, logs

    # The other tenant's config reads as ever: closed in Tokyo.
    await write(evolution, db, sound_conn, other, "oi")
    assert (await open_ticket(db, sound, other))["out_of_hours"] is True

    # The settings page shows what reads, the rest as its defaults ...
    r = await client.get(f"{API}/reseller-config", headers=broken.headers)
    assert r.status_code == 200, r.text
    shown = r.json()
    assert (shown["business_hours"], shown["closed_dates"], shown["csat_window_hours"]) == ([], ["2026-12-25"], 24)
    assert (shown["welcome_message"], shown["updated_at"]) == (WELCOME, None)
    # ... a bad save is refused as ever, and a good one mends it: the next ticket reads it.
    bad = {"business_hours": [{"weekday": 1, "open": "25:00", "close": "18:00"}]}
    r = await client.patch(f"{API}/reseller-config", json=bad, headers=broken.headers)
    assert r.status_code == 422, r.text
    mend = {"business_hours": TOKYO_HOURS, "closed_dates": ["2026-12-25"], "csat_window_hours": 48}
    r = await client.patch(f"{API}/reseller-config", json=mend, headers=broken.headers)
    assert r.status_code == 200, r.text
    assert r.json()["business_hours"] == TOKYO_HOURS
    later = unique_phone()
    await write(evolution, db, conn, later, "oi")
    assert (await open_ticket(db, broken, later))["out_of_hours"] is True
