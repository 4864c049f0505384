"""Caching: sqlglot runs once per distinct shape, literal values never change a classification, caches stay
bounded, and classify() never raises whatever it is given."""

from __future__ import annotations

import pytest
from gw.model import Kind
from gw_sqlanalysis import Classification, Classifier
from hypothesis import given, settings
from hypothesis import strategies as st


def test_sqlglot_runs_once_per_shape_not_per_statement() -> None:
    c = Classifier("postgres")
    results = {c.classify(f"SELECT abalance FROM pgbench_accounts WHERE aid = {i}") for i in range(500)}
    assert c.analyses == 1
    assert len(results) == 1  # one shared Classification instance
    c.classify("select abalance from pgbench_accounts where aid = 'x' -- other literal type, same rules")
    c.classify("SELECT abalance FROM pgbench_accounts WHERE aid = 7 /* comment */")
    assert c.analyses == 2  # a string literal is a different shape than a number; comments are not


def test_exact_text_cache_answers_before_the_lexer() -> None:
    c = Classifier("postgres")
    first = c.classify("DELETE FROM t")
    assert c.classify("DELETE FROM t") is first
    assert c.analyses == 1


@pytest.mark.parametrize(("template", "literals"), [
    ("EXPLAIN (ANALYZE {}) DELETE FROM t", ["0", "1", "'false'", "'on'"]),
    ("SET application_name = {}", ["'x'", "'; DROP TABLE t'", "$$x$$"]),
    ("SELECT * FROM t WHERE a = {}", ["'x''; DROP TABLE t; --'", "E'\\''", "$q$ ; DROP TABLE t; $q$"]),
    ("COPY t TO {}", ["'/tmp/x'", "'/etc/passwd'"]),
    ("SET NAMES {}", ["'utf8mb4'", "'gbk'"]),
])
def test_literal_values_never_change_the_classification(template: str, literals: list[str]) -> None:
    """The cache-by-shape is only sound if no literal value matters; these are the places one could."""
    for dialect in ("postgres", "mysql"):
        shared = Classifier(dialect)
        for literal in literals:
            text = template.format(literal)
            fresh = Classifier(dialect).classify(text)
            cached = shared.classify(text)
            assert (cached.kind, cached.verb, cached.objects, cached.flags) == (
                fresh.kind, fresh.verb, fresh.objects, fresh.flags), text


def test_ambiguity_is_decided_per_text_not_per_shape() -> None:
    """Two texts with one shape: only the one whose string holds a backslash is ambiguous."""
    c = Classifier("postgres")
    assert c.classify("SELECT 'abc'").kind is Kind.READ
    assert c.classify("SELECT 'a\\b'").kind is Kind.READ  # same boundaries either way
    assert c.classify("SELECT 'a\\'; DROP TABLE t; --'").kind is Kind.UNKNOWN
    assert c.classify("SELECT 'x'; DROP TABLE t; --'").kind is Kind.DDL


#: Under standard_conforming_strings on, 'a\' is a whole string and a DROP follows; off, the backslash escapes
#: the quote and the text is one SELECT.  An E'' string takes backslash escapes under either setting.
PLAIN_BACKSLASH = "SELECT 'a\\'; DROP TABLE t; --'"
E_BACKSLASH = "SELECT E'a\\'; DROP TABLE t; --'"


