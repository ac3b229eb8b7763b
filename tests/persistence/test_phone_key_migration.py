"""Migration 2 on a real FerretDB seeded as the old code left it (phone keys in the form given):
every client whose number is not in its canonical form gets the canonical key, bound to the
client its old key names; a person saved twice keeps both clients and the key's holder (logged);
nothing is changed or removed; a run killed midway is finished by the next; a re-run does
nothing. Open surveys follow their chat to its new key."""

from datetime import timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from structlog.testing import capture_logs

from backend.clients import service as clients
from backend.core.clock import utcnow
from backend.core.db import Database, durable_database
from backend.migrations import phone_keys, runner, versions

R1, R2, CONN = "r1" + "0" * 22, "r2" + "0" * 22, "c1" + "0" * 22
T0 = utcnow() - timedelta(days=400)


def _client(_id: str, reseller_id: str, phone: str, days: int) -> dict[str, Any]:
    at = T0 + timedelta(days=days)
    return {
        "_id": _id,
        "role": "client",
        "reseller_id": reseller_id,
        "name": f"Cliente {_id}",
        "phone": phone,
        "created_at": at,
        "updated_at": at,
    }


# (id, tenant, phone as given, days after T0); each had its key "client-phone:<tenant>:<phone>".
CLIENTS = [
    ("a", R1, "553188887777", 1),  # BR mobile, DDD 31, from a JID without the nine
    ("s", R1, "551187654321", 2),  # BR mobile, DDD 11, saved without the nine
    ("p13", R1, "5531977776666", 3),  # the same person twice: saved with the nine first...
    ("p12", R1, "553177776666", 4),  # ...then created by an answer from the JID without it
    ("q12", R1, "553266665555", 5),  # and the other order: wrote first from the JID without it...
    ("q13", R1, "5532966665555", 6),  # ...then saved by the owner with the nine
    ("l", R1, "553133334444", 7),  # landline: unchanged
    ("m", R1, "5215512345678", 8),  # Mexico with the mobile "1"
    ("c", R1, "5511912345678", 9),  # already canonical
    ("a2", R2, "553188887777", 10),  # another tenant, the same number: its own client
]
EXPECTED_NEW_KEYS = {
    f"client-phone:{R1}:5531988887777": "a",
    f"client-phone:{R1}:5511987654321": "s",
    f"client-phone:{R1}:525512345678": "m",
    f"client-phone:{R2}:5531988887777": "a2",
}


@pytest.fixture
async def seeded(raw_mongo: AsyncMongoClient[dict[str, Any]], request: pytest.FixtureRequest) -> Database:
    name = f"mig_{request.node.name[:40]}"
    await raw_mongo.drop_database(name)
    db = durable_database(raw_mongo, name)
    await db.users.insert_many([_client(i, r, p, d) for i, r, p, d in CLIENTS])
    await db.users.insert_one({"_id": "agent1", "role": "agent", "reseller_id": R1, "phone": "553188880000"})
    await db.natural_keys.insert_many(
        [{"_id": f"client-phone:{r}:{p}", "target": i, "created_at": T0 + timedelta(days=d)} for i, r, p, d in CLIENTS]
    )
    now = utcnow()
    await db.automation_surveys.insert_many(
        [
            {  # open, in its window, under the old form of the chat: copied
                "_id": f"{CONN}:553188887777",
                "ticket_id": "t1",
                "reseller_id": R1,
                "asked_at": now,
                "expires_at": now + timedelta(hours=2),
            },
            {  # answered already: stays where it is
                "_id": f"{CONN}:5215512345678",
                "ticket_id": "t2",
                "reseller_id": R1,
                "asked_at": now,
                "expires_at": now + timedelta(hours=2),
                "answered_by": "m1",
            },
            {  # past its window
                "_id": f"{CONN}:551187654321",
                "ticket_id": "t3",
                "reseller_id": R1,
                "asked_at": now - timedelta(days=2),
                "expires_at": now - timedelta(days=1),
            },
        ]
    )
    return db


