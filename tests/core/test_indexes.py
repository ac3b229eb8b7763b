"""Every index declared in code exists after start-up, with that key order and uniqueness."""

from typing import Any

from backend.core.indexes import declared, ensure_indexes


async def _indexes(db: Any) -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for collection in sorted({spec.collection for spec in declared()}):
        async for info in await db[collection].list_indexes():
            found[(collection, info["name"])] = {"key": list(info["key"].items()), "unique": bool(info.get("unique"))}
    return found


async def test_every_declared_index_exists_with_its_key_order_and_uniqueness(db: Any) -> None:
    specs = declared()
    names = {(s.collection, s.name) for s in specs}
    # The hot queries issue 2 names have their index (a registry that lost one would pass the loop below).
    for expected in (
        ("tickets", "inbox_tenant_status_activity"),
        ("tickets", "inbox_department_status_activity"),
        ("tickets", "inbox_agent_status_activity"),
        ("tickets", "tenant_number_unique"),
        ("messages", "ticket_created"),
        ("ticket_events", "ticket_version_unique"),
        ("departments", "tenant_name_unique"),
    ):
        assert expected in names, expected
    found = await _indexes(db)
    for spec in specs:
        info = found.get((spec.collection, spec.name))
        assert info is not None, f"{spec.collection}.{spec.name} missing"
        assert info["key"] == [(k, int(d)) for k, d in spec.keys], spec.name
        assert info["unique"] == spec.unique, spec.name
    assert found[("tickets", "tenant_number_unique")]["unique"] is True
    assert found[("ticket_events", "ticket_version_unique")]["unique"] is True


async def test_ensure_indexes_is_idempotent(db: Any) -> None:
    before = await _indexes(db)
    await ensure_indexes(db)
    await ensure_indexes(db)
    assert await _indexes(db) == before


async def test_natural_keys_that_must_stay_flat_are_keyed_by_id(db: Any, client: Any, admin_headers: Any) -> None:
    """Email, client phone and ticket number lookups are `_id` lookups in natural_keys (the one
    query FerretDB pushes down), so they need no secondary index and stay flat as data grows."""
    from tests.factories import make_tenant, make_ticket

    tenant = await make_tenant(client, admin_headers, agents=0)
    ticket = await make_ticket(client, tenant)
    keys = {doc["_id"] async for doc in db.natural_keys.find({})}
    assert f"ticket-number:{tenant.id}:{ticket['number']}" in keys
    assert f"client-phone:{tenant.id}:{ticket['client_phone']}" in keys
    assert any(k.startswith("email:") for k in keys)
