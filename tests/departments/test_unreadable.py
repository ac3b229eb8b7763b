"""A department document that does not read (an older version's shape, an operator's slip) is
passed over by the list, which still shows and pages through every other department: the id-cursor
lists share the rule of the inbox (core.tenancy `TenantScope.page_by_id`)."""

from typing import Any

import httpx

from tests.factories import API, collect_pages, make_tenant


async def test_the_departments_list_passes_over_an_unreadable_one_and_pages_past_it(
    client: httpx.AsyncClient, db: Any, admin_headers: dict[str, str]
) -> None:
    tenant = await make_tenant(client, admin_headers, departments=5)
    newest_first = sorted((d["id"] for d in tenant.departments), reverse=True)
    bad = newest_first[2]  # read right after the first page's last one
    await db.departments.update_one({"_id": bad}, {"$set": {"name": 42}})

    listed = await collect_pages(client, tenant.headers, f"{API}/departments", limit=2)
    assert [d["id"] for d in listed] == [d for d in newest_first if d != bad]
    r = await client.get(f"{API}/departments", params={"limit": 50}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert [d["id"] for d in r.json()["items"]] == [d for d in newest_first if d != bad]
