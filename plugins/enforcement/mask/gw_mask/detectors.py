"""The built-in detectors: find sensitive values in free text and validate them, so look-alikes stay visible.

Each detector follows :class:`gw.detect.Detector`: a ``name`` and ``find(text)`` returning ``(start, end)``
character spans.  Each also has the optional ``prefilter`` the mask stage understands: a flag-free regular
expression that matches somewhere in every text in which ``find`` can find something (a necessary condition,
never a sufficient one); the stage runs each distinct prefilter once per value and skips the detectors behind
it when it does not match.  The built-ins share :data:`BUILTIN_PREFILTER`, written so that the regex engine
only stops at digits, ``@`` and ``+`` (a top-level alternation would try every branch at every position).  They run on every text value of every result a mask stage scans, so each one starts with a
cheap regular expression (C speed, linear: no nested unbounded repetition) and validates candidates in Python
only when the expression matched.  Validation is the point: a 16-digit order number that fails the Luhn check,
``000-12-3456`` or an IBAN with wrong check digits are *not* masked, which keeps results useful to agents.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

Span = tuple[int, int]

#: Necessary condition of every built-in detector: ``@`` (e-mail); ``+`` and a digit (international phone);
#: or a digit followed by: the rest of ``123-45-6789``; seven more digits with at most one separator (SSN,
#: card numbers); ``415) 555`` / ``415-555`` (North American phone); or a digit after two letters (IBAN).
#: A digit is ``\d``, as in the detectors: the digits of every script (SQL can rewrite a text's digits).
BUILTIN_PREFILTER = re.compile(
    r"[\d@+](?:(?<=@)|(?<=\+)\d"
    r"|(?<=\d)(?:\d{2}[- ]\d{2}[- ]\d{4}|\d{3}[ -]?\d{4}|\d{2}[ .)-]{1,2}\d{3}|(?<=[A-Za-z]{2}\d)\d))")


def _character_class(c: int) -> int:
    if 0x30 <= c <= 0x39:
        return 0x30  # every digit -> 0
    if 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A:
        return 0x61  # every ASCII letter -> a
    if c in b"- .)":
        return 0x2D  # the separators the prefilter allows after two digits -> -
    if c in b"@+":
        return 0x40
    if c >= 0x80:
        # A byte of a non-ASCII character, which may be a digit of another script (``\d`` matches those):
        # counted as a digit, every character being at least two such bytes, so a run of digits in any
        # script stays at least as long a run of 0s.
        return 0x30
    return c


_CLASSES = bytes(_character_class(c) for c in range(256))
#: What :data:`BUILTIN_PREFILTER` needs, in classes: ``@`` or ``+``; two digits and a separator; eight digits
#: in a row; two letters and two digits.
_NEEDLES = (b"@", b"00-", b"00000000", b"aa00")


def builtin_may_match(data: bytes) -> bool:
    """A cheap necessary condition of :data:`BUILTIN_PREFILTER` for UTF-8 ``data``, which may be several values
    joined by NUL: True whenever the prefilter matches one of them.  Each branch of the prefilter needs an
    ``@`` or ``+``, two digits and a separator, eight digits in a row, or two letters and two digits; with
    every character replaced by its class those are four substring tests (C speed, no regex engine), and none
    of them can match across a NUL."""
    classes = data.translate(_CLASSES)
    for needle in _NEEDLES:
        if needle in classes:
            return True
    return False


def builtin_hits(data: bytes) -> list[int]:
    """Where in ``data`` (values joined by NUL, as for :func:`builtin_may_match`) what the prefilter needs
    starts: at least one position inside every value the prefilter may match, none in the others."""
    classes = data.translate(_CLASSES)
    hits = []
    for needle in _NEEDLES:
        at = classes.find(needle)
        while at >= 0:
            hits.append(at)
            end = classes.find(b"\0", at)  # one hit per value is enough: go on from the next one
            if end < 0:
                break
            at = classes.find(needle, end)
    return hits


@dataclass(frozen=True, slots=True)
class QuickCheck:
    """A necessary condition of a prefilter that judges many UTF-8 values joined by NUL in one pass (see
    :func:`builtin_may_match`): ``may_match`` whether any of them may match, ``hits`` positions in the data
    that point out every value that may (and no other)."""

    may_match: Callable[[bytes], bool]
    hits: Callable[[bytes], list[int]]


#: Prefilters with a quick check.
QUICK_CHECKS: dict[re.Pattern[str], QuickCheck] = {BUILTIN_PREFILTER: QuickCheck(builtin_may_match, builtin_hits)}


# ---------------------------------------------------------------------------------------------------------------
# US Social Security numbers
# ---------------------------------------------------------------------------------------------------------------

#: ``123-45-6789`` / ``123 45 6789`` (one separator, used twice; not part of a longer digit/dash run), or nine
#: bare digits right after a label that says what they are ("SSN: 123456789", "ssn=123456789", "social
#: security number 123456789").  Bare nine-digit numbers without a label are mostly order ids, ZIP+4 codes and
#: account numbers, so masking every one would bury results in false positives.
_SSN = re.compile(
    r"(?<!\d)(?<!\d-)(\d{3})([- ])(\d{2})\2(\d{4})(?!\d)(?!-\d)"
    r"|(?i:(?<![a-z])(?:ssn|ss\s?#|ss\s?no\.?|social[\s_-]?security(?:[\s_-]?(?:number|num|no\.?|#))?)"
    r"(?:[\s_-]?(?:number|num|no))?[\s:=#\"'-]{0,5})(\d{9})(?!\d)")


def ssn_parts_valid(area: str, group: str, serial: str) -> bool:
    """The Social Security Administration never issues area 000, 666 or 900-999, group 00 or serial 0000."""
    a = int(area)
    return a != 0 and a != 666 and a < 900 and group != "00" and serial != "0000"


class UsSsn:
    """US Social Security numbers with area/group/serial validity (see :func:`ssn_parts_valid`)."""

    name = "us_ssn"
    prefilter = BUILTIN_PREFILTER

    def find(self, text: str) -> list[Span]:
        spans = []
        for m in _SSN.finditer(text):
            bare = m.group(5)
            if bare is None:
                if ssn_parts_valid(m.group(1), m.group(3), m.group(4)):
                    spans.append(m.span())
            elif ssn_parts_valid(bare[:3], bare[3:5], bare[5:]):
                spans.append(m.span(5))
        return spans


# ---------------------------------------------------------------------------------------------------------------
# Payment card numbers
# ---------------------------------------------------------------------------------------------------------------

#: 13-19 contiguous digits, or the printed groupings: 4-4-4(-4)(-1..4) and Amex/Diners 4-6-5 / 4-6-4.
_CARD = re.compile(
    r"(?<!\d)(?:\d{13,19}|\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,4})?|\d{4}[ -]\d{6}[ -]\d{4,5})(?!\d)")
_SEPARATORS = re.compile(r"[ -]")

_ANY = tuple(range(12, 20))
_LONG = tuple(range(16, 20))
#: Public issuer identification number (IIN) ranges: (low, high, number of leading digits, valid lengths).
#: A Luhn-valid number outside every range (a 16-digit id starting with 1, 7 or 9) is not a card.
_IIN_RANGES: tuple[tuple[int, int, int, tuple[int, ...]], ...] = (
    (4, 4, 1, (13, 16, 19)),           # Visa
    (51, 55, 2, (16,)),                # Mastercard
    (2221, 2720, 4, (16,)),            # Mastercard 2-series
    (34, 34, 2, (15,)),                # American Express
    (37, 37, 2, (15,)),
    (300, 305, 3, (14, *_LONG)),       # Diners Club
    (36, 36, 2, (14, *_LONG)),
    (38, 39, 2, (14, *_LONG)),
    (6011, 6011, 4, _LONG),            # Discover
    (644, 649, 3, _LONG),
    (65, 65, 2, _LONG),
    (3528, 3589, 4, _LONG),            # JCB
    (62, 62, 2, _LONG),                # UnionPay
    (2200, 2204, 4, _LONG),            # Mir
    (50, 50, 2, _ANY),                 # Maestro
    (56, 58, 2, _ANY),
    (639, 639, 3, _ANY),
    (67, 67, 2, _ANY),
    (60, 60, 2, (16,)),                # RuPay
    (81, 82, 2, (16,)),
    (508, 508, 3, (16,)),
)


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check every payment card number carries in its last digit."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def plausible_iin(digits: str) -> bool:
    """Whether the leading digits and the length fit a known card scheme."""
    n = len(digits)
    for low, high, width, lengths in _IIN_RANGES:
        if n in lengths and low <= int(digits[:width]) <= high:
            return True
    return False


def card_number_valid(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and plausible_iin(digits) and luhn_valid(digits)


class CreditCard:
    """Payment card numbers: 13-19 digits (optionally grouped by spaces or dashes), Luhn-valid, with an issuer
    prefix that fits a known scheme."""

    name = "credit_card"
    prefilter = BUILTIN_PREFILTER

    def find(self, text: str) -> list[Span]:
        spans = []
        for m in _CARD.finditer(text):
            start, end = m.span()
            candidate = m.group()
            if card_number_valid(_SEPARATORS.sub("", candidate)):
                spans.append((start, end))
                continue
            # "4111 1111 1111 1111 2024": the grouped form may have swallowed a trailing group that is not
            # part of the number; try once without it.
            cut = max(candidate.rfind(" "), candidate.rfind("-"))
            if cut > 0 and card_number_valid(_SEPARATORS.sub("", candidate[:cut])):
                spans.append((start, start + cut))
        return spans


# ---------------------------------------------------------------------------------------------------------------
# E-mail addresses
# ---------------------------------------------------------------------------------------------------------------

_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-'")
#: Domain: dot-separated labels (letters/digits/hyphens, not at a label's ends), then a top-level domain of
#: letters (or an IDN ``xn--`` label).  Unicode letters count as letters.
_DOMAIN = re.compile(r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.){1,8}(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59})(?![\w-])",
                     re.IGNORECASE)


class Email:
    """E-mail addresses (``local@domain.tld``).  Scans from each ``@`` outwards, so the cost is linear in the
    text and zero for text without ``@``."""

    name = "email"
    prefilter = BUILTIN_PREFILTER

    def find(self, text: str) -> list[Span]:
        spans: list[Span] = []
        at = text.find("@")
        while at >= 0:
            m = _DOMAIN.match(text, at + 1) if at else None
            if m is not None:
                start = at
                floor = max(0, at - 64)
                while start > floor and (text[start - 1] in _LOCAL_CHARS or text[start - 1].isalnum()):
                    start -= 1
                while start < at and text[start] == ".":  # a sentence's full stop is not part of the address
                    start += 1
                local = text[start:at]
                if local and not local.endswith(".") and ".." not in local:
                    spans.append((start, m.end()))
            at = text.find("@", at + 1)
        return spans


# ---------------------------------------------------------------------------------------------------------------
# IBAN
# ---------------------------------------------------------------------------------------------------------------

#: Total IBAN length per country (ISO 13616 registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})(\d{2})")


def iban_valid(iban: str) -> bool:
    """ISO 13616 / ISO 7064 check: known country, its exact length, check digits 02-98, mod 97 == 1."""
    iban = iban.upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum() or not 2 <= int(iban[2:4]) <= 98:
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


class Iban:
    """International bank account numbers, electronic (``DE89370400440532013000``) or printed in groups
    (``DE89 3704 0044 0532 0130 00``): country code, check digits, the country's length, mod 97 == 1."""

    name = "iban"
    prefilter = BUILTIN_PREFILTER

    def find(self, text: str) -> list[Span]:
        spans = []
        n = len(text)
        for m in _IBAN_START.finditer(text):
            length = IBAN_LENGTHS.get(m.group(1).upper())
            if length is None:
                continue
            # Collect exactly the country's number of characters, allowing single spaces between groups, so
            # text right after the IBAN ("... 0130 00 EUR") is never taken for part of it.
            chars = [m.group(1), m.group(2)]
            need = length - 4
            pos = m.end()
            while need and pos < n:
                c = text[pos]
                if c.isascii() and c.isalnum():
                    chars.append(c)
                    need -= 1
                    pos += 1
                elif c == " " and pos + 1 < n and text[pos + 1].isascii() and text[pos + 1].isalnum():
                    pos += 1
                else:
                    break
            if need or (pos < n and text[pos].isascii() and text[pos].isalnum()):
                continue
            if iban_valid("".join(chars)):
                spans.append((m.start(), pos))
        return spans


