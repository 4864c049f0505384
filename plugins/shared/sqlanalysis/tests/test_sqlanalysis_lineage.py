"""Lineage: per output column, the schema.table.column sources it derives from, failing closed (whole-row and
untraceable items widen to every column of the tables concerned; None only when the width is not knowable)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from gw_sqlanalysis import ANYTHING, Classifier

P = "public.people"


@pytest.mark.parametrize(("sql", "expected"), [
    # the example: aliases and expressions derive from the source column
    ("select ssn as x, upper(ssn), note from people", [(f"{P}.ssn",), (f"{P}.ssn",), (f"{P}.note",)]),
    ("SELECT P.SSN AS \"X\" FROM People AS P", [(f"{P}.ssn",)]),
    ("select ssn || ' ' || name as both from people", [(f"{P}.name", f"{P}.ssn")]),
    ("select count(*), 1, now() from people", [(), (), ()]),
    # joins: qualified columns resolve to their table; unqualified ones to every table that might hold them
    ("select p.ssn, o.total from people p join orders o on o.pid = p.id",
     [(f"{P}.ssn",), ("public.orders.total",)]),
    ("select ssn from people p join orders o on o.pid = p.id", [("public.orders.ssn", f"{P}.ssn")]),
    ("select x.ssn from billing.people x", [("billing.people.ssn",)]),
    # derived tables, CTEs (also one that shadows a table), set operations, recursion
    ("select x from (select ssn as x from people) s", [(f"{P}.ssn",)]),
    ("select s.* from (select ssn, name from people) s", [(f"{P}.ssn",), (f"{P}.name",)]),
    ("with c as (select ssn as s2, name from people) select s2, upper(name) as n from c",
     [(f"{P}.ssn",), (f"{P}.name",)]),
    ("with people as (select 1 as ssn) select ssn from people", [()]),
    ("with c(a) as (select ssn from people) select a from c", [(f"{P}.ssn",)]),
    ("select a from t union all select b from u", [("public.t.a", "public.u.b")]),
    ("with recursive r(n, s) as (select 1, ssn from people union all select n + 1, s from r) select s from r",
     [(f"{P}.ssn",)]),
    # scalar subqueries and correlation
    ("select (select p.ssn from cards k where k.pid = p.id limit 1) as s from people p", [(f"{P}.ssn",)]),
    # table functions derive from what their arguments mention
    ("select v from people, lateral unnest(array[ssn]) as v", [(f"{P}.ssn", f"{P}.v")]),
    ("select a, b from (values (1, 2)) v(a, b)", [(), ()]),
    # RETURNING
    ("delete from people where id = 1 returning ssn, id", [(f"{P}.ssn",), (f"{P}.id",)]),
    ("update people set note = 'x' where id = 1 returning upper(ssn)", [(f"{P}.ssn",)]),
])
def test_sources(sql: str, expected: list[tuple[str, ...]]) -> None:
    assert Classifier("postgres").column_sources(sql) == expected


@pytest.mark.parametrize("sql", [
    "select * from people",  # the table's columns are not in the text (and not given)
    "select p.* from people p",
    "select 1; select 2",  # which statement?
    "select ssn from people where",  # not parseable
    "select 'unterminated",
])
def test_width_not_known(sql: str) -> None:
    assert Classifier("postgres").column_sources(sql) is None


PEOPLE = {P: ["id", "name", "ssn", "note"], "public.t": ["id", "x"]}
WHOLE = (f"{P}.*",)


@pytest.mark.parametrize(("sql", "expected"), [
    # whole-row and composite references derive from every column of the table
    ("select p from people p", [WHOLE]),
    ("select row_to_json(p) from people p", [WHOLE]),
    ("select json_build_object('a', p.*) from people p", [tuple(f"{P}.{c}" for c in ("id", "name", "note", "ssn"))]),
    ("select translate(p::text, '0123456789', 'abcdefghij') from people p", [WHOLE]),
    ("select encode(convert_to(p::text, 'UTF8'), 'base64') from people p", [WHOLE]),
    ("select value from people p, jsonb_each_text(to_jsonb(p)) where key = 'ssn'", [WHOLE]),
    ("select (p).ssn from people p", [WHOLE]),
    # one untraceable item never poisons (nor unmasks) its neighbours
    ("select replace(ssn, '-', '') x, (p is null) y, id from people p",
     [(f"{P}.ssn",), WHOLE, (f"{P}.id",)]),
    ("select id, name from people p where p is not null", [(f"{P}.id",), (f"{P}.name",)]),
    ("select count(*), length(name) from people", [(), (f"{P}.name",)]),
    # aliases with column lists rename by position (the table's columns known)
    ("select replace(c, '-', '') from people as p(a, b, c)", [(f"{P}.ssn",)]),
    ("select a from people as p(a, b, c)", [(f"{P}.id",)]),
    # parenthesised joins keep their items' aliases
    ("select replace(p.ssn, '-', '') from (people p join t on p.id = t.id)", [(f"{P}.ssn",)]),
    # VALUES with subqueries
    ("values ((select replace(ssn, '-', '') from people where id = 1))", [(f"{P}.ssn",)]),
    ("select * from (values (1, (select ssn from people limit 1))) v(a, b)", [(), (f"{P}.ssn",)]),
    # star from a table with known columns
    ("select * from people", [(f"{P}.id",), (f"{P}.name",), (f"{P}.ssn",), (f"{P}.note",)]),
    ("select x.name from (select * from people) x", [(f"{P}.name",)]),
    # LATERAL, set-returning functions
    ("select q.x from t, lateral (select ssn as x from people) q", [(f"{P}.ssn",)]),
    ("select u from people p, unnest(array[p.ssn]) u", [(f"{P}.ssn",)]),
    ("select r.ssn from people p, json_populate_record(null::people, row_to_json(p)) r", [WHOLE]),
    # UNION branches
    ("select name from people union select ssn from people", [(f"{P}.name", f"{P}.ssn")]),
    # RETURNING and data-modifying CTEs
    ("update people p set note = note where id = 2 returning p", [WHOLE]),
    ("with d as (delete from people where id = 9 returning *) select ssn from d", [(f"{P}.ssn",)]),
    # SQL given as text, functions gw does not know: anything
    ("select query_to_xml('select ssn from people', true, true, '')", [(ANYTHING,)]),
    ("select my_lookup(1)", [(ANYTHING,)]),
    ("select id, public.my_lookup(id) from people", [(f"{P}.id",), (ANYTHING, f"{P}.id")]),
])
def test_fail_closed_lineage(sql: str, expected: list[tuple[str, ...]]) -> None:
    assert Classifier("postgres").column_sources(sql, tables=PEOPLE) == expected


def test_width_unknown_falls_back_to_every_table() -> None:
    lineage = Classifier("postgres").lineage("select * from people p, zz")
    assert lineage is not None and lineage.columns is None
    assert set(lineage.fallback) == {f"{P}.*", "public.zz.*"}


@pytest.mark.parametrize(("sql", "writes"), [
    ("insert into people(id, ssn) select 100, ssn from people where id = 2", (f"{P}.ssn",)),
    ("update people set note = ssn", (f"{P}.ssn",)),
    ("create table z as select ssn from people", (f"{P}.ssn",)),
    ("select ssn into z from people", (f"{P}.ssn",)),
    ("select set_config('application_name', replace(ssn, '-', ''), false) from people", WHOLE),
    ("select pg_notify('ch', ssn) from people where id = 2", WHOLE),
    ("insert into t values (1, 'x')", ()),
    ("insert into t values ((select ssn from people limit 1), 'x')", (f"{P}.ssn",)),
    ("insert into people (id, name) values (1, 'x') on conflict (id) do update set note = people.ssn",
     (f"{P}.ssn",)),
    ("insert into people (id, name) values (1, 'x') on conflict (id) do update set name = excluded.name", ()),
    ("select my_function(1)", (ANYTHING,)),
    ("create view v2 as select ssn as name from people", (f"{P}.ssn",)),
    ("alter table people rename column ssn to x", (WHOLE[0],)),
    ("select dblink_exec('dbname=test', 'insert into t select ssn from people')", (ANYTHING,)),
    ("update people set note = 'x' where ssn = '1'", ()),
])
def test_writes(sql: str, writes: tuple[str, ...]) -> None:
    lineage = Classifier("postgres").lineage(sql, tables=PEOPLE)
    assert lineage is not None and lineage.writes == writes


def test_statement_index_for_multi_statement_text() -> None:
    c = Classifier("postgres")
    assert c.column_sources("select 1; select ssn from people", statement=1) == [(f"{P}.ssn",)]
    assert c.column_sources("select 1; select ssn from people", statement=2) is None


def test_cached_per_shape_and_literal_independent() -> None:
    c = Classifier("postgres")
    first = c.lineage("select ssn from people where id = 1")
    assert c.lineage("select ssn from people where id = 2") is first


def test_mysql_lineage() -> None:
    assert Classifier("mysql").column_sources("SELECT `ssn` AS x FROM shop.people") == [("shop.people.ssn",)]


def _count_big_stack_walks(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record every lineage walk run on the big-stack thread (and still run it there)."""
    import gw_sqlanalysis
    from gw_sqlanalysis.grammar import with_fresh_stack

    walks: list[object] = []

    def recording(fn: Callable[..., object], *args: object) -> object:
        if fn is gw_sqlanalysis.statement_lineage:
            walks.append(args[0])
        return with_fresh_stack(fn, *args)

    monkeypatch.setattr(gw_sqlanalysis, "with_fresh_stack", recording)
    return walks


