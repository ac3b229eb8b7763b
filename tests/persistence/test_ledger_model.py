"""The guard's decision rules on plain entries (no database): baseline, shrink, override."""

from pathlib import Path

import pytest

from backend.ledger import model


def entry(id_: str, outcome: str = model.OK, **counts: int) -> dict[str, object]:
    return {"_id": id_, "outcome": outcome, "version": "v", "counts": counts}


def test_baseline_is_the_max_per_collection_over_accepted_starts() -> None:
    b = model.baseline(
        [
            entry("2025-01-01", tickets=5, messages=9),
            entry("2025-01-02", tickets=4, messages=12),
            entry("2025-01-03", model.REFUSED, tickets=0),
        ]
    )
    assert b.latest_id == "2025-01-02"
    assert b.counts["tickets"] == 5 and b.sources["tickets"] == "2025-01-01"
    assert b.counts["messages"] == 12 and b.sources["messages"] == "2025-01-02"


def test_an_override_rebases_older_starts_stop_binding() -> None:
    b = model.baseline([entry("1", tickets=50), entry("2", model.OVERRIDE, tickets=3), entry("3", tickets=4)])
    assert b.counts["tickets"] == 4 and b.entries == 2


def test_judge_names_every_shrunk_collection_with_both_counts() -> None:
    b = model.baseline([entry("1", tickets=5, messages=9, users=3)])
    v = model.judge(b, {"tickets": 5, "messages": 2, "users": 1})
    assert [s.describe() for s in v.shrinks] == ["messages 9 -> 2", "users 3 -> 1"]
    assert not v.ok and not v.empty_database
    text = model.refusal_message(v, db_name="support_chat", where="database")
    assert "messages 9 -> 2" in text and "users 3 -> 1" in text and "LEDGER_OVERRIDE_BASELINE=1" in text


def test_growth_and_first_start_pass() -> None:
    assert model.judge(model.baseline([]), {"tickets": 0}).ok
    assert model.judge(model.baseline([entry("1", tickets=5)]), {"tickets": 6}).ok


def test_empty_database_is_called_out() -> None:
    v = model.judge(model.baseline([entry("1", tickets=5)]), dict.fromkeys(model.GUARDED, 0))
    assert v.empty_database
    assert "EMPTY" in model.refusal_message(v, db_name="x", where="file")


def test_override_must_name_the_baseline_and_give_a_reason() -> None:
    v = model.judge(model.baseline([entry("1", tickets=5)]), {"tickets": 1})
    assert model.override_applies(v, baseline_id="1", reason="restored from backup 2025-01-01")
    assert not model.override_applies(v, baseline_id="1", reason="  ")
    assert not model.override_applies(v, baseline_id="0", reason="stale flag from an older incident")


def test_file_copy_is_on_by_default_in_every_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from backend.core.config import DEFAULT_LEDGER_FILE, Settings

    monkeypatch.delenv("LEDGER_FILE")  # tests/conftest.py turns it off for the suite

    def settings(**values: object) -> Settings:
        return Settings(_env_file=None, JWT_SECRET="s" * 40, FERRETDB_DATA_DIR=str(tmp_path / "db"), **values)  # type: ignore[arg-type]

    prod = {"ENV": "production", "MONGO_URL": "mongodb://db/?replicaSet=rs0"}
    assert settings(**prod).ledger_file == DEFAULT_LEDGER_FILE == "./var/deploy-ledger.jsonl"
    assert settings(**prod, LEDGER_FILE="/srv/l.jsonl").ledger_file == "/srv/l.jsonl"
    assert settings(**prod, LEDGER_FILE="").ledger_file == ""
    assert settings(ENV="development").ledger_file == DEFAULT_LEDGER_FILE
    assert settings(ENV="development", MONGO_URL="mongodb://db/").ledger_file == DEFAULT_LEDGER_FILE
    assert settings(ENV="test").ledger_file == DEFAULT_LEDGER_FILE
    assert settings(ENV="test", LEDGER_FILE="").ledger_file == ""


def test_an_entry_belongs_to_the_database_with_its_identity_or_legacy_name() -> None:
    mine = {"_id": "1", "db": "support_chat", "identity": "abc"}
    legacy = {"_id": "0", "db": "support_chat"}
    assert model.same_database(mine, identity="abc", db_name="support_chat")
    assert not model.same_database(mine, identity="zzz", db_name="support_chat")
    # No identity yet (new or emptied database): by name, so its history still counts against it.
    assert model.same_database(mine, identity=None, db_name="support_chat")
    assert model.same_database(legacy, identity="abc", db_name="support_chat")
    assert not model.same_database(legacy, identity="abc", db_name="other")


def test_the_file_guards_another_database_when_name_or_identity_differ() -> None:
    bound = {"_id": "1", "db": "support_chat", "identity": "abc"}
    assert not model.guards_another_database(None, identity=None, db_name="x")
    assert not model.guards_another_database(bound, identity="abc", db_name="support_chat")
    assert model.guards_another_database(bound, identity=None, db_name="support_chat")  # emptied
    assert model.guards_another_database(bound, identity="zzz", db_name="support_chat")  # another server
    assert model.guards_another_database(bound, identity=None, db_name="other")  # another MONGO_DB
    legacy = {"_id": "0", "db": "support_chat"}
    assert not model.guards_another_database(legacy, identity=None, db_name="support_chat")
    assert model.guards_another_database(legacy, identity=None, db_name="other")
    v = model.judge(model.baseline([]), {})
    assert model.override_applies(v, baseline_id="1", reason="moved to the new cluster", foreign=bound)
    assert not model.override_applies(v, baseline_id="0", reason="moved to the new cluster", foreign=bound)
