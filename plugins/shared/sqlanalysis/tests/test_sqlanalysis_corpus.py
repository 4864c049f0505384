"""Table-driven corpus: statement -> expected kind, verb, objects and flags (exactly).

The BYPASS section holds statements written to slip past guard/approve rules: each must come out as what it
really does, or as ``unknown``.  A failure here is a policy bypass, not a cosmetic difference.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest
from gw.model import Kind
from gw_sqlanalysis import Classifier

R, W, D, A, T, U = Kind.READ, Kind.WRITE, Kind.DDL, Kind.ADMIN, Kind.TRANSACTION, Kind.UNKNOWN


class Case(NamedTuple):
    sql: str
    kind: Kind
    verb: str
    objects: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()


PG_BASICS = [
    Case("SELECT abalance FROM pgbench_accounts WHERE aid = 5", R, "select", ("public.pgbench_accounts",)),
    Case("select a.x, b.y from s1.a join b on a.id = b.id", R, "select", ("s1.a", "public.b")),
    Case("SELECT 1", R, "select"),
    Case("VALUES (1), (2)", R, "select"),
    Case("TABLE t", R, "select", ("public.t",)),
    Case("(SELECT 1) UNION (SELECT a FROM t)", R, "select", ("public.t",)),
    Case("SELECT * FROM pg_authid", R, "select", ("pg_catalog.pg_authid",)),
    Case('SELECT * FROM "Mixed"."Case Table"', R, "select", ("Mixed.Case Table",)),
    Case("SELECT * FROM db.s.t", R, "select", ("s.t",)),
    Case("SELECT lower(x), count(*), now(), coalesce(a, 1) FROM t", R, "select", ("public.t",)),
    Case("SELECT pg_size_pretty(pg_total_relation_size('t'))", R, "select"),
    Case("SELECT pg_catalog.lower(x) FROM t", R, "select", ("public.t",)),
    Case("SELECT * FROM t WHERE a = $1 AND b = ANY($2::int[])", R, "select", ("public.t",)),
    Case("INSERT INTO t (a) VALUES (1) ON CONFLICT DO NOTHING", W, "insert", ("public.t",)),
    Case("INSERT INTO t SELECT * FROM u RETURNING *", W, "insert", ("public.t", "public.u")),
    Case("UPDATE t SET a = 1 WHERE id = 2", W, "update", ("public.t",)),
    Case("UPDATE t SET a = 1", W, "update", ("public.t",), ("no_where",)),
    Case("UPDATE t SET a = u.a FROM u WHERE t.id = u.id", W, "update", ("public.t", "public.u")),
    Case("DELETE FROM t WHERE id = 4", W, "delete", ("public.t",)),
    Case("DELETE FROM t", W, "delete", ("public.t",), ("no_where",)),
    Case("DELETE FROM t WHERE 1 = 1", W, "delete", ("public.t",), ("no_where",)),
    Case("DELETE FROM t WHERE true", W, "delete", ("public.t",), ("no_where",)),
    Case("DELETE FROM t USING u WHERE t.a = u.a", W, "delete", ("public.t", "public.u")),
    Case("MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE", W, "merge", ("public.t", "public.s")),
    Case("MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", W, "merge", ("public.t", "public.s"),
         ("no_where",)),
    Case("SELECT * FROM t FOR UPDATE", W, "select", ("public.t",), ("for_update",)),
    Case("SELECT * FROM t FOR SHARE NOWAIT", W, "select", ("public.t",), ("for_update",)),
    Case("SELECT * INTO newt FROM t", D, "select", ("public.newt", "public.t"), ("select_into",)),
    Case("SELECT nextval('s')", W, "select", (), ("write_function",)),
    Case("CREATE TABLE t (a int, b numeric(10, 2))", D, "create", ("public.t",)),
    Case("CREATE TABLE x AS SELECT * FROM payments", D, "create", ("public.x", "public.payments")),
    Case("CREATE UNIQUE INDEX CONCURRENTLY i ON s.t (a)", D, "create", ("s.t",)),
    Case("CREATE OR REPLACE VIEW v AS SELECT * FROM t", D, "create", ("public.v", "public.t")),
    Case("CREATE EXTENSION dblink", A, "create", (), ("server_side_effect",)),
    Case("CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw", A, "create", (), ("server_side_effect",)),
    Case("CREATE USER MAPPING FOR current_user SERVER s", A, "create", (), ("server_side_effect",)),
    Case("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql", D, "create"),
    Case("ALTER TABLE IF EXISTS t ADD COLUMN b int", D, "alter", ("public.t",)),
    Case("DROP TABLE t", D, "drop", ("public.t",)),
    Case('drop table if exists a, "B", s.c cascade', D, "drop", ("public.a", "public.B", "s.c")),
    Case("DROP SCHEMA billing CASCADE", D, "drop", ("billing.*",)),
    Case("DROP OWNED BY bob", D, "drop"),
    Case("COMMENT ON TABLE t IS 'x'", D, "comment", ("public.t",)),
    Case("COMMENT ON COLUMN s.t.c IS 'x'", D, "comment", ("s.t",)),
    Case("SECURITY LABEL ON TABLE t IS 'x'", D, "security_label"),
    Case("TRUNCATE t, s.u", W, "truncate", ("public.t", "s.u"), ("no_where",)),
    Case("TRUNCATE TABLE ONLY t RESTART IDENTITY", W, "truncate", ("public.t",), ("no_where",)),
    Case("GRANT SELECT ON payments, s.x TO bob", A, "grant", ("public.payments", "s.x")),
    Case("GRANT SELECT ON ALL TABLES IN SCHEMA public TO bob", A, "grant", ("public.*",)),
    Case("GRANT dba TO bob", A, "grant"),
    Case("REVOKE ALL ON TABLE t FROM bob", A, "revoke", ("public.t",)),
    Case("ALTER ROLE bob SUPERUSER", A, "alter"),
    Case("CREATE ROLE x LOGIN PASSWORD 'y'", A, "create"),
    Case("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO bob", A, "alter"),
    Case("ALTER SYSTEM SET work_mem = '1MB'", A, "alter"),
    Case("REASSIGN OWNED BY a TO b", A, "reassign"),
    Case("VACUUM FULL ANALYZE t1, s.t2", A, "vacuum", ("public.t1", "s.t2")),
    Case("VACUUM (VERBOSE, ANALYZE) t", A, "vacuum", ("public.t",)),
    Case("ANALYZE t", A, "analyze", ("public.t",)),
    Case("ANALYSE VERBOSE t", A, "analyze", ("public.t",)),
    Case("CLUSTER t USING i", A, "cluster", ("public.t",)),
    Case("REINDEX TABLE CONCURRENTLY t", A, "reindex", ("public.t",)),
    Case("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", A, "lock", ("public.t",)),
    Case("CHECKPOINT", A, "checkpoint"),
    Case("LOAD 'auto_explain'", A, "load"),
    Case("DISCARD ALL", A, "discard"),
    Case("REFRESH MATERIALIZED VIEW CONCURRENTLY v", W, "refresh", ("public.v",)),
    Case("BEGIN", T, "begin"),
    Case("BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY", T, "begin"),
    Case("START TRANSACTION", T, "begin"),
    Case("COMMIT", T, "commit"),
    Case("END", T, "commit"),
    Case("ROLLBACK", T, "rollback"),
    Case("ABORT", T, "rollback"),
    Case("SAVEPOINT a", T, "savepoint"),
    Case("RELEASE SAVEPOINT a", T, "release"),
    Case("ROLLBACK TO SAVEPOINT a", T, "rollback"),
    Case("PREPARE TRANSACTION 'x'", T, "prepare_transaction"),
    Case("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", T, "set"),
    Case("SET CONSTRAINTS ALL DEFERRED", T, "set"),
    Case("SET application_name = 'psql'", R, "set"),
    Case("SET TIME ZONE 'UTC'", R, "set"),
    Case("SET LOCAL statement_timeout = 0", R, "set"),
    Case("SET search_path = evil, pg_catalog", A, "set"),
    Case("SET myapp.tenant_id = '7'", A, "set"),
    Case("SET client_encoding = 'SJIS'", A, "set"),
    Case("SET ROLE postgres", A, "set", (), ("set_role",)),
    Case("SET SESSION AUTHORIZATION postgres", A, "set", (), ("set_role",)),
    Case('SET "role" = postgres', A, "set", (), ("set_role",)),
    Case("RESET ROLE", A, "reset", (), ("set_role",)),
    Case("RESET ALL", A, "reset"),
    Case("RESET statement_timeout", R, "reset"),
    Case("SHOW search_path", R, "show"),
    Case("LISTEN ch", R, "listen"),
    Case("UNLISTEN *", R, "unlisten"),
    Case("NOTIFY ch, 'x'", W, "notify"),
    Case("FETCH 10 FROM c", R, "fetch"),
    Case("CLOSE c", R, "close"),
    Case("DEALLOCATE p", R, "deallocate"),
    Case("DECLARE c CURSOR FOR SELECT * FROM payments", R, "declare", ("public.payments",), ("cursor",)),
    Case("PREPARE p (int) AS SELECT * FROM t WHERE a = $1", R, "select", ("public.t",), ("prepare",)),
    Case("COPY t TO STDOUT", R, "copy", ("public.t",), ("copy_to",)),
    Case("COPY t (a, b) FROM STDIN WITH (FORMAT csv)", W, "copy", ("public.t",), ("copy_from",)),
    Case("COPY (SELECT a FROM t) TO STDOUT WITH CSV", R, "copy", ("public.t",), ("copy_to",)),
    Case("COPY t FROM PROGRAM 'rm -rf /'", A, "copy", ("public.t",), ("copy_from", "program")),
    Case("COPY t TO '/tmp/t.csv'", A, "copy", ("public.t",), ("copy_to", "server_file")),
    Case("COPY t FROM STDIN WHERE my_func(a)", U, "copy", (), ("unparsed",)),
    Case("EXPLAIN SELECT * FROM payments", R, "explain", ("public.payments",), ("explain",)),
    Case("EXPLAIN (ANALYZE false) DELETE FROM t", R, "explain", ("public.t",), ("explain", "no_where")),
    Case("SELECT pg_terminate_backend(123)", A, "select", (), ("admin_function",)),
    Case("SELECT my_func(1)", U, "select", (), ("unknown_function",)),
    Case("", R, "", (), ("empty",)),
    Case("  -- nothing but a comment\n", R, "", (), ("empty",)),
]

BYPASS = [
    # comments and case
    Case("/**/DROP TABLE t", D, "drop", ("public.t",)),
    Case("/* SELECT */ dRoP TaBlE payments", D, "drop", ("public.payments",)),
    Case("SELECT 1 /* ; */ ; DROP TABLE t", D, "drop", ("public.t",), ("multi_statement",)),
    Case("SELECT /* /* nested */ ; DROP TABLE t; */ 1", R, "select"),
    Case("-- SELECT\nDROP TABLE t", D, "drop", ("public.t",)),
    Case("SELECT 1 --\r; DROP TABLE t", D, "drop", ("public.t",), ("multi_statement",)),
    Case("DROP\u00a0TABLE t", U, "drop\u00a0table", (), ("unparsed",)),
    # multi-statement strings: the most dangerous statement wins, every verb is listed
    Case("SELECT 1; DROP TABLE t", D, "drop", ("public.t",), ("multi_statement",)),
    Case("BEGIN; DELETE FROM t; COMMIT", W, "delete", ("public.t",), ("multi_statement", "no_where")),
    Case("SELECT 1;;;TRUNCATE t;", W, "truncate", ("public.t",), ("multi_statement", "no_where")),
    Case("SELECT 'a;b'; DELETE FROM t WHERE id = 1", W, "delete", ("public.t",), ("multi_statement",)),
    # CTE-wrapped DML and other nested writes
    Case("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", W, "delete", ("public.t",),
         ("cte_write", "no_where")),
    Case("WITH x AS (UPDATE payments SET a = 0 RETURNING 1) SELECT count(*) FROM x", W, "update",
         ("public.payments",), ("cte_write", "no_where")),
    Case("WITH d AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM d", W, "delete",
         ("public.b", "public.a"), ("cte_write", "no_where")),
    Case("WITH p AS (SELECT 1) DELETE FROM p", W, "delete", ("public.p",), ("no_where",)),
    Case("WITH payments AS (SELECT * FROM payments) SELECT * FROM payments", R, "select", ("public.payments",)),
    Case("SELECT * FROM (WITH t AS (SELECT 1) SELECT * FROM t) s, t", R, "select", ("public.t",)),
    Case("COPY (DELETE FROM t RETURNING *) TO STDOUT", W, "copy", ("public.t",), ("copy_to", "no_where")),
    Case("DECLARE c CURSOR FOR SELECT pg_terminate_backend(pid) FROM pg_stat_activity", A, "declare",
         ("pg_catalog.pg_stat_activity",), ("cursor", "admin_function")),
    # EXPLAIN ANALYZE runs the statement
    Case("EXPLAIN ANALYZE DELETE FROM t", W, "delete", ("public.t",), ("explain_analyze", "no_where")),
    Case("EXPLAIN ANALYSE VERBOSE DELETE FROM t", W, "delete", ("public.t",), ("explain_analyze", "no_where")),
    Case("EXPLAIN (ANALYZE, BUFFERS) DELETE FROM t", W, "delete", ("public.t",), ("explain_analyze", "no_where")),
    Case("EXPLAIN (ANALYZE 1) DELETE FROM t", W, "delete", ("public.t",), ("explain_analyze", "no_where")),
    Case("EXPLAIN (FORMAT JSON, ANALYZE on) UPDATE t SET a = 1", W, "update", ("public.t",),
         ("explain_analyze", "no_where")),
    Case("EXPLAIN ANALYZE EXECUTE p", U, "execute", (), ("explain_analyze", "unparsed")),
    Case("EXPLAIN SELECT my_func()", U, "explain", (), ("explain", "unknown_function")),
    # PREPARE / EXECUTE
    Case("PREPARE p AS DELETE FROM t", W, "delete", ("public.t",), ("no_where", "prepare")),
    Case("EXECUTE p", U, "execute", (), ("unparsed",)),
    # dollar quoting, strings, escapes
    Case("SELECT $tag$ ; DROP TABLE x $tag$", R, "select"),
    Case("SELECT $a$ $b$ ; DROP TABLE t; $b$ $a$", R, "select"),
    Case("SELECT $$x$$; DROP TABLE t", D, "drop", ("public.t",), ("multi_statement",)),
    Case("SELECT E'\\' ; DROP TABLE t; --'", R, "select"),
    Case("SELECT E'\\\\'; DROP TABLE t; --'", D, "drop", ("public.t",), ("multi_statement",)),
    Case("SELECT 'a\\'; DROP TABLE t; --'", U, "drop", ("public.t",), ("ambiguous_quoting", "multi_statement")),
    Case("SELECT 'a\\'' ; DROP TABLE t; --'", U, "select", (), ("ambiguous_quoting",)),
    Case("SELECT 'a\\d+'", R, "select"),
    Case("SELECT 'it''s'; DROP TABLE t", D, "drop", ("public.t",), ("multi_statement",)),
    Case("SELECT 'a'\n'b'", R, "select"),
    Case("SELECT B'01''; DROP TABLE t; --'", R, "select"),
    Case("SELECT 'unterminated; DROP TABLE t", U, "", (), ("unparsed",)),
    Case("SELECT 1 /* unterminated; DROP TABLE t", U, "", (), ("unparsed",)),
    Case("SELECT 1\x00; DROP TABLE t", U, "", (), ("unparsed",)),
    # unicode escapes
    Case("SELECT U&'\\0041'", R, "select"),
    Case('DROP TABLE U&"\\0070ayments"', D, "drop", ("public.payments",)),
    Case('DELETE FROM U&"!0070ayments" UESCAPE \'!\' WHERE id = 1', W, "delete", ("public.payments",)),
    Case('SELECT U&"\\0070g_terminate_backend"(1)', A, "select", (), ("admin_function",)),
    Case('SELECT U&"\\D83D" FROM t', U, "", (), ("unparsed",)),
    # functions with side effects, however spelt
    Case("SELECT pg_catalog.set_config('role', 'postgres', false)", A, "select", (), ("admin_function",)),
    Case('SELECT "pg_terminate_backend"(1)', A, "select", (), ("admin_function",)),
    Case("SELECT * FROM dblink('x', 'DELETE FROM t') AS r(a int)", A, "select", (), ("admin_function",)),
    Case("SELECT lo_import('/etc/passwd')", A, "select", (), ("admin_function",)),
    Case("SELECT pg_read_file('/etc/passwd')", A, "select", (), ("admin_function",)),
    Case("UPDATE t SET a = pg_sleep(10) WHERE id = 1", A, "update", ("public.t",), ("admin_function",)),
    Case("SELECT query_to_xml('DELETE FROM t RETURNING 1', true, true, '')", U, "select", (),
         ("sql_in_string",)),
    Case('SELECT "LOWER"(x) FROM t', U, "select", ("public.t",), ("unknown_function",)),
    Case("SELECT evil.lower(x) FROM t", U, "select", ("public.t",), ("unknown_function",)),
    Case("SELECT * FROM my_srf()", U, "select", (), ("unknown_function",)),
    # procedural code and not recognised statements
    Case("DO $$ BEGIN DROP TABLE t; END $$", U, "do", (), ("unparsed",)),
    Case("DO LANGUAGE plpgsql 'BEGIN DELETE FROM t; END'", U, "do", (), ("unparsed",)),
    Case("CALL proc(1)", U, "call", (), ("unparsed",)),
    Case("garbage words here", U, "garbage", (), ("unparsed",)),
    Case("ＤＲＯＰ TABLE t", U, "ｄｒｏｐ", (), ("unparsed",)),
    Case("START SOMETHING", U, "start", (), ("unparsed",)),
    Case("BEGIN; SELECT (1", U, "select", (), ("multi_statement", "unparsed")),
    # identifiers PostgreSQL truncates to 63 bytes
    Case("DROP TABLE " + "p" * 63 + "_tail", D, "drop", ("public." + "p" * 63,)),
]

MYSQL = [
    Case("SELECT a FROM db.t WHERE id = 1", R, "select", ("db.t",)),
    Case("SELECT upper(x) FROM `T`", R, "select", ("T",)),
    Case("DELETE FROM t", W, "delete", ("t",), ("no_where",)),
    Case("DELETE a FROM a JOIN b ON a.x = b.x WHERE b.y = 1", W, "delete", ("a", "b")),
    Case("UPDATE a JOIN b ON a.x = b.x SET a.y = 1", W, "update", ("a", "b"), ("no_where",)),
    Case("REPLACE INTO t VALUES (1)", W, "replace", ("t",)),
    Case("INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE a = 1", W, "insert", ("t",)),
    Case("SELECT a INTO @v FROM t", R, "select", ("t",)),
    Case("SELECT a INTO OUTFILE '/tmp/x' FROM t", U, "select", (), ("server_file", "unparsed")),
    Case("LOAD DATA LOCAL INFILE 'x' INTO TABLE t", W, "load", ("t",), ("local_infile",)),
    Case("LOAD DATA INFILE '/etc/passwd' INTO TABLE t", A, "load", ("t",), ("server_file",)),
    Case("SELECT /*! DROP TABLE t */ 1", U, "select", (), ("executable_comment",)),
    Case("SELECT 1 -- c ; DROP TABLE t", R, "select"),
    Case("SELECT 1 # c ; DROP TABLE t", R, "select"),
    Case("SELECT 1--1; DROP TABLE t", D, "drop", ("t",), ("multi_statement",)),
    Case("SELECT 'a\\'; DROP TABLE t; -- '", U, "select", (), ("ambiguous_quoting",)),
    Case("SELECT \"a\\\"; DROP TABLE t; -- \"", U, "select", (), ("ambiguous_quoting",)),
    Case("SELECT /* /* */ 1; DROP TABLE t", D, "drop", ("t",), ("multi_statement",)),
    Case("SHOW TABLES", R, "show"),
    Case("DESCRIBE t", R, "describe", ("t",)),
    Case("EXPLAIN ANALYZE DELETE FROM t", W, "delete", ("t",), ("explain_analyze", "no_where")),
    Case("ANALYZE TABLE t", A, "analyze", ("t",)),
    Case("SET NAMES utf8mb4", R, "set"),
    # character sets and sql_mode the MySQL plugin follows as the server reports them (gw_sqlanalysis.mysql)
    Case("SET NAMES gbk", R, "set"),
    Case("SET NAMES ucs2", A, "set"),
    Case("SET NAMES 'utf8mb4'", A, "set"),
    Case("SET @x = 1, @y = 2", R, "set"),
    Case("SET @x = SLEEP(10)", A, "set", (), ("admin_function",)),
    Case("SET GLOBAL max_connections = 10", A, "set"),
    Case("SET SESSION sql_mode = ''", R, "set"),
    Case("SET autocommit = 0", T, "set"),
    Case("START TRANSACTION", T, "begin"),
    Case("BEGIN NOT ATOMIC DROP TABLE t; END", U, "begin", (), ("multi_statement", "unparsed")),
    Case("GRANT ALL ON db.* TO 'u'@'%'", A, "grant", ("db.*",)),
    Case("CREATE USER 'u'@'%' IDENTIFIED BY 'x'", A, "create"),
    Case("RENAME TABLE a TO b", D, "rename", ("a", "b")),
    Case("TRUNCATE TABLE t", W, "truncate", ("t",), ("no_where",)),
    Case("SELECT SLEEP(5)", A, "select", (), ("admin_function",)),
    Case("SELECT `UPPER`(x) FROM t", U, "select", ("t",), ("unknown_function",)),
    Case("PREPARE s FROM 'DELETE FROM t'", U, "prepare", (), ("unparsed",)),
    Case("DO SLEEP(1)", U, "do", (), ("admin_function", "unparsed")),
    Case("SET STATEMENT max_statement_time = 1 FOR DELETE FROM t", U, "set", (), ("unparsed",)),
    Case("SELECT * FROM t LOCK IN SHARE MODE", W, "select", ("t",), ("for_update",)),
    Case("KILL 5", A, "kill"),
    Case("USE db", R, "use"),
]


def _check(classifier: Classifier, case: Case) -> None:
    got = classifier.classify(case.sql)
    assert (got.kind, got.verb, got.objects, got.flags) == (
        case.kind, case.verb, case.objects, frozenset(case.flags)), case.sql


@pytest.mark.parametrize("case", PG_BASICS + BYPASS, ids=lambda c: c.sql[:60])
def test_postgres_corpus(case: Case) -> None:
    _check(Classifier("postgres"), case)


@pytest.mark.parametrize("case", MYSQL, ids=lambda c: c.sql[:60])
def test_mysql_corpus(case: Case) -> None:
    _check(Classifier("mysql"), case)


def test_corpus_is_large() -> None:
    assert len(PG_BASICS) + len(BYPASS) + len(MYSQL) >= 80


@pytest.mark.parametrize("case", BYPASS, ids=lambda c: c.sql[:60])
def test_no_bypass_is_read_unless_it_only_reads(case: Case) -> None:
    """The bypass property itself: every bypass attempt that writes, drops or runs code is caught as what it
    is (or unknown); the ones classified read are exactly those that only read (verified against the real
    server in test_sqlanalysis_postgres.py)."""
    got = Classifier("postgres").classify(case.sql)
    if got.kind is Kind.READ:
        assert not ({"drop", "delete", "update", "insert", "truncate"} & set(got.verbs)), case.sql


def test_verbs_list_every_statement() -> None:
    got = Classifier("postgres").classify("INSERT INTO a SELECT 1; DELETE FROM b WHERE x = 1; SELECT 2")
    assert got.verb == "delete"
    assert got.verbs == ("delete", "insert", "select")
    assert got.statements == 3
    assert got.fingerprint == "insert into a select ? ; delete from b where x = ? ; select ?"


def test_default_schema_is_configurable() -> None:
    assert Classifier("postgres", default_schema="app").classify("SELECT * FROM t").objects == ("app.t",)
    assert Classifier("mysql", default_schema="shop").classify("SELECT * FROM t").objects == ("shop.t",)


def test_operator_vouched_functions() -> None:
    assert Classifier("postgres").classify("SELECT my_report()").kind is Kind.UNKNOWN
    vouched = Classifier("postgres", safe_functions={"My_Report"})
    assert vouched.classify("SELECT my_report()").kind is Kind.READ


def test_unknown_dialect_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported SQL dialect"):
        Classifier("oracle")
