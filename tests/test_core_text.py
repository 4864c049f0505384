"""gw.text: the one definition of what people see escaped (approvers, console users)."""

from __future__ import annotations

import pytest
from gw.text import escape_visible, is_hidden


def test_controls_bidi_zero_width_and_fillers_are_escaped() -> None:
    text = "rm -rf /data #\r\x1b[2Kls\u202e\u200bx\ufeff\x9b\u2066\u00ad\u3164\U000e0041\ue000\u2028"
    shown = escape_visible(text)
    assert shown == ("rm -rf /data #\\r\\x1b[2Kls\\u202e\\u200bx\\ufeff\\x9b\\u2066\\xad\\u3164\\U000e0041"
                     "\\ue000\\u2028")
    assert all(ch.isprintable() for ch in shown)


def test_printable_text_is_returned_as_it_is() -> None:
    for text in ("plain ascii", "ünïcode, 日本語, emoji 🙂", "non\u00a0breaking space", ""):
        assert escape_visible(text) == text


def test_kept_characters_stay() -> None:
    assert escape_visible("select 1\nfrom\tt") == "select 1\\nfrom\\tt"
    assert escape_visible("select 1\nfrom\tt", keep="\n") == "select 1\nfrom\\tt"
    assert escape_visible("select 1\nfrom\tt\r", keep="\n\t") == "select 1\nfrom\tt\\r"
    assert escape_visible("select 1\n\tfrom t", keep="\n\t") == "select 1\n\tfrom t"
    assert escape_visible("a\n\u3164\nb\u200b", keep="\n") == "a\n\\u3164\nb\\u200b"  # a kept one hides none


@pytest.mark.parametrize("ch", ["\x00", "\x7f", "\x85", "\u061c", "\u180e", "\u200d", "\u2069", "\ufff9",
                                "\u034f", "\uffa0", "\U000e007f", "\U0010fffe", "\u2029"])
def test_each_hidden_character_is_escaped(ch: str) -> None:
    assert is_hidden(ch)
    assert ch not in escape_visible(f"a{ch}b")