@pytest.mark.parametrize("order", [(True, False), (False, True)], ids=["on_first", "off_first"])
def test_a_text_that_depends_on_the_strings_setting_is_cached_per_setting(
        monkeypatch: pytest.MonkeyPatch, order: tuple[bool, bool]) -> None:
    import gw_sqlanalysis

    expected = {(text, mode): Classifier("postgres").classify(text, mode)
                for text in (PLAIN_BACKSLASH, E_BACKSLASH) for mode in (True, False)}
    assert expected[PLAIN_BACKSLASH, True].kind is Kind.DDL
    assert expected[PLAIN_BACKSLASH, False].kind is Kind.READ
    assert expected[E_BACKSLASH, True].kind is expected[E_BACKSLASH, False].kind is Kind.READ

    lexed: list[str] = []
    real_lex = gw_sqlanalysis.lex

    def counting(text: str, *args: object) -> object:
        lexed.append(text)
        return real_lex(text, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(gw_sqlanalysis, "lex", counting)
    c = Classifier("postgres")
    first = {(text, mode): c.classify(text, mode) for mode in order for text in (PLAIN_BACKSLASH, E_BACKSLASH)}
    assert len(lexed) == 4
    assert first == expected  # one setting's answer is never given for the other
    for (text, mode), answer in first.items():
        assert c.classify(text, mode) is answer  # served from the cache ...
    assert len(lexed) == 4  # ... without lexing again
    # and neither setting's answer is given when the setting is not known
    unknown = c.classify(PLAIN_BACKSLASH)
    assert unknown.kind is Kind.UNKNOWN and "ambiguous_quoting" in unknown.flags


def test_caches_are_bounded() -> None:
    c = Classifier("postgres", cache_size=16)
    for i in range(200):
        c.classify(f"SELECT c{i} FROM t WHERE id = {i}")
        c.classify(f"SELECT c{i} FROM t WHERE id = E'\\{i}'", standard_strings=i % 2 == 0)
    assert len(c._by_text) <= 16 and len(c._by_shape) <= 16 and len(c._by_text_and_mode) <= 16
    big = "INSERT INTO t VALUES " + ", ".join(f"({i})" for i in range(5000))
    assert c.classify(big).kind is Kind.WRITE
    assert big not in c._by_text.entries  # too large to pin in memory


def test_internal_errors_fail_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    import gw_sqlanalysis

    def broken(tokens: list[str], rules: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(gw_sqlanalysis, "classify_statement", broken)
    got = Classifier("postgres").classify("SELECT 1")
    assert got.kind is Kind.UNKNOWN and {"unparsed", "internal_error"} <= got.flags


SQLISH = st.lists(st.sampled_from([
    "SELECT", "DELETE", "FROM", "WITH", "x", "AS", "(", ")", ";", "'a'", "$$b$$", "E'\\''", "--c\n", "/*", "*/",
    "EXPLAIN", "ANALYZE", "DROP", "TABLE", "t", ",", "*", "=", "1", "INTO", "SET", "ROLE", "COPY", "TO",
    "STDOUT", "U&\"\\0041\"", "\"q\"", ".", "::", "$1", "UPDATE", "WHERE", "f(", "pg_sleep(", "DO", "BEGIN",
    "PREPARE", "DECLARE", "CURSOR", "FOR", "GRANT", "ON", "ALL", "\x00", "é", " ",
]), max_size=25).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(SQLISH, st.text(max_size=80)))
def test_classify_never_raises(text: str) -> None:
    for dialect in ("postgres", "mysql"):
        c = Classifier(dialect)
        got = c.classify(text)
        assert isinstance(got, Classification)
        assert isinstance(got.kind, Kind)
        assert "internal_error" not in got.flags, text
        if got.kind is Kind.READ:
            assert "unparsed" not in got.flags
        c.column_sources(text)  # never raises either


def test_a_cache_shared_with_worker_threads_stays_consistent() -> None:
    """Long statements are analysed in worker threads with the event loop's classifier: lookups, moves and
    evictions from several threads at once never raise and keep the size accounting exact."""
    import sys
    import threading

    from gw_sqlanalysis import _LRU

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    lru: _LRU[str, int] = _LRU(1, 10_000)
    errors: list[BaseException] = []

    def hammer(step: int) -> None:
        try:
            for i in range(100_000):
                key = f"k{(i * step) % 3}"
                if lru.get(key) is None:
                    lru.put(key, i, len(key))
        except Exception as e:  # noqa: BLE001 -- the test reports it
            errors.append(e)

    try:
        threads = [threading.Thread(target=hammer, args=(step,)) for step in (1, 2, 5, 7)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(previous)
    assert errors == []
    assert len(lru) == 1 and lru.chars == sum(len(k) for k in lru.entries)
