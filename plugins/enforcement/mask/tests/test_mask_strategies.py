"""Strategies: what a masked value becomes."""

from __future__ import annotations

import re

import pytest
from gw_mask.strategies import Hash, Null, Partial, Redact, make_strategy

KEY_A = b"k" * 32
KEY_B = b"j" * 32


def test_redact_hides_the_value_and_its_length() -> None:
    assert Redact().mask("123-45-6789") == "***"
    assert Redact().mask_bytes(b"x" * 100) == b"***"


@pytest.mark.parametrize("value, expected", [
    ("123-45-6789", "***-**-6789"),
    ("4111 1111 1111 1111", "**** **** **** 1111"),
    ("alice@example.com", "*****@******e.com"),
    ("1234567", "*******"),  # fewer than 8 letters/digits: nothing shown
    ("12345678", "****5678"),
    ("", ""),
])
def test_partial_keeps_the_last_four_only_when_enough_stays_hidden(value: str, expected: str) -> None:
    assert Partial().mask(value) == expected


def test_partial_on_wire_values_keeps_invalid_utf8_intact() -> None:
    assert Partial().mask_bytes(b"\xff\xfe12345678") == b"\xff\xfe****5678"


def test_hash_is_stable_within_a_key_and_differs_across_keys() -> None:
    a1, a2, b = Hash(KEY_A), Hash(KEY_A), Hash(KEY_B)
    token = a1.mask("123-45-6789")
    assert re.fullmatch(r"h:[0-9a-f]{16}", token)
    assert a2.mask("123-45-6789") == token  # another stage instance, same key: joins still work
    assert a1.mask_bytes(b"123-45-6789") == token.encode()  # column values and detected spans agree
    assert a1.mask("123-45-6788") != token
    assert b.mask("123-45-6789") != token
    assert "6789" not in token


def test_null_nulls_values_and_redacts_spans() -> None:
    assert Null().mask_bytes(b"123-45-6789") is None
    assert Null().mask("123-45-6789") == "***"  # inside a longer text a NULL cannot stand


def test_hash_needs_a_key() -> None:
    with pytest.raises(ValueError, match="hash_key_env"):
        make_strategy("hash", None)
