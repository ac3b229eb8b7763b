"""The guard's decision rules on plain entries (no database): baseline, shrink, override."""

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


def test_file_copy_is_on_by_default_in_production_only() -> None:
    from backend.core.config import PRODUCTION_LEDGER_FILE, Settings

    def settings(**values: object) -> Settings:
        return Settings(_env_file=None, **values)  # type: ignore[arg-type]

    prod = {"ENV": "production", "JWT_SECRET": "s" * 40, "MONGO_URL": "mongodb://db/?replicaSet=rs0"}
    assert settings(**prod).ledger_file == PRODUCTION_LEDGER_FILE
    assert settings(**prod, LEDGER_FILE="/srv/l.jsonl").ledger_file == "/srv/l.jsonl"
    assert settings(**prod, LEDGER_FILE="").ledger_file == ""
    # Development and test stores are routinely fresh: a file copy there is opt-in.
    assert settings(ENV="development").ledger_file == "" and settings(ENV="test").ledger_file == ""
