"""gw_sqlanalysis.mysql: lexing in a session's character set and sql_mode (the server's reading)."""

from __future__ import annotations

import pytest
from gw_sqlanalysis import Classifier
from gw_sqlanalysis.lexer import NUMBER, STRING
from gw_sqlanalysis.mysql import (
    MySQLMode,
    Unfollowable,
    decode_statement,
    lex_mysql,
    lexer_for,
    may_change_mode,
    session_mode,
)
from hypothesis import given
from hypothesis import strategies as st

GBK = MySQLMode("gbk")


def test_gbk_groups_the_backslash_into_the_character() -> None:
    raw = b"SELECT '\xbf\\'; DROP TABLE t; -- '"
    d = decode_statement(raw, GBK)
    assert d.ambiguous
    c = Classifier("mysql", lexer=lexer_for(GBK)).classify(d.analysis)
    assert c.verbs[0] == "drop"  # what the server runs
    naive = Classifier("mysql", lexer=lexer_for(MySQLMode())).classify(raw.decode("latin-1"))
    assert naive.verb == "select"  # what a reader without the character set would see


def test_gbk_text_without_ascii_trails_is_not_ambiguous() -> None:
    d = decode_statement("SELECT '中文', `表` FROM t".encode("gbk"), GBK)
    assert not d.ambiguous and "中文" in d.display


@pytest.mark.parametrize(("mode", "text", "tokens"), [
    (MySQLMode(), r"SELECT 'a\'b'", ["select", STRING]),
    (MySQLMode(backslash_escapes=False), r"SELECT 'a\'; DROP TABLE t; -- '",
     ["select", STRING, ";", "drop", "table", "t", ";"]),
    (MySQLMode(ansi_quotes=True), 'SELECT "a b" FROM t', ["select", "`a b`", "from", "t"]),
    (MySQLMode(), 'SELECT "a b" FROM t', ["select", STRING, "from", "t"]),
    (MySQLMode(), "SELECT 1 --\x7f\n; DELETE FROM t", ["select", NUMBER, ";", "delete", "from", "t"]),
    (MySQLMode("latin1"), "SELECT 1 --\udca0 x\n+1", ["select", NUMBER, "+", NUMBER]),
    (MySQLMode("cp1251"), "SELECT 1 --\x7f", ["select", NUMBER, "-", "-", "\x7f"]),
])
def test_modes(mode: MySQLMode, text: str, tokens: list[str]) -> None:
    assert lex_mysql(text, mode).tokens == tokens


def test_session_modes() -> None:
    assert session_mode("utf8mb4", "STRICT_TRANS_TABLES") == MySQLMode()
    assert session_mode("gbk", "NO_BACKSLASH_ESCAPES,ANSI_QUOTES") == MySQLMode("gbk", False, True)
    for cs, mode in (("utf16", ""), ("utf8mb4", "ORACLE"), ("utf8mb4", "PIPES_AS_CONCAT,MSSQL")):
        with pytest.raises(Unfollowable):
            session_mode(cs, mode)


@pytest.mark.parametrize(("sql", "changes"), [
    ("SET NAMES gbk", True), ("SET CHARACTER SET latin1", True), ("SET @@session.sql_mode = ''", True),
    ("SET sql_mode = 'ANSI'", True), ("SET STATEMENT sql_mode = '' FOR SELECT 1", True),
    ("SET @a = 1", False), ("SET autocommit = 0", False), ("SET SESSION TRANSACTION READ ONLY", False),
    ("CALL p()", True), ("EXECUTE s", True), ("BEGIN NOT ATOMIC SET NAMES gbk; END", True), ("BEGIN", False),
    ("SELECT 1", False), ("FROBNICATE", True),
])
def test_may_change_mode(sql: str, changes: bool) -> None:
    assert may_change_mode(lex_mysql(sql).tokens) is changes


@given(st.text(max_size=60))
def test_utf8_decoding_keeps_the_text(text: str) -> None:
    d = decode_statement(text.encode("utf-8"), MySQLMode())
    assert d.analysis == d.display == text and not d.ambiguous


@given(st.binary(max_size=60))
def test_any_bytes_in_gbk_never_raise(raw: bytes) -> None:
    d = decode_statement(raw, GBK)
    lex_mysql(d.analysis, GBK)
