"""What approvers read is what would run: invisible characters escaped, parameter values shown, redacted."""

from __future__ import annotations

from gw.model import Command, Identity, Session
from gw.text import escape_visible
from gw_approve.stage import match_key
from gw_approve.text import param_text, params_text, snippet


def test_controls_bidi_and_zero_width_are_escaped() -> None:
    text = "rm -rf /data #\r\x1b[2Kls\u202e\u200bx\ufeff\x9b"
    shown = escape_visible(text)
    assert shown == "rm -rf /data #\\r\\x1b[2Kls\\u202e\\u200bx\\ufeff\\x9b"
    assert all(ch.isprintable() for ch in shown)
    assert escape_visible("select 1\nfrom t", keep="\n") == "select 1\nfrom t"
    assert escape_visible("plain ascii and ünïcode") == "plain ascii and ünïcode"
    one_line = snippet("delete\n\tfrom t\r where x = 1")
    assert one_line == "delete from t\\r where x = 1"


def test_parameters_as_text() -> None:
    assert param_text(999999) == "999999" and param_text(b"\x00\x1b") == "\\x001b" and param_text(True) == "true"
    assert params_text(["999999", None, "it's"]) == "$1 = '999999', $2 = NULL, $3 = 'it''s'"
    assert params_text({"id": "7", "note": "a\x1bb"}) == "id = '7', note = 'a\\x1bb'"


def test_an_approval_is_bound_to_the_parameter_values() -> None:
    session = Session("s", "l", "postgres", Identity("a"), "127.0.0.1:1", "u", 0.0)
    text = "update payments set amount = $1 where id = $2"
    one = Command(session, 1, text, "sql", params=("10", "7"))
    same = Command(session, 2, text, "sql", params=("10", "7"))
    other = Command(session, 3, text, "sql", params=("999999", "7"))
    typed = Command(session, 4, text, "sql", params=(10, "7"))
    assert match_key(one) == match_key(same)
    assert match_key(one) != match_key(other) and match_key(one) != match_key(typed)