async def _snapshot(db: Database) -> dict[str, list[dict[str, Any]]]:
    return {
        name: await db[name].find({}).sort("_id", 1).to_list(None)
        for name in ("users", "natural_keys", "automation_surveys")
    }


async def _assert_migrated(db: Database, before: dict[str, list[dict[str, Any]]]) -> None:
    after = await _snapshot(db)
    assert after["users"] == before["users"]  # every client as it was, phones as given
    keys = {k["_id"]: k for k in after["natural_keys"]}
    assert all(keys[k["_id"]] == k for k in before["natural_keys"])  # every old key kept, unchanged
    added = {k: v["target"] for k, v in keys.items() if k not in {b["_id"] for b in before["natural_keys"]}}
    assert added == EXPECTED_NEW_KEYS
    # The pairs: the canonical key is the one saved with the nine's own key, left as it was.
    assert keys[f"client-phone:{R1}:5531977776666"]["target"] == "p13"
    assert keys[f"client-phone:{R1}:5532966665555"]["target"] == "q13"
    surveys = {s["_id"]: s for s in after["automation_surveys"]}
    assert all(surveys[s["_id"]] == s for s in before["automation_surveys"])
    old = surveys[f"{CONN}:553188887777"]
    assert set(surveys) - {s["_id"] for s in before["automation_surveys"]} == {f"{CONN}:5531988887777"}
    assert surveys[f"{CONN}:5531988887777"] == {**old, "_id": f"{CONN}:5531988887777"}


async def test_migration_claims_canonical_keys_keeps_both_of_a_pair_and_changes_nothing_else(
    seeded: Database,
) -> None:
    before = await _snapshot(seeded)
    with capture_logs() as logs:
        assert await runner.run(seeded, versions.MIGRATIONS) == [1, 2]
    await _assert_migrated(seeded, before)
    pairs = [e for e in logs if e.get("other_client")]
    assert sorted((e["kept_on_key"], e["other_client"], e["key_holder_is_older"]) for e in pairs) == [
        ("p13", "p12", True),
        ("q13", "q12", False),
    ]
    assert all(e["log_level"] == "warning" and e["reseller_id"] == R1 for e in pairs)
    # What the application now finds for each form of each number.
    found = {phone: await clients.id_by_phone(seeded, R1, phone) for phone in ("553188887777", "5531988887777")}
    assert found == {"553188887777": "a", "5531988887777": "a"}
    assert await clients.id_by_phone(seeded, R1, "553177776666") == "p13"
    assert await clients.id_by_phone(seeded, R1, "525512345678") == "m"
    assert await clients.id_by_phone(seeded, R1, "5531933334444") is None  # not the landline's
    assert await clients.id_by_phone(seeded, R2, "5531988887777") == "a2"


async def test_a_run_killed_midway_is_finished_by_the_next_and_a_rerun_does_nothing(
    seeded: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = await _snapshot(seeded)
    original = clients.claim_phone_key

    async def killed_after_its_first_claim(db: Any, **kwargs: Any) -> tuple[str, bool]:
        bound, won = await original(db, **kwargs)
        if won:
            raise SystemExit("killed")  # the process dies here: nothing after it runs
        return bound, won

    monkeypatch.setattr(clients, "claim_phone_key", killed_after_its_first_claim)
    with pytest.raises(SystemExit):
        await runner.run(seeded, versions.MIGRATIONS)
    monkeypatch.undo()
    assert await seeded.natural_keys.count_documents({}) == len(before["natural_keys"]) + 1
    assert await seeded.schema_migrations.find_one({"_id": runner.applied_id(2)}) is None

    assert await runner.run(seeded, versions.MIGRATIONS) == [2]  # the next start: what is pending
    await _assert_migrated(seeded, before)
    done = await _snapshot(seeded)
    # Idempotent: run again (a lock takeover, or an operator), nothing changes.
    counts = await phone_keys.claim_canonical_phone_keys(seeded)
    assert counts == {"claimed": 0, "found": len(EXPECTED_NEW_KEYS), "kept_apart": 2}
    assert await phone_keys.copy_open_surveys(seeded) == 0
    assert await _snapshot(seeded) == done
