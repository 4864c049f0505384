"""The key text and its verifier: generation, damage detection, and what the verifier binds."""

from __future__ import annotations

import re

import pytest
from gw_apikey import keys
from hypothesis import given
from hypothesis import strategies as st

PREFIX = "gwk_"


def test_generated_keys_parse_back_and_are_url_and_shell_safe() -> None:
    seen = set()
    for _ in range(50):
        text, parts = keys.generate(PREFIX)
        assert re.fullmatch(r"gwk_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}", text)
        assert keys.parse(text, PREFIX) == parts
        seen.add(parts.secret)
    assert len(seen) == 50


def test_every_single_character_change_is_caught_without_a_store_read() -> None:
    """CRC-32 detects every burst error up to 32 bits, so any one changed character is 'damaged'."""
    text, _ = keys.generate(PREFIX)
    for i in range(len(PREFIX), len(text)):
        for replacement in ("0", "z", "_", "-"):
            if text[i] == replacement:
                continue
            damaged = text[:i] + replacement + text[i + 1:]
            with pytest.raises(keys.MalformedKey):
                keys.parse(damaged, PREFIX)


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1],                      # truncated
    lambda t: t + "A",                     # extra character
    lambda t: t[:16] + t[17:],             # separator lost
    lambda t: "ci_" + t[4:],               # another prefix
    lambda t: t + "A" * 200,               # oversized
    lambda t: t[:20] + "é" + t[21:],       # not ASCII
    lambda t: "",
])
def test_damaged_keys_are_malformed(mangle: object) -> None:
    text, _ = keys.generate(PREFIX)
    with pytest.raises(keys.MalformedKey) as info:
        keys.parse(mangle(text), PREFIX)  # type: ignore[operator]
    assert text[len(PREFIX) + 13:] not in str(info.value)  # the message never quotes the secret


@given(st.text(max_size=120))
def test_arbitrary_text_is_either_a_key_or_malformed(text: str) -> None:
    try:
        parts = keys.parse(PREFIX + text, PREFIX)
    except keys.MalformedKey:
        return
    assert keys.is_key_id(parts.key_id)


def test_key_text_repr_hides_the_secret() -> None:
    _, parts = keys.generate(PREFIX)
    assert parts.secret not in repr(parts)
    assert parts.key_id in repr(parts)


def test_key_id_is_found_in_what_an_operator_types() -> None:
    text, parts = keys.generate(PREFIX)
    for typed in (parts.key_id, f"{PREFIX}{parts.key_id}", text, f"  {text}\n"):
        assert keys.key_id_from(typed, PREFIX) == parts.key_id
    for typed in ("", "short", text[:-1], "x" * 12 + "!", f"ci_{parts.key_id}"):
        assert keys.key_id_from(typed, PREFIX) is None


def test_verifier_binds_the_whole_grant_and_the_pepper() -> None:
    _, parts = keys.generate(PREFIX)
    grant = keys.Grant("ci-keys", parts.key_id, "ci-nightly", ["etl"], 1_900_000_000)
    stored = keys.verifier(parts.secret, grant, None)
    assert stored.startswith("sha256:") and parts.secret not in stored
    assert keys.matches(parts.secret, grant, stored, None)
    changed = [
        keys.Grant("other", parts.key_id, "ci-nightly", ["etl"], 1_900_000_000),
        keys.Grant("ci-keys", "A" * 12, "ci-nightly", ["etl"], 1_900_000_000),
        keys.Grant("ci-keys", parts.key_id, "root", ["etl"], 1_900_000_000),
        keys.Grant("ci-keys", parts.key_id, "ci-nightly", ["etl", "dba"], 1_900_000_000),
        keys.Grant("ci-keys", parts.key_id, "ci-nightly", ["etl"], 1_900_000_001),
    ]
    for other in changed:
        assert not keys.matches(parts.secret, other, stored, None), other
    assert not keys.matches(parts.secret[:-1] + "x", grant, stored, None)
    assert not keys.matches(parts.secret, grant, "", None)
    peppered = keys.verifier(parts.secret, grant, b"p" * 32)
    assert peppered.startswith("hmac-sha256:") and peppered != stored
    assert keys.matches(parts.secret, grant, peppered, b"p" * 32)
    assert not keys.matches(parts.secret, grant, peppered, b"q" * 32)
    assert keys.scheme_of(peppered) == "hmac-sha256" and keys.scheme_of("") == ""
