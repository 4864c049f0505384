"""The lexer: fingerprints, the PostgreSQL and MySQL scanner rules that decide statement boundaries, and
properties over arbitrary text (never raises, idempotent, fast path == full scanner)."""

from __future__ import annotations

import pytest
from gw_sqlanalysis import count_statements, fingerprint
from gw_sqlanalysis.lexer import NUMBER, STRING, _pg_fast_tokens, _PgScanner, decode_unicode_escapes, lex
from hypothesis import example, given, settings
from hypothesis import strategies as st


@pytest.mark.parametrize(("text", "expected"), [
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
     "select abalance from pgbench_accounts where aid = ? ;"),
    ("select  *\n\tFROM t where a='x' and b=1.5e3", "select * from t where a = ? and b = ?"),
    ("SELECT /* c */ a -- d\n FROM t", "select a from t"),
    ('SELECT "MixedCase", "with ""quote""" FROM "T"', 'select "MixedCase" , "with ""quote""" from "T"'),
    ("SELECT E'a\\'b', $x$ y $x$, $$z$$, B'01', X'1F', N'n', U&'\\0041'", "select ? , ? , ? , ? , ? , ? , ?"),
    ("SELECT 'a'\n  'b'", "select ?"),
    ("SELECT 'a' 'b'", "select ? ?"),
    ("SELECT $1, $2::int", "select $1 , $2 :: int"),
    ("SELECT a=-1, b<>+2, c@-3", "select a = - ? , b <> + ? , c @- ?"),
    ("x *//* c */ y", "x */ y"),
    ('SELECT U&"d!0061t!+000061" UESCAPE \'!\'', 'select "data"'),
    ("SELECT 1 /* unterminated", ""),
    ("", ""),
])
def test_postgres_fingerprints(text: str, expected: str) -> None:
    assert fingerprint(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("SELECT a FROM `T` WHERE b = 'x' AND c = \"y\"", "select a from `T` where b = ? and c = ?"),
    ("select 1 # comment\n, 2 -- comment\n", "select ? , ?"),
    ("select 1--1", "select ? - - ?"),
    ("SELECT @@global.x, @v, ?", "select @@global.x , @v , ?"),
    ("SELECT Data FROM Orders", "select Data from Orders"),  # not reserved: MySQL table names keep case
])
def test_mysql_fingerprints(text: str, expected: str) -> None:
    assert fingerprint(text, "mysql") == expected


def test_literals_do_not_change_the_fingerprint() -> None:
    texts = ["SELECT * FROM t WHERE a = 1 AND b = 'x'", "select * from t where a = 99 and b = $q$it's$q$",
             "SELECT * FROM t WHERE a = 1e10 AND b = E'\\n' -- trailing"]
    assert len({fingerprint(t) for t in texts}) == 1


def test_nested_comments_follow_postgres_not_mysql() -> None:
    text = "/* a /* b */ c */ SELECT 1; /* x */ DROP TABLE t"
    assert count_statements(text) == 2
    assert fingerprint(text) == "select ? ; drop table t"
    # MySQL does not nest: "c */ SELECT 1" is code there (and not valid SQL)
    assert fingerprint("/* a /* b */ c */ SELECT 1", "mysql") == "c * / select ?"


def test_dollar_quote_tags_must_match_exactly() -> None:
    assert count_statements("SELECT $a$ $b$ ; $A$ ; $a$; SELECT 2") == 2
    assert count_statements("SELECT x$$ ; SELECT 2") == 2  # $ inside an identifier is not a quote
    assert lex("SELECT $a$ never closed").error == "unterminated dollar-quoted string"


def test_semicolons_inside_parentheses_do_not_split() -> None:
    assert count_statements("CREATE RULE r AS ON INSERT TO t DO ALSO (SELECT 1; SELECT 2)") == 1
    assert count_statements("SELECT 1; ; ;SELECT 2;") == 2
    assert count_statements("'unterminated") == -1


def test_backslash_in_plain_strings_is_ambiguous_only_when_boundaries_move() -> None:
    assert lex(r"SELECT 'C:\path', '\d+'").flags == set()
    assert lex("SELECT 'a\\'; DROP TABLE t; --'").flags == {"ambiguous_quoting"}
    assert lex("SELECT E'a\\'; DROP TABLE t; --'").flags == set()  # E'' strings always take escapes
    assert lex("SELECT 'it''s'", "mysql").flags == set()
    assert lex("SELECT 'a\\'b'", "mysql").flags == {"ambiguous_quoting"}


