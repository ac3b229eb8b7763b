"""Business hours judged in the reseller's timezone (the server runs in UTC), closed dates, the
closed period's name, and the one renderer of the automatic messages' texts."""

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from backend.automation import texts
from backend.automation.hours import NEVER_OPEN, Schedule
from backend.resellers.models import ResellerConfig
from tests.automation.helpers import THURSDAY_MORNING, THURSDAY_NIGHT, TOKYO, TOKYO_HOURS, TUESDAY_NIGHT


def schedule_of(fields: dict[str, Any]) -> Schedule:
    return Schedule.of(ResellerConfig(id="r", reseller_id="r", **fields))


TOKYO_CONFIG = {"timezone": "Asia/Tokyo", "business_hours": TOKYO_HOURS, "closed_dates": ["2026-12-02"]}


def test_hours_are_the_reseller_zone_not_the_servers() -> None:
    schedule = schedule_of(TOKYO_CONFIG)
    tuesday_open = datetime(2026, 12, 1, 10, 0, tzinfo=TOKYO)
    assert tuesday_open.astimezone(UTC).hour == 1  # 01:00 UTC: closed by the server's own clock
    assert schedule.is_open(tuesday_open.astimezone(UTC))
    assert TUESDAY_NIGHT.astimezone(UTC).hour == 12  # noon UTC: open by the server's own clock
    assert not schedule.is_open(TUESDAY_NIGHT.astimezone(UTC))
    assert schedule.is_open(datetime(2026, 12, 1, 17, 59, tzinfo=TOKYO))
    assert not schedule.is_open(datetime(2026, 12, 1, 18, 0, tzinfo=TOKYO))  # closing time is closed
    assert not schedule.is_open(datetime(2026, 12, 5, 11, 0, tzinfo=TOKYO))  # Saturday: no range


def test_a_closed_date_is_closed_all_day_and_one_closed_period_spans_it() -> None:
    schedule = schedule_of(TOKYO_CONFIG)
    holiday_morning = datetime(2026, 12, 2, 10, 0, tzinfo=TOKYO)
    assert not schedule.is_open(holiday_morning)
    tuesday_close = datetime(2026, 12, 1, 18, 0, tzinfo=TOKYO)
    # Tuesday 21:00 and the holiday's morning are one period: closed since Tuesday 18:00.
    assert schedule.closed_since(TUESDAY_NIGHT) == tuesday_close
    assert schedule.closed_since(holiday_morning) == tuesday_close
    assert schedule.closed_since(THURSDAY_MORNING) is None
    assert schedule.closed_since(THURSDAY_NIGHT) == datetime(2026, 12, 3, 18, 0, tzinfo=TOKYO)
    # Without the holiday, Wednesday morning is open.
    assert schedule_of({**TOKYO_CONFIG, "closed_dates": []}).is_open(holiday_morning)


def test_no_ranges_means_open_but_on_closed_dates_and_ranges_follow_daylight_saving() -> None:
    always = schedule_of({"timezone": "America/Sao_Paulo", "business_hours": [], "closed_dates": ["2026-12-25"]})
    assert always.is_open(datetime(2026, 12, 24, 23, 0, tzinfo=ZoneInfo("America/Sao_Paulo")))
    christmas = datetime(2026, 12, 25, 15, 0, tzinfo=ZoneInfo("America/Sao_Paulo"))
    assert not always.is_open(christmas)
    assert always.closed_since(christmas) == datetime(2026, 12, 25, 0, 0, tzinfo=ZoneInfo("America/Sao_Paulo"))
    everyday = [{"weekday": d, "open": "09:00", "close": "17:00"} for d in range(7)]
    new_york = schedule_of({"timezone": "America/New_York", "business_hours": everyday})
    # 09:00 on the wall is 14:00 UTC in winter and 13:00 UTC in summer.
    assert new_york.is_open(datetime(2026, 1, 15, 14, 0, tzinfo=UTC))
    assert not new_york.is_open(datetime(2026, 1, 15, 13, 30, tzinfo=UTC))
    assert new_york.is_open(datetime(2026, 7, 15, 13, 30, tzinfo=UTC))
    never = schedule_of({"timezone": "UTC", "business_hours": [], "closed_dates": []})
    assert never.closed_since(datetime(2026, 1, 1, tzinfo=UTC)) is None
    monday_hour = [{"weekday": 0, "open": "09:00", "close": "10:00"}]
    shut = schedule_of({"timezone": "Asia/Tokyo", "business_hours": monday_hour})
    far = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert shut.closed_since(far) == datetime(2026, 11, 30, 10, 0, tzinfo=TOKYO)
    assert shut.closed_since(far + timedelta(days=3)) == shut.closed_since(far)
    assert far > NEVER_OPEN