def test_many_sibling_calls_are_walked_on_the_callers_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    """The big stack is for statements that are deep, not for ones with many parentheses side by side."""
    sql = "select " + ", ".join(f"upper(c{i}) as u{i}" for i in range(12)) + ", lower(ssn) from people"
    expected = Classifier("postgres").lineage(sql)
    walks = _count_big_stack_walks(monkeypatch)
    c = Classifier("postgres")
    got = c.lineage(sql)
    assert walks == []
    assert got == expected and got is not None
    assert got.columns == tuple((f"{P}.c{i}",) for i in range(12)) + ((f"{P}.ssn",),)


def test_deeply_nested_statements_are_walked_on_a_big_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    sql = "select " + "upper(" * 12 + "ssn" + ")" * 12 + " from people"
    expected = Classifier("postgres").lineage(sql)
    walks = _count_big_stack_walks(monkeypatch)
    c = Classifier("postgres")
    got = c.lineage(sql)
    assert len(walks) == 1
    assert got == expected and got is not None and got.columns == ((f"{P}.ssn",),)
    # the depth is kept with the cached tree: a walk for other known columns still gets the big stack
    assert c.lineage(sql, tables={P: ["id", "ssn"]}) == got
    assert len(walks) == 2


@pytest.mark.parametrize("padding", [0, 20000], ids=["short", "long"])
def test_prepare_lineage_lexes_a_multi_statement_text_once(monkeypatch: pytest.MonkeyPatch, padding: int) -> None:
    import gw_sqlanalysis

    text = ("select ssn from people where note <> '" + "x" * padding + "'; select 1; "
            "update people set note = 'y' returning upper(ssn), id; select name, ssn from people")
    expected = [Classifier("postgres").lineage(text, i) for i in range(4)]
    assert all(e is not None for e in expected)
    lexed: list[str] = []
    real_lex = gw_sqlanalysis.lex

    def counting(text: str, *args: Any) -> Any:
        lexed.append(text)
        return real_lex(text, *args)

    monkeypatch.setattr(gw_sqlanalysis, "lex", counting)
    c = Classifier("postgres")
    c.prepare_lineage(text)
    assert len(lexed) == 1
    assert [c.lineage(text, i) for i in range(4)] == expected
    if len(text) > gw_sqlanalysis.MAX_CACHED_KEY:  # a long text: every statement's tree was kept, none lexed again
        assert len(lexed) == 1


def test_prepare_lineage_uses_the_classifiers_own_lexer() -> None:
    from gw_sqlanalysis.mysql import MySQLMode, lexer_for

    calls: list[str] = []
    session_lexer = lexer_for(MySQLMode())

    def counting(text: str) -> Any:
        calls.append(text)
        return session_lexer(text)

    text = "SELECT `ssn` FROM shop.people; SELECT 1; SELECT name FROM shop.people"
    c = Classifier("mysql", lexer=counting)
    c.prepare_lineage(text)
    assert calls == [text]
    assert [c.column_sources(text, i) for i in range(3)] == [[("shop.people.ssn",)], [()], [("shop.people.name",)]]
