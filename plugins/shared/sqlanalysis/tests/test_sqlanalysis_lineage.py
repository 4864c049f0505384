"""column_sources: per output column, the schema.table.column sources it derives from (None: not knowable)."""

from __future__ import annotations

import pytest
from gw_sqlanalysis import Classifier

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
    "select * from people",  # the table's columns are not in the text
    "select p.* from people p",
    "select row_to_json(p) from people p",  # whole-row reference
    "select json_build_object('a', p.*) from people p",
    "select x from people as p(x, y)",  # alias renames columns by position
    "select 1; select 2",  # which statement?
    "select ssn from people where",  # not parseable
    "select 'unterminated",
])
def test_not_determinable(sql: str) -> None:
    assert Classifier("postgres").column_sources(sql) is None


def test_statement_index_for_multi_statement_text() -> None:
    c = Classifier("postgres")
    assert c.column_sources("select 1; select ssn from people", statement=1) == [(f"{P}.ssn",)]
    assert c.column_sources("select 1; select ssn from people", statement=2) is None


def test_cached_per_shape_and_literal_independent() -> None:
    c = Classifier("postgres")
    first = c.column_sources("select ssn from people where id = 1")
    assert c.column_sources("select ssn from people where id = 2") is first


def test_mysql_lineage() -> None:
    assert Classifier("mysql").column_sources("SELECT `ssn` AS x FROM shop.people") == [("shop.people.ssn",)]
