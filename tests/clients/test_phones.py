"""The canonical form of a client's phone key (backend/clients/phones.py): one form per WhatsApp
account, whichever of its numbers was typed or reported, and nothing merged beyond the pairs
Evolution and WhatsApp treat as one account."""

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from backend.clients.phones import key_form
from backend.clients.schemas import normalize_phone
from tests.fakes.evolution_fake import jid_for

DIGITS = "0123456789"
digits = st.text(alphabet=DIGITS, max_size=16)
ddd = st.from_regex(r"[1-9]{2}", fullmatch=True)  # no Brazilian area code has a 0
mobile8 = st.from_regex(r"[6-9][0-9]{7}", fullmatch=True)  # an eight-digit mobile before the ninth digit
landline8 = st.from_regex(r"[2-5][0-9]{7}", fullmatch=True)
national10 = st.from_regex(r"[0-9]{10}", fullmatch=True)  # Mexico's and Argentina's national numbers


def _other_form(number: str) -> str | None:
    """The documented second form of a number, spelled out by hand (not by the rule's regex)."""
    if len(number) == 12 and number.startswith("55") and "0" not in number[2:4] and number[4] in "6789":
        return number[:4] + "9" + number[4:]
    if len(number) == 13 and number[:3] in ("521", "549"):
        return number[:2] + number[3:]
    return None


@given(digits | st.text(max_size=16))
@example("553188887777")
@example("5215512345678")
def test_the_key_form_of_a_key_form_is_itself(number: str) -> None:
    assert key_form(key_form(number)) == key_form(number)


@given(ddd, mobile8)
@example("31", "88887777")  # Belo Horizonte: Evolution's createJid drops the 9 (DDD >= 31, 8xxx)
@example("11", "68887777")  # São Paulo, a 6xxx mobile: createJid keeps the 9, WhatsApp may not
def test_a_brazilian_mobile_with_and_without_the_ninth_digit_is_one_key(area: str, number: str) -> None:
    with_nine, without = f"55{area}9{number}", f"55{area}{number}"
    assert key_form(without) == key_form(with_nine) == with_nine


@given(ddd, landline8)
def test_a_landline_is_never_changed_nor_joined_to_the_mobile_with_a_nine_before_it(area: str, number: str) -> None:
    landline, newer_mobile = f"55{area}{number}", f"55{area}9{number}"
    assert key_form(landline) == landline
    assert key_form(newer_mobile) == newer_mobile != key_form(landline)


@given(st.sampled_from(["52", "54"]), national10)
def test_mexico_and_argentina_with_and_without_the_mobile_digit_are_one_key(country: str, number: str) -> None:
    marker = "1" if country == "52" else "9"
    assert key_form(f"{country}{marker}{number}") == key_form(f"{country}{number}") == f"{country}{number}"


@given(st.from_regex(r"(?!5[245])[0-9]{8,15}", fullmatch=True))
@example("447700900123")  # UK mobile: the shape of a Brazilian number without its 9, another country
@example("14155550123")
def test_numbers_of_other_countries_are_unchanged(number: str) -> None:
    assert key_form(number) == number


@pytest.mark.parametrize(
    "number",
    [
        "551088887777",  # DDD 10 does not exist
        "553018887777",  # 8 digits starting 1: no mobile
        "55318888777",  # 11 digits
        "55319888877770",  # 14 digits
        "5531888877777",  # 13 digits whose fifth is not a 9: a typo, not a form (Evolution would drop it)
        "5225512345678",  # 13-digit Mexican number without the mobile "1"
        "5231234567890",
        "54112345678",  # 11 digits
    ],
)
def test_numbers_that_are_no_second_form_are_unchanged(number: str) -> None:
    assert key_form(number) == number


@given(digits)
@example("553188887777")
@example("5491123456789")
def test_only_the_documented_pairs_share_a_key(number: str) -> None:
    """Every number whose key differs from it is the documented other form of that key, and a key
    is its own key: so a class holds at most the two forms of one number."""
    key = key_form(number)
    assert key == number or key == _other_form(number)


evolution_numbers = (
    st.builds(lambda a, n: f"55{a}9{n}", ddd, mobile8)
    | st.builds(lambda a, n: f"55{a}{n}", ddd, mobile8)
    | st.builds(lambda a, n: f"55{a}9{n}", ddd, landline8)
    | st.builds(lambda a, n: f"55{a}{n}", ddd, landline8)
    | st.builds(lambda c, n: f"{c}{n}", st.sampled_from(["52", "521", "54", "549"]), national10)
    | st.from_regex(r"(?!5[245])[1-9][0-9]{9,13}", fullmatch=True)
)


@given(evolution_numbers)
@example("5531988887777")
@example("5215512345678")
def test_the_jid_evolution_sends_a_number_to_has_the_numbers_key(number: str) -> None:
    """A client saved with `number` answers from the JID Evolution's createJid addressed (port in
    tests/fakes/evolution_fake.py `jid_for`): that JID's number finds the same key."""
    jid_number = jid_for(number).split("@")[0]
    assert key_form(jid_number) == key_form(number)


def test_a_number_typed_with_formatting_has_the_key_of_the_jid_without_the_nine() -> None:
    typed = normalize_phone("+55 (31) 9 8888-7777")
    assert typed == "5531988887777"  # the client's phone as typed, digits only
    assert key_form(typed) == key_form("553188887777") == "5531988887777"
