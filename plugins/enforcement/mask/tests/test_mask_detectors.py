"""The built-in detectors: what they find, and the look-alikes they must leave alone."""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate

import pytest
from gw.detect import Detector
from gw_mask.detectors import (
    BUILTIN_DETECTORS,
    BUILTIN_PREFILTER,
    CreditCard,
    Email,
    Iban,
    Phone,
    UsSsn,
    builtin_hits,
    builtin_may_match,
    iban_valid,
    luhn_valid,
)
from hypothesis import given
from hypothesis import strategies as st


def found(detector: Detector, text: str) -> list[str]:
    return [text[s:e] for s, e in detector.find(text)]


def test_every_builtin_satisfies_the_core_detector_contract() -> None:
    assert [d.name for d in BUILTIN_DETECTORS] == ["us_ssn", "credit_card", "email", "iban", "phone"]
    assert all(isinstance(d, Detector) for d in BUILTIN_DETECTORS)


# -- us_ssn -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("SSN 123-45-6789 on file", ["123-45-6789"]),
    ("ssn 123 45 6789", ["123 45 6789"]),
    ("a: 078-05-1120, b: 899-99-9999", ["078-05-1120", "899-99-9999"]),
    ("SSN: 123456789", ["123456789"]),
    ('{"ssn": "123456789"}', ["123456789"]),
    ("social security number 219099999", ["219099999"]),
])
def test_ssn_found(text: str, expected: list[str]) -> None:
    assert found(UsSsn(), text) == expected


@pytest.mark.parametrize("text", [
    "000-12-3456",  # area 000 is never issued
    "666-12-3456",  # area 666 is never issued
    "900-12-3456", "999-12-3456",  # 900-999 are not SSN areas
    "123-00-4567",  # group 00
    "123-45-0000",  # serial 0000
    "123-45 6789", "123 45-6789",  # mixed separators
    "order 123456789",  # bare nine digits without a label
    "1123-45-6789", "123-45-67890", "9-123-45-6789-1",  # part of a longer number
    "SSN: 000123456",  # labelled, but invalid area
    "call 555-123-4567",  # a phone number's 3-3-4 shape
])
def test_ssn_look_alikes_are_not_found(text: str) -> None:
    assert found(UsSsn(), text) == []


# -- credit_card --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("visa 4111111111111111.", ["4111111111111111"]),
    ("visa 4111 1111 1111 1111 exp 12/30", ["4111 1111 1111 1111"]),
    ("mc 5555-5555-5555-4444", ["5555-5555-5555-4444"]),
    ("mc2 2223003122003222", ["2223003122003222"]),
    ("amex 3782 822463 10005 and 371449635398431", ["3782 822463 10005", "371449635398431"]),
    ("discover 6011111111111117", ["6011111111111117"]),
    ("jcb 3530111333300000", ["3530111333300000"]),
    ("diners 30569309025904", ["30569309025904"]),
    ("visa13 4222222222222", ["4222222222222"]),
    ("4111 1111 1111 1111 2024", ["4111 1111 1111 1111"]),  # a trailing group that is not part of it
    ("x4111111111111111y", ["4111111111111111"]),
])
def test_card_found(text: str, expected: list[str]) -> None:
    assert found(CreditCard(), text) == expected


@pytest.mark.parametrize("text", [
    "4111111111111112",  # Luhn-invalid 16 digits
    "4111 1111 1111 1112",
    "1234567812345670",  # Luhn-valid, but no card scheme starts with 1
    "0000000000000000",  # Luhn-valid zeros
    "41111111111111111111",  # 20 digits: longer than any card
    "411111111111",  # 12 digits: too short
    "7111111111111114",  # Luhn-valid, no scheme starts with 7
])
def test_card_look_alikes_are_not_found(text: str) -> None:
    assert found(CreditCard(), text) == []


def test_luhn() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


# -- email --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("mail alice@example.com.", ["alice@example.com"]),
    ("<bob.smith+tag@mail.example.co.uk>", ["bob.smith+tag@mail.example.co.uk"]),
    ("o'brien@example.ie", ["o'brien@example.ie"]),
    ("jürgen@exämple.de", ["jürgen@exämple.de"]),
    ("@handle then carol@example.org", ["carol@example.org"]),
    ("a@b.io,c@d.io", ["a@b.io", "c@d.io"]),
])
def test_email_found(text: str, expected: list[str]) -> None:
    assert found(Email(), text) == expected


@pytest.mark.parametrize("text", [
    "user@localhost", "a..b@example.com", "trailing.@example.com", "@example.com", "x@y", "foo@bar.c",
    "root@host:~$ ", "version 1.2@3.4",
])
def test_email_look_alikes_are_not_found(text: str) -> None:
    assert found(Email(), text) == []


def test_email_scan_is_linear_on_hostile_input() -> None:
    text = "a" * 200_000 + "@"
    assert found(Email(), text) == []


# -- iban ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("pay to DE89 3704 0044 0532 0130 00 EUR", ["DE89 3704 0044 0532 0130 00"]),
    ("GB82WEST12345698765432", ["GB82WEST12345698765432"]),
    ("fr1420041010050500013m02606", ["fr1420041010050500013m02606"]),
    ("NO9386011117947 and BE68539007547034", ["NO9386011117947", "BE68539007547034"]),
])
def test_iban_found(text: str, expected: list[str]) -> None:
    assert found(Iban(), text) == expected


