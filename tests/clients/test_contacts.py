"""Contacts: search, e-mail/notes/tags, renames seen in tickets at once, CSV import and export."""

import asyncio
import csv
import io
from typing import Any

import httpx
import pytest

from backend.clients import service as clients_service
from tests.factories import API, Tenant, collection_counts, make_client, make_tenant, open_ticket, unique, unique_phone


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


@pytest.fixture(scope="module")
async def other(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=1)


async def _names(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[str]:
    r = await client.get(f"{API}/clients", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return [c["name"] for c in r.json()["items"]]


async def test_search_by_part_of_name_or_number_within_the_tenant(
    client: httpx.AsyncClient, tenant: Tenant, other: Tenant
) -> None:
    surname = unique("Quitéria")
    phone = unique_phone()
    r = await client.post(f"{API}/clients", json={"name": f"Ana {surname}", "phone": phone}, headers=tenant.headers)
    assert r.status_code == 201
    await client.post(f"{API}/clients", json={"name": f"Ana {surname}", "phone": phone}, headers=other.headers)
    assert await _names(client, tenant.headers, q=surname.upper()) == [f"Ana {surname}"]
    assert await _names(client, tenant.headers, q=phone[-7:]) == [f"Ana {surname}"]
    assert await _names(client, tenant.headers, q=".*") == []
    assert await _names(client, other.agents[0]["headers"], q=surname) == [f"Ana {surname}"]


async def test_email_notes_and_tags_are_kept_and_tags_filter(
    client: httpx.AsyncClient, tenant: Tenant, other: Tenant, db: Any
) -> None:
    tag = unique("vip").lower()
    body = {
        "name": "Carla",
        "phone": unique_phone(),
        "email": "carla@example.com",
        "notes": "prefere manhã",
        "tags": [tag.upper(), f"  {tag} ", "atacado"],
    }
    r = await client.post(f"{API}/clients", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    carla = r.json()
    assert (carla["email"], carla["notes"], carla["tags"]) == ("carla@example.com", "prefere manhã", ["atacado", tag])
    assert await _names(client, tenant.headers, tag=tag) == ["Carla"]
    assert await _names(client, tenant.headers, tag=f" {tag.upper()} ") == ["Carla"]
    assert await _names(client, other.headers, tag=tag) == []
    r = await client.patch(
        f"{API}/clients/{carla['id']}", json={"email": None, "tags": ["novo"]}, headers=tenant.agents[0]["headers"]
    )
    assert r.status_code == 200
    assert (r.json()["email"], r.json()["notes"], r.json()["tags"]) == (None, "prefere manhã", ["novo"])
    r = await client.get(f"{API}/tags", headers=tenant.headers)
    assert (
        "novo" in r.json()["items"]
        and tag not in (await client.get(f"{API}/tags", headers=other.headers)).json()["items"]
    )

    before = await db.users.find_one({"_id": carla["id"]})
    for bad in (
        {"email": "not-an-email"},
        {"tags": ["x" * 33]},
        {"tags": [str(i) for i in range(21)]},
        {"notes": "x" * 2001},
        {"phone": unique_phone()},
    ):
        r = await client.patch(f"{API}/clients/{carla['id']}", json=bad, headers=tenant.headers)
        assert r.status_code == 422, bad
    assert await db.users.find_one({"_id": carla["id"]}) == before
    r = await client.patch(f"{API}/clients/{carla['id']}", json={"name": "Hack"}, headers=other.headers)
    assert r.status_code == 404


async def test_a_rename_shows_in_the_clients_tickets_at_once(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    customer = await make_client(client, tenant)
    ticket = await open_ticket(
        client, tenant.headers, client_id=customer["id"], department_id=tenant.departments[0]["id"]
    )
    stored_before = await db.tickets.find_one({"_id": ticket["id"]})
    new_name = unique("Renomeada ")
    r = await client.patch(f"{API}/clients/{customer['id']}", json={"name": new_name}, headers=tenant.headers)
    assert r.status_code == 200
    r = await client.get(f"{API}/tickets/{ticket['id']}", headers=tenant.headers)
    assert r.json()["client_name"] == new_name
    r = await client.get(f"{API}/tickets", params={"status": "espera"}, headers=tenant.agents[0]["headers"])
    assert [t["client_name"] for t in r.json()["items"] if t["id"] == ticket["id"]] == [new_name]
    r = await client.get(f"{API}/tickets", params={"q": new_name}, headers=tenant.headers)
    assert [t["id"] for t in r.json()["items"]] == [ticket["id"]]
    # Read at read time: the ticket document (the event log's projection) was not rewritten.
    assert await db.tickets.find_one({"_id": ticket["id"]}) == stored_before


def _csv(*lines: str) -> str:
    return "\n".join(lines) + "\n"


async def test_csv_preview_reports_every_bad_line_and_import_of_a_bad_file_writes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    p1, p2 = unique_phone(), unique_phone()
    text = _csv(
        "nome;telefone;email;notas;tags",
        f"Bruno;{p1};bruno@example.com;cliente antigo;vip|sp",
        "Sem telefone;;;;",
        f"Email ruim;{p2};nao-e-email;;",
        f"Repetido;{p1};;;",
        "",
        f";{unique_phone()};;;",
    )
    before = await collection_counts(db)
    r = await client.post(f"{API}/clients/import", json={"csv": text, "dry_run": True}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    preview = r.json()
    assert [(e["line"], e["field"]) for e in preview["errors"]] == [
        (3, "phone"),
        (4, "email"),
        (5, "phone"),
        (7, "name"),
    ]
    assert [row["phone"] for row in preview["rows"]] == [p1]
    r = await client.post(f"{API}/clients/import", json={"csv": text, "dry_run": False}, headers=tenant.headers)
    assert r.status_code == 422
    assert [issue["loc"][1] for issue in r.json()["detail"]] == [3, 4, 5, 7]
    assert await collection_counts(db) == before
    oversized = "x" * 140_000  # past the csv module's field limit: a csv.Error, never a 500
    for bad in (
        "",
        "nome,email\nX,x@y.z\n",
        'nome;telefone\n"aberto;1\n',
        oversized,
        f"nome;telefone\n{oversized};1\n",
    ):
        r = await client.post(f"{API}/clients/import", json={"csv": bad, "dry_run": False}, headers=tenant.headers)
        assert r.status_code == 422, bad
    assert await collection_counts(db) == before


async def test_csv_import_creates_updates_and_is_idempotent(client: httpx.AsyncClient, tenant: Tenant, db: Any) -> None:
    known = await make_client(client, tenant)
    fresh = unique_phone()
    text = _csv(
        "\ufeffNome,Telefone,E-mail,Tags",
        f'Nova Pessoa,+{fresh},nova@example.com,"lead, sp"',
        f"Nome Atualizado,{known['phone']},,vip",
    )
    r = await client.post(f"{API}/clients/import", json={"csv": text, "dry_run": True}, headers=tenant.headers)
    assert [row["exists"] for row in r.json()["rows"]] == [False, True]
    r = await client.post(f"{API}/clients/import", json={"csv": text, "dry_run": False}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["updated"]) == (1, 1)
    counts = await collection_counts(db)
    r = await client.post(f"{API}/clients/import", json={"csv": text, "dry_run": False}, headers=tenant.headers)
    assert (r.json()["created"], r.json()["updated"]) == (0, 2)
    assert await collection_counts(db) == counts
    r = await client.get(f"{API}/clients", params={"phone": fresh}, headers=tenant.headers)
    assert [(c["name"], c["email"], c["tags"]) for c in r.json()["items"]] == [
        ("Nova Pessoa", "nova@example.com", ["lead", "sp"])
    ]
    r = await client.get(f"{API}/clients/{known['id']}", headers=tenant.headers)
    assert (r.json()["name"], r.json()["tags"]) == ("Nome Atualizado", ["vip"])


async def test_an_import_killed_part_way_completes_on_retry_without_duplicates(
    client: httpx.AsyncClient, tenant: Tenant, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    phones = [unique_phone() for _ in range(3)]
    text = _csv("nome;telefone", *(f"Pessoa {i};{p}" for i, p in enumerate(phones)))
    real = clients_service.upsert_by_phone
    calls = 0

    async def dies_on_second(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("process killed")
        return await real(*args, **kwargs)

    monkeypatch.setattr(clients_service, "upsert_by_phone", dies_on_second)
    with pytest.raises(RuntimeError):
        await client.post(f"{API}/clients/import", json={"csv": text, "dry_run": False}, headers=tenant.headers)
    monkeypatch.setattr(clients_service, "upsert_by_phone", real)
    r = await client.post(f"{API}/clients/import", json={"csv": text, "dry_run": False}, headers=tenant.headers)
    assert (r.json()["created"], r.json()["updated"]) == (2, 1)
    for phone in phones:
        assert await db.users.count_documents({"reseller_id": tenant.id, "role": "client", "phone": phone}) == 1


async def test_concurrent_imports_of_one_file_make_each_client_once(
    client: httpx.AsyncClient, tenant: Tenant, db: Any
) -> None:
    phones = [unique_phone() for _ in range(4)]
    text = _csv("nome;telefone", *(f"P{i};{p}" for i, p in enumerate(phones)))
    results = await asyncio.gather(
        *(
            client.post(f"{API}/clients/import", json={"csv": text, "dry_run": False}, headers=tenant.headers)
            for _ in range(3)
        )
    )
    assert all(r.status_code == 200 for r in results)
    assert sum(r.json()["created"] for r in results) == 4
    for phone in phones:
        assert await db.users.count_documents({"reseller_id": tenant.id, "role": "client", "phone": phone}) == 1


async def test_export_is_a_bom_semicolon_csv_of_the_tenants_clients_only(
    client: httpx.AsyncClient, tenant: Tenant, other: Tenant
) -> None:
    mine = await make_client(client, tenant)
    r = await client.patch(
        f"{API}/clients/{mine['id']}", json={"notes": '=HYPERLINK("x")', "tags": ["b", "a"]}, headers=tenant.headers
    )
    assert r.status_code == 200
    tagged = await make_client(client, tenant)  # the tags column is a cell like the others
    r = await client.patch(f"{API}/clients/{tagged['id']}", json={"tags": ["=soma"]}, headers=tenant.headers)
    assert r.status_code == 200
    theirs = await make_client(client, other)
    r = await client.get(f"{API}/clients/export.csv", headers=tenant.headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig")), delimiter=";"))
    assert rows[0] == ["nome", "telefone", "email", "notas", "tags", "criado_em"]
    by_phone = {row[1]: row for row in rows[1:]}
    assert by_phone[mine["phone"]][3:5] == ['\'=HYPERLINK("x")', "a, b"]
    assert by_phone[tagged["phone"]][4] == "'=soma"
    assert theirs["phone"] not in by_phone
    total = (await client.get(f"{API}/clients", params={"limit": 200}, headers=tenant.headers)).json()["items"]
    assert len(rows) - 1 == len(total)
    assert (await client.get(f"{API}/clients/export.csv", headers=other.agents[0]["headers"])).status_code == 200