# ---------------------------------------------------------------------------------------------------------------
# Phone numbers (conservative)
# ---------------------------------------------------------------------------------------------------------------

#: International form: ``+`` then digit groups separated by one space, dot or dash, optionally one group in
#: parentheses: ``+14155552671``, ``+1 (415) 555-2671``, ``+44 20 7946 0958``.  Possessive quantifiers keep
#: the match linear.
_PHONE_INTERNATIONAL = re.compile(r"(?<![\w+])\+[1-9]\d*+(?:(?:[ .-]?\(\d++\)[ .-]?|[ .-])\d++)*+(?!\w)")
#: North American numbers with separators: ``(415) 555-2671``, ``415-555-2671``, ``415.555.2671``; area code
#: and exchange start with 2-9.  Ten bare digits are not matched (too many ids look like that).
_PHONE_NANP = re.compile(
    r"(?<![\w+(.-])(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .-])[2-9]\d{2}[ .-]\d{4}(?!\w)(?![.-]\d)")


class Phone:
    """Phone numbers in E.164 / international notation (8-15 digits after ``+``) or North American notation
    with separators.  Conservative on purpose: bare digit runs are left alone."""

    name = "phone"
    prefilter = BUILTIN_PREFILTER

    def find(self, text: str) -> list[Span]:
        spans = []
        for m in _PHONE_INTERNATIONAL.finditer(text):
            digits = sum(c.isdigit() for c in m.group())
            if 8 <= digits <= 15:
                spans.append(m.span())
        for m in _PHONE_NANP.finditer(text):
            start, end = m.span()
            # "+1 (415) 555-2671" also holds a North American number; report the number once.
            if not any(s <= start and end <= e for s, e in spans):
                spans.append((start, end))
        return spans


BUILTIN_DETECTORS = (UsSsn(), CreditCard(), Email(), Iban(), Phone())