def test_unicode_escape_decoding() -> None:
    assert decode_unicode_escapes("d\\0061t\\+000061") == "data"
    assert decode_unicode_escapes("d!0061!!", "!") == "da!"
    assert decode_unicode_escapes("\\D83D\\DE00") == "\U0001F600"
    for bad in ("\\00", "\\zzzz", "\\D83D", "\\DE00", "\\0000", "\\+110000"):
        with pytest.raises(Exception, match="(?i)unicode|surrogate"):
            decode_unicode_escapes(bad)


@pytest.mark.parametrize("bad", [
    "SELECT U&'x' UESCAPE 'ab'", "SELECT U&'x' UESCAPE '+'", 'SELECT ""', "SELECT `` FROM t",
    "SELECT 'a", 'SELECT "a', "SELECT E'a\\", "SELECT B'01", "SELECT /* /* */", "SELECT 1\x00",
])
def test_unlexable_text_reports_an_error(bad: str) -> None:
    dialect = "mysql" if "`" in bad else "postgres"
    assert lex(bad, dialect).error


def test_fast_path_is_taken_for_plain_statements() -> None:
    assert _pg_fast_tokens("SELECT abalance FROM pgbench_accounts WHERE aid = 1;") == [
        "select", "abalance", "from", "pgbench_accounts", "where", "aid", "=", NUMBER, ";"]
    assert _pg_fast_tokens("SELECT 'x'") == ["select", STRING]
    for slow in ("SELECT E'x'", 'SELECT "a"', "SELECT $$x$$", "SELECT 1 -- c", "SELECT\n1", "SELECT 'é'",
                 "SELECT a+-1", "SELECT 'open"):
        assert _pg_fast_tokens(slow) is None, slow


# -- properties -------------------------------------------------------------------------------------------------

SQLISH = st.lists(st.sampled_from(list("selctdrop SELCTDROP;'\"$/*-+=<>!@#\\()[],.:&uUeEbBxXnN01_\n\r\t") +
                                   ["é", "\u00a0", "$$", "$a$", "--", "/*", "*/", "E'", "U&'", "U&\"", "''",
                                    " UESCAPE '!'", "\x00", "`"]),
                   max_size=30).map("".join)
PLAIN = st.text(alphabet=st.sampled_from(list("selctdrop SELCTDROP;'=<>!@#%^&|~?()[],.:+-*/01234_xeEbB\t")),
                max_size=40)


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(SQLISH, st.text(max_size=60)))
@example("SELECT 'a\\'; DROP TABLE t; --'")
def test_fingerprint_never_raises_and_is_idempotent(text: str) -> None:
    for dialect in ("postgres", "mysql"):
        fp = fingerprint(text, dialect)
        assert isinstance(fp, str)
        if fp and "\x00" not in text:
            # Placeholders re-lex as "?" operators; everything else is already canonical.
            assert fingerprint(fp, dialect) == fp


@settings(max_examples=600, deadline=None)
@given(text=PLAIN)
@example("SELECT 'a''b', ''")
@example("select x|-1")
@example("0x0")
@example("select 1.5e, .5x, 0x1f")
def test_fast_path_agrees_with_the_scanner(text: str) -> None:
    fast = _pg_fast_tokens(text)
    if fast is None:
        return
    assert fast == _PgScanner(text).run()


@pytest.mark.parametrize("text", ["select 0x0g", "select 123abc", "select 1.5e", "select .5x", "select 0b10x",
                                  "select 1_000abc", "select 1 from t where a=1and b=2"])
def test_a_number_glued_to_a_word_is_refused_like_the_server_does(text: str) -> None:
    # PostgreSQL 15+: "trailing junk after numeric literal"; older servers read a number and an alias.
    assert lex(text).error is not None and "trailing junk" in lex(text).error


@pytest.mark.parametrize("text", ["select 0x0", "select 0x1f", "select 1_000", "select 1e5, 1.5, .5, 1::int", "select t1x"])
def test_numbers_the_server_reads_are_numbers(text: str) -> None:
    assert lex(text).error is None