@pytest.mark.parametrize("text", [
    "DE88 3704 0044 0532 0130 00",  # wrong check digits
    "DE89 3704 0044 0532 0130 0",  # one character short for Germany
    "DE89370400440532013000X",  # runs on
    "ZZ89370400440532013000",  # no such country
    "AB12 order",
])
def test_iban_look_alikes_are_not_found(text: str) -> None:
    assert found(Iban(), text) == []


def test_iban_check() -> None:
    assert iban_valid("GB82WEST12345698765432")
    assert not iban_valid("GB00WEST12345698765432")


# -- phone --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("call +1 (415) 555-2671 now", ["+1 (415) 555-2671"]),
    ("+14155552671", ["+14155552671"]),
    ("uk +44 20 7946 0958.", ["+44 20 7946 0958"]),
    ("(415) 555-2671 or 415.555.2671 or 415-555-2671", ["(415) 555-2671", "415.555.2671", "415-555-2671"]),
])
def test_phone_found(text: str, expected: list[str]) -> None:
    assert found(Phone(), text) == expected


@pytest.mark.parametrize("text", [
    "4155552671",  # bare ten digits: too many ids look like that
    "123-456-7890",  # area code cannot start with 1
    "415-155-2671",  # exchange cannot start with 1
    "2024-01-15", "10.20.30.40", "+123", "+1234567890123456",  # too short / too long for E.164
    "v1.415.555.2671.3",
])
def test_phone_look_alikes_are_not_found(text: str) -> None:
    assert found(Phone(), text) == []


# -- the shared prefilter ----------------------------------------------------------------------------------------

CORPUS = [
    "SSN 123-45-6789", "ssn: 123456789", "4111 1111 1111 1111", "3782 822463 10005", "4222222222222",
    "alice@example.com", "DE89 3704 0044 0532 0130 00", "de89370400440532013000", "+1 (415) 555-2671",
    "(415)555-2671", "415.555.2671", "+44 20 7946 0958", "NO9386011117947", "Customer 17", "no digits here",
]


@pytest.mark.parametrize("text", CORPUS)
def test_prefilter_never_hides_a_finding(text: str) -> None:
    """The prefilter is a necessary condition: wherever any built-in finds something, it matches."""
    if any(d.find(text) for d in BUILTIN_DETECTORS):
        assert BUILTIN_PREFILTER.search(text) is not None


#: Zero of scripts whose digits Python's ``\d`` (which the detectors use) matches.  SQL can move a text's digits
#: into any of them: ``translate(notes, '0123456789', '٠١٢٣٤٥٦٧٨٩')``.
DIGIT_ZEROS = {"arabic-indic": 0x0660, "fullwidth": 0xFF10, "devanagari": 0x0966}


@pytest.mark.parametrize("script", DIGIT_ZEROS)
@pytest.mark.parametrize("text", CORPUS)
def test_prefilter_never_hides_a_finding_in_another_scripts_digits(text: str, script: str) -> None:
    """Whatever a detector finds once the digits are another script's, the prefilter (and the quick check
    before it) still matches: neither may hide a finding the detector would make."""
    moved = text.translate({0x30 + i: DIGIT_ZEROS[script] + i for i in range(10)})
    if any(d.find(moved) for d in BUILTIN_DETECTORS):
        assert BUILTIN_PREFILTER.search(moved) is not None
        assert builtin_may_match(moved.encode())


def test_an_ssn_in_arabic_indic_digits_is_found_behind_the_prefilter() -> None:
    text = "SSN \u0661\u0662\u0663-\u0664\u0665-\u0666\u0667\u0668\u0669"
    [ssn] = [d for d in BUILTIN_DETECTORS if d.name == "us_ssn"]
    assert found(ssn, text) == [text[4:]]
    assert BUILTIN_PREFILTER.search(text) is not None


def test_prefilter_rejects_ordinary_text() -> None:
    for text in ("Customer 17", "called about order 12345, all fine", "Lorem ipsum dolor sit amet"):
        assert BUILTIN_PREFILTER.search(text) is None


#: ASCII digits, letters and separators, and non-ASCII characters: digits of other scripts (Arabic-Indic,
#: fullwidth, Devanagari), a letter, a CJK character, an emoji.
QUICK_ALPHABET = "0123456789aZx -.)(@+_:" + "\u0662\u0663\uff14\u0967\u00e9\u540d\U0001f600"


@given(st.lists(st.text(alphabet=QUICK_ALPHABET, max_size=24), min_size=1, max_size=4))
def test_the_quick_check_never_hides_what_the_prefilter_matches(values: list[str]) -> None:
    """The quick check judges several values joined at once, ASCII or not: whenever the prefilter matches any
    one of them (so a detector might find something), it says so, and its hits point that value out."""
    data = b"\0".join(v.encode() for v in values)
    ends = list(accumulate(len(v.encode()) + 1 for v in values))
    pointed = {bisect_right(ends, at) for at in builtin_hits(data)}
    for i, v in enumerate(values):
        if BUILTIN_PREFILTER.search(v):
            assert builtin_may_match(data)
            assert i in pointed
    assert bool(pointed) == builtin_may_match(data)


@pytest.mark.parametrize("text", CORPUS)
def test_the_quick_check_passes_every_finding(text: str) -> None:
    if BUILTIN_PREFILTER.search(text):
        assert builtin_may_match(b"name\0" + text.encode() + b"\0" + b"x")


def test_the_quick_check_rejects_ordinary_rows() -> None:
    assert not builtin_may_match(b"name 123456\0free text note number 1234567\0Customer 17")
    # a value ending in two digits next to one starting with a separator is not a finding
    assert not builtin_may_match(b"ref 12\0-note")