def test_a_range_that_closes_at_or_before_it_opens_runs_into_the_next_day() -> None:
    """A night shift ("22:00"–"02:00") and a close at midnight ("18:00"–"00:00") are one interval
    each, with no closed minute at midnight; the range belongs to the day it opens."""
    sp = ZoneInfo("America/Sao_Paulo")
    hours = [
        {"weekday": 0, "open": "22:00", "close": "02:00"},  # Monday night into Tuesday
        {"weekday": 1, "open": "18:00", "close": "00:00"},  # Tuesday evening to midnight
        {"weekday": 2, "open": "08:00", "close": "12:00"},
    ]
    schedule = schedule_of({"timezone": "America/Sao_Paulo", "business_hours": hours, "closed_dates": ["2026-12-09"]})
    monday = datetime(2026, 11, 30, tzinfo=sp).date()
    assert monday.weekday() == 0
    assert schedule.is_open(datetime(2026, 11, 30, 23, 59, 30, tzinfo=sp))
    assert schedule.is_open(datetime(2026, 12, 1, 0, 0, tzinfo=sp))  # past midnight: still Monday's shift
    assert schedule.is_open(datetime(2026, 12, 1, 1, 59, tzinfo=sp))
    assert not schedule.is_open(datetime(2026, 12, 1, 2, 0, tzinfo=sp))
    assert schedule.closed_since(datetime(2026, 12, 1, 9, 0, tzinfo=sp)) == datetime(2026, 12, 1, 2, 0, tzinfo=sp)
    assert schedule.is_open(datetime(2026, 12, 1, 23, 59, 59, tzinfo=sp))
    # Tuesday's evening ends at midnight; Wednesday opens at 08:00: one closed period between.
    closed_at = datetime(2026, 12, 2, 0, 0, tzinfo=sp)
    assert schedule.closed_since(datetime(2026, 12, 2, 7, 0, tzinfo=sp)) == closed_at
    assert schedule.is_open(datetime(2026, 12, 2, 8, 0, tzinfo=sp))
    # A closed date stops the ranges that open on it (Wednesday 9 Dec), not the night before's.
    assert schedule.is_open(datetime(2026, 12, 8, 23, 30, tzinfo=sp))  # Tuesday evening, open
    assert not schedule.is_open(datetime(2026, 12, 9, 9, 0, tzinfo=sp))


def test_one_renderer_for_the_variables_and_the_menu_and_answers() -> None:
    text = texts.render(
        "Olá {{cliente}}, aqui é a {{ empresa }}. Protocolo {{protocolo}}. {{outra}}",
        client="Maria",
        company="Loja Azul",
        protocol=42,
    )
    assert text == "Olá Maria, aqui é a Loja Azul. Protocolo 42. {{outra}}"
    assert texts.menu("Escolha:", ["Suporte", "Financeiro"]) == "Escolha:\n1 - Suporte\n2 - Financeiro"
    assert texts.menu("", ["Suporte"]).startswith(texts.DEFAULT_MENU_TEXT)
    assert texts.menu("Escolha:", ["Suporte"], repeat=True).startswith(texts.INVALID_PREFIX + "\nEscolha:")
    # "1." is an answer (test_answer_parsing.py has the forms read and refused).
    assert [texts.digit(b, highest=2) for b in ("1", " 2 ", "3", "0", "12", "1 x", "um", "", None)] == [
        1,
        2,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ]
