"""The grammar sqlglot lacks: safe statements it cannot parse are still ``read`` (prefix ``@``, ``XMLEXISTS ...
PASSING``, deep nesting), what they touch is unchanged, and nesting beyond what gw analyses is ``unknown`` with
``too_deep`` -- quickly, whatever the caller's stack depth, never an exception."""

from __future__ import annotations

import time

import pytest
from gw.model import Kind
from gw_sqlanalysis import Classifier
from gw_sqlanalysis.grammar import MAX_DEPTH, collapse_parentheses, for_parser, nesting_depth


def _deep(n: int) -> str:
    return "select " + "(" * n + "1" + ")" * n


@pytest.mark.parametrize("text", [
    "select @ -5", "select @ (1 - 9)", "select abs(@ -5)", "select 1 where @ -5 = 5",
    "select xmlexists('//a' passing '<a/>')",
    "select xmlexists('//a' passing by ref '<a/>' by value)",
    "select xmlexists('//a' passing by value '<a/>')",
    _deep(60), _deep(1000), _deep(20000),
    "select " + "(" * 25 + "1" + "+1)" * 25,
    "select " + "array[" * 20 + "1" + "]" * 20,
    "select " + "coalesce(1, " * 25 + "1" + ")" * 25,
])
def test_safe_statements_sqlglot_cannot_parse_are_reads(text: str) -> None:
    got = Classifier().classify(text)
    assert got.kind is Kind.READ, got


@pytest.mark.parametrize("text, objects", [
    ("delete from t where id in " + "(" * 200 + "select id from u" + ")" * 200, ("public.t", "public.u")),
    ("select xmlexists('//a' passing doc) from docs", ("public.docs",)),
    ("select @ amount from payments", ("public.payments",)),
])
def test_rewrites_keep_what_the_statement_touches(text: str, objects: tuple[str, ...]) -> None:
    got = Classifier().classify(text)
    assert got.objects == objects
    assert got.kind is (Kind.WRITE if text.startswith("delete") else Kind.READ)


@pytest.mark.parametrize("text", [
    "select xmlexists('//a' passing pg_read_file('/etc/passwd'))",
    "select @ pg_terminate_backend(1)",
    "select " + "(" * 500 + "pg_terminate_backend(1)" + ")" * 500,
])
def test_rewrites_hide_no_function(text: str) -> None:
    assert Classifier().classify(text).kind is Kind.ADMIN


@pytest.mark.parametrize("text", [
    "select xmlexists('//a' passing evil('x'))",
    "select @ evil(1)",
    "select " + "(" * 40 + "evil(1)" + ")" * 40,
])
def test_unknown_functions_stay_unknown(text: str) -> None:
    got = Classifier().classify(text)
    assert got.kind is Kind.UNKNOWN and "unknown_function" in got.flags


def test_lineage_survives_redundant_parentheses() -> None:
    c = Classifier()
    assert c.column_sources("select " + "(" * 300 + "ssn" + ")" * 300 + " from people") == [("public.people.ssn",)]
    assert c.column_sources("select @ " + "(" * 80 + "balance" + ")" * 80 + " from people") == [
        ("public.people.balance",)]


def test_a_row_is_not_a_redundant_pair() -> None:
    assert collapse_parentheses(["f", "(", "(", "a", ",", "b", ")", ")"]) == ["f", "(", "(", "a", ",", "b", ")", ")"]
    assert collapse_parentheses(["f", "(", "(", ")", ")"]) == ["f", "(", "(", ")", ")"]
    assert collapse_parentheses(["(", "(", "(", "a", ")", ")", ")"]) == ["(", "a", ")"]
    assert collapse_parentheses(["(", "(", "a", ")", "+", "(", "b", ")", ")"]) == [
        "(", "(", "a", ")", "+", "(", "b", ")", ")"]


def test_binary_at_is_left_alone() -> None:
    assert for_parser(["select", "a", "@", "b"]) == ["select", "a", "@", "b"]
    assert for_parser(["select", "@", "-", "\x01"]) == ["select", "-", "-", "\x01"]


@pytest.mark.parametrize("text", [
    "select " + "(" * 1000 + "a" + "+1)" * 1000 + " from t",
    "select " + "abs(" * 1000 + "a" + ")" * 1000 + " from t",
    "select 1 from t where a in " + "(select a from t where a in " * 1000 + "(1)" + ")" * 1000,
    "select " + "(case when a = 1 then " * 1000 + "1" + " end)" * 1000 + " from t",
    "select " + "array[" * 1000 + "1" + "]" * 1000,
    "delete from t where " + "(a = 1 or " * 5000 + "true" + ")" * 5000,
])
def test_nesting_beyond_the_limit_is_unknown_and_too_deep_quickly(text: str) -> None:
    started = time.monotonic()
    got = Classifier().classify(text)
    assert got.kind is Kind.UNKNOWN and {"too_deep", "unparsed"} <= got.flags
    assert Classifier().lineage(text) is None
    assert time.monotonic() - started < 60  # a bound against exponential parsing, not a speed test


def _at_depth(frames: int, fn: object, *args: object) -> object:
    if frames:
        return _at_depth(frames - 1, fn, *args)
    return fn(*args)  # type: ignore[operator]


