"""The one reading of a client's number answer (texts.digit), used by the menu and the survey:
the number alone, with spaces, one trailing mark or the keycap emoji; never a crash, whatever
the text (a raise there fails the webhook delivery for good and the message is never stored)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.automation import texts
from backend.automation.service import rating_of


@pytest.mark.parametrize("body", ["2", " 2 ", "2.", "2)", "2 -", "2-", "2:", "2️⃣", "2\u20e3", "\t2 .\n"])
def test_a_number_alone_with_one_mark_or_the_keycap_is_an_answer(body: str) -> None:
    assert texts.digit(body, highest=3) == 2
    assert rating_of(body) == 2


@pytest.mark.parametrize("body", ["２", "٢", "𝟐"])  # other scripts' decimal digits: int() reads them
def test_decimal_digits_of_other_scripts_are_read(body: str) -> None:
    assert texts.digit(body, highest=3) == 2


@pytest.mark.parametrize(
    "body",
    [
        "²", "¹", "③", "①", "³", "½", "Ⅻ", "⑴", "⒈",  # isdigit() or numeric, but int() refuses them
        "2 boletos atrasados", "1 - Suporte", "opção 1", "um", "nota 5",  # a number with words is a message
        "2..", "2.)", "2 - -", "-2", "+2", "2.5", "2️⃣2", "22️⃣", "0", "02", "4", "99999999999999999999", "", "   ",
    ],
)  # fmt: skip
def test_anything_else_is_not_an_answer(body: str) -> None:
    assert texts.digit(body, highest=3) is None


def test_ratings_are_1_to_5() -> None:
    assert [rating_of(str(n)) for n in range(7)] == [None, 1, 2, 3, 4, 5, None]
    assert rating_of(None) is None


@given(st.text())
def test_no_text_raises(body: str) -> None:
    for highest in (1, 5, 9):
        found = texts.digit(body, highest=highest)
        assert found is None or 1 <= found <= highest
