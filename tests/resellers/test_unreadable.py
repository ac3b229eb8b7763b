"""One reseller document that does not read as a tenant (an older version's shape, an operator's
slip) is passed over by the admin's list, logged, which still shows and pages through every other."""

from typing import Any

import httpx
from structlog.testing import capture_logs

from tests.factories import API, collect_pages, create_reseller


async def test_the_resellers_list_passes_over_an_unreadable_reseller_and_pages_past_it(
    client: httpx.AsyncClient, admin_headers: dict[str, str], db: Any
) -> None:
    made = [(await create_reseller(client, admin_headers))[0]["id"] for _ in range(5)]
    bad = made[-3]  # newest first, the third: read right after the first page's last one
    await db.resellers.update_one({"_id": bad}, {"$set": {"created_at": "yesterday"}})

    with capture_logs() as logs:
        listed = [r["id"] for r in await collect_pages(client, admin_headers, f"{API}/resellers", limit=2)]
        r = await client.get(f"{API}/resellers", headers=admin_headers)
    assert r.status_code == 200, r.text
    assert [x for x in listed if x in made] == [x for x in made[::-1] if x != bad]
    assert bad not in [x["id"] for x in r.json()["items"]]
    assert any(e["log_level"] == "error" and e.get("id") == bad for e in logs), logs