@pytest.mark.parametrize("shape", [
    lambda n: "select " + "(" * n + "a" + "+1)" * n + " from t",
    lambda n: "select " + "abs(" * n + "a" + ")" * n + " from t",
    lambda n: "select " + "coalesce(1, " * n + "a" + ")" * n + " from t",
    lambda n: "select 1 from t where " + "(a = 1 and " * n + "true" + ")" * n,
])
def test_the_answer_does_not_depend_on_the_callers_stack(shape: object) -> None:
    text = shape(MAX_DEPTH - 2)  # type: ignore[operator]
    shallow = Classifier().classify(text)
    deep = _at_depth(600, Classifier().classify, text)
    assert shallow == deep and shallow.kind is Kind.READ, (shallow, deep)


def test_nesting_depth_counts_brackets_and_ignores_redundant_pairs() -> None:
    assert nesting_depth(["select", "(", "(", "(", "a", ")", ")", ")"]) == 1
    assert nesting_depth(["select", "a", "[", "(", "\x01", ")", "]"]) == 2


def test_a_known_string_mode_is_lexed_exactly() -> None:
    c = Classifier()
    hides = "select '\\'; drop table t; -- '"      # off: one string; on: a DROP
    shows = "select '\\' as \"x'; drop table t; --\""  # off: a DROP; on: a string and an alias
    assert c.classify(hides).kind is Kind.UNKNOWN and "ambiguous_quoting" in c.classify(hides).flags
    assert c.classify(hides, standard_strings=False).kind is Kind.READ
    assert c.classify(hides, standard_strings=True).kind is Kind.DDL
    assert c.classify(shows, standard_strings=False).kind is Kind.DDL
    assert c.classify(shows, standard_strings=True).kind is Kind.READ
    assert c.classify(hides).kind is Kind.UNKNOWN  # the exact answers are not cached for the unsure caller
    assert c.classify("select U&'\\0041'", standard_strings=False).kind is Kind.UNKNOWN  # the server refuses it too


def test_mysql_user_variables_are_not_operators() -> None:
    assert for_parser(["select", "@", "\x00"]) == ["select", "@", "\x00"]
    assert for_parser(["select", "@", "`v`"]) == ["select", "@", "`v`"]
    c = Classifier("mysql")
    assert c.classify("select @`v`").kind is c.classify("select @'v'").kind


@pytest.mark.parametrize("text", [
    "select ifnull(1, 2)", "select decrypt('a', 'b', 'c')", "select to_file('x')", "select read_csv('/etc/passwd')",
    "select levenshtein('a', 'b')", "select generate_table(1)", "select x from t where ifnull(x, 0) = 1",
    "update t set x = nvl(x, 1) where id = 1", "select pg_catalog.decrypt('a')", "select if(true, 1, 2)",
    "select datetime('x')", "select \"ifnull\"(1, 2)", "select public.ifnull(1, 2)",
    "select \"coalesce\"(1, 2)", "select \"nullif\"(1, 2)", "select \"greatest\"(1, 2)",
])
def test_other_databases_builtins_are_user_functions_in_postgres(text: str) -> None:
    """sqlglot models these (they are built-ins elsewhere); PostgreSQL has none of them, so a call runs whatever
    user or extension function has that name: gw cannot vouch for it."""
    got = Classifier().classify(text)
    assert got.kind is Kind.UNKNOWN and "unknown_function" in got.flags, got


@pytest.mark.parametrize("text", [
    "select a from t where a = 1 and (b = 2 or c = 3)", "select cast(a as char(10)) from t",
    "select coalesce(a, 1), current_time(3), extract(year from now()), nullif(a, 2) from t",
    "select count(*) filter (where a > 1) over (partition by b) from t", "select acosh(2), any_value(a) from t",
    "select a from t where b like (select 'x')", "select array(select 1)", "insert into t (a) values (1)",
    "select regr_sxx(a, b), jsonb_contains('{}', '{}') from t",
])
def test_postgres_syntax_before_a_parenthesis_is_not_a_call(text: str) -> None:
    assert Classifier().classify(text).kind in (Kind.READ, Kind.WRITE)


@pytest.mark.parametrize("shape", [
    lambda n: "select " + "(" * n + "a" + "+1)" * n + " from t",
    lambda n: "select * from " + "(select * from " * n + "t" + ") s" * n,
    lambda n: "select " + "case when true then (" * n + "a" + ") end" * n + " from t",
    lambda n: "select " + "cast(" * n + "a" + " as int)" * n + " from t",
    lambda n: "select " + "array[" * n + "a" + "]" * n + " from t",
])
def test_generated_sql_nested_far_past_fifty_levels_is_read_with_its_lineage(shape: object) -> None:
    c = Classifier()
    for depth in (60, MAX_DEPTH):
        text = shape(depth)  # type: ignore[operator]
        got = c.classify(text)
        assert got.kind is Kind.READ and not got.flags, (depth, got)
        lineage = c.lineage(text, tables={"public.t": ["a", "b"]})
        assert lineage is not None and lineage.columns is not None, depth
        assert "public.t.a" in str(lineage.columns), lineage.columns  # traced through every level
    deeper = c.classify(shape(MAX_DEPTH + 1))  # type: ignore[operator]
    assert deeper.kind is Kind.UNKNOWN and "too_deep" in deeper.flags
