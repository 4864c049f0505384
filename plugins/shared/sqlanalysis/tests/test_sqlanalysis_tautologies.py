"""``no_where`` covers the obvious tautologies, not only a missing WHERE: each of these rewrites every row of the
table (the database-measured ``rows_over`` rule is the real limit; this flag is the cheap syntactic one)."""

from __future__ import annotations

import pytest
from gw_sqlanalysis import Classifier

EVERY_ROW = [
    "delete from t where id = id",
    "delete from t where true or id = 1",
    "delete from t where (id = 1) or (2 = 2)",
    "delete from t where id = id and 1 = 1",
    "delete from t where id is not distinct from id",
    "delete from t where id >= id",
    "delete from t where id in (id)",
    "delete from t where t.id = id",
    "delete from t using t t2 where t.id = t2.id",
    "delete from t as a using t as b where b.id = a.id",
    "delete from s.t x using s.t y where x.id = y.id",
    "update t set v = 'x' where v = v",
    "update t set v = 1 from t as t2 where t2.id = t.id",
    "merge into t using (select 1 k) s on t.id = t.id when matched then delete",
    "merge into t using t s on t.id = s.id when matched then delete",
    "insert into t select id, 'x' from t on conflict (id) do update set v = excluded.v",
    "insert into t select id, 'x' from t on conflict (id) do update set v = excluded.v where t.v = t.v",
]

SELECTIVE = [
    "delete from t where id = 5",
    "delete from t where id = id and v = 2",
    "delete from t using u where t.id = u.id",
    "delete from t a using t b where a.id = b.parent_id",
    "delete from s.t x using r.t y where x.id = y.id",
    "update t set v = 'x' where v = 'y'",
    "merge into t using s on t.id = s.id when matched then delete",
    "insert into t values (1, 'x') on conflict (id) do update set v = excluded.v",
    "insert into t select id, 'x' from u on conflict (id) do update set v = excluded.v where t.v = 'old'",
    "insert into t select id, 'x' from u on conflict (id) do nothing",
]


@pytest.mark.parametrize("sql", EVERY_ROW)
def test_tautologies_are_no_where(sql: str) -> None:
    found = Classifier("postgres").classify(sql)
    assert found.kind.value == "write"
    assert "no_where" in found.flags, (sql, found)


@pytest.mark.parametrize("sql", SELECTIVE)
def test_selective_conditions_are_not_flagged(sql: str) -> None:
    found = Classifier("postgres").classify(sql)
    assert found.kind.value == "write"
    assert "no_where" not in found.flags, (sql, found)


def test_mysql_upsert_from_a_query_is_no_where() -> None:
    mysql = Classifier("mysql")
    assert "no_where" in mysql.classify("insert into t select * from t on duplicate key update v = 1").flags
    assert "no_where" not in mysql.classify("insert into t values (1) on duplicate key update v = 1").flags
    assert "no_where" in mysql.classify("delete from t where id = id").flags
