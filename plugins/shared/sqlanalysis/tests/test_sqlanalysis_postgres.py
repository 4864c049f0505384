"""The lexer agrees with the real PostgreSQL server: each tricky text is sent as one simple-protocol query and
the server's behaviour (did the canary table survive? did its rows?) is compared with gw's classification.

A text gw calls ``read`` must leave the canary intact; a text that drops or empties it must be classified as
the DDL / write it is, or as ``unknown``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from gw.model import Kind
from gw.testing import require_service
from gw_sqlanalysis import Classifier

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"

# (text with {t} for the canary table, what the server does to it, gw's kind)
CASES = [
    ("SELECT 1; DROP TABLE {t}", "dropped", Kind.DDL),
    ("dRoP/**/TaBlE {t}", "dropped", Kind.DDL),
    ("SELECT 1 /* ; */ ; DROP TABLE {t}", "dropped", Kind.DDL),
    ("SELECT 'x'\n'y'; DROP TABLE {t}", "dropped", Kind.DDL),
    ('DROP TABLE {u}', "dropped", Kind.DDL),
    ("SELECT 'a\\'; DROP TABLE {t}; --'", "dropped", Kind.UNKNOWN),
    ("SELECT /* /* */ ; DROP TABLE {t}; */ 1", "intact", Kind.READ),
    ("SELECT $x$ ; DROP TABLE {t}; $x$", "intact", Kind.READ),
    ("SELECT $a$ $b$ ; DROP TABLE {t}; $b$ $a$", "intact", Kind.READ),
    ("SELECT E'a\\'; DROP TABLE {t}; --'", "intact", Kind.READ),
    ("SELECT 1 -- ; DROP TABLE {t}", "intact", Kind.READ),
    ("SELECT B'01''; DROP TABLE {t}; --'", "intact", Kind.READ),
    ("DROP\u00a0TABLE {t}", "intact", Kind.UNKNOWN),
    ("EXPLAIN DELETE FROM {t}", "intact", Kind.READ),
    ("EXPLAIN ANALYZE DELETE FROM {t}", "emptied", Kind.WRITE),
    ("EXPLAIN (ANALYZE 1) DELETE FROM {t}", "emptied", Kind.WRITE),
    ("WITH x AS (DELETE FROM {t} RETURNING *) SELECT count(*) FROM x", "emptied", Kind.WRITE),
    ("PREPARE p_{t} AS DELETE FROM {t}; EXECUTE p_{t}", "emptied", Kind.UNKNOWN),
    ("DO $$ BEGIN EXECUTE 'DROP TABLE {t}'; END $$", "dropped", Kind.UNKNOWN),
]


@pytest.fixture
def server() -> Iterator[Any]:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    import psycopg

    with psycopg.connect(DSN, autocommit=True) as conn:
        yield conn


def _unicode_escaped(name: str) -> str:
    return 'U&"' + "".join(f"\\{ord(ch):04x}" for ch in name) + '"'


def _outcome(conn: Any, table: str) -> str:
    if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
        return "dropped"
    return "intact" if conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 3 else "emptied"


@pytest.mark.parametrize(("template", "expected", "kind"), CASES, ids=[c[0][:50] for c in CASES])
def test_classification_matches_what_the_server_does(server: Any, template: str, expected: str,
                                                     kind: Kind) -> None:
    import psycopg

    table = f"gw_canary_{secrets.token_hex(4)}"
    server.execute(f"CREATE TABLE {table} (id int)")
    server.execute(f"INSERT INTO {table} VALUES (1), (2), (3)")
    text = template.format(t=table, u=_unicode_escaped(table))
    try:
        try:
            server.execute(text)
        except psycopg.Error:
            pass  # a statement the server rejects has done nothing; the outcome says so
        outcome = _outcome(server, table)
        got = Classifier("postgres").classify(text)
        assert outcome == expected, f"the server did not behave as this test assumes for {text!r}"
        assert got.kind is kind, (text, got)
        if got.kind is Kind.READ:
            assert outcome == "intact"
        if outcome == "dropped" and got.kind is Kind.DDL:
            assert f"public.{table}" in got.objects
    finally:
        server.execute(f"DEALLOCATE ALL; DROP TABLE IF EXISTS {table}")


def test_backslash_ambiguity_is_real(server: Any) -> None:
    """With standard_conforming_strings off, the server reads backslash-quote as an escaped quote: the same
    text that is one harmless SELECT under the default setting drops a table.  gw cannot know the session's
    setting, so such text is unknown."""
    table = f"gw_canary_{secrets.token_hex(4)}"
    server.execute(f"CREATE TABLE {table} (id int)")
    try:
        server.execute("SET standard_conforming_strings = off")
        text = f"SELECT 'a\\'' ; DROP TABLE {table}; --'"
        server.execute(text)
        assert server.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None
        got = Classifier("postgres").classify(text)
        assert got.kind is Kind.UNKNOWN and "ambiguous_quoting" in got.flags
    finally:
        server.execute("RESET standard_conforming_strings")
        server.execute(f"DROP TABLE IF EXISTS {table}")


@pytest.mark.parametrize("text", ["select int4range(1,5) @> 3", "select point(1,2)", "select is_normalized('x')",
                                  "select current_query()", "select box(point(1,2), point(3,4))",
                                  "select lower(int4range(1,5)), isempty(numrange(1, 1))"])
def test_harmless_builtins_are_reads(text: str) -> None:
    from gw.model import Kind
    from gw_sqlanalysis import Classifier

    assert Classifier().classify(text).kind is Kind.READ


@pytest.mark.parametrize("text", ["select purge_everything(1)", "select public.point(1, 2)", 'select "POINT"(1, 2)'])
def test_functions_gw_cannot_vouch_for_stay_unknown(text: str) -> None:
    from gw.model import Kind
    from gw_sqlanalysis import Classifier

    assert Classifier().classify(text).kind is Kind.UNKNOWN


def test_operator_functions_take_their_declared_kind() -> None:
    from gw.model import Kind
    from gw_sqlanalysis import Classifier

    c = Classifier(functions={"myschema.purge": "write", "audit_ping": "read", "Nuke": "admin"})
    assert c.classify("select myschema.purge(1)").kind is Kind.WRITE
    assert c.classify("select audit_ping()").kind is Kind.READ
    assert c.classify("select nuke()").kind is Kind.ADMIN
    assert c.classify("select other.purge(1)").kind is Kind.UNKNOWN  # another schema's purge: not vouched for
    assert c.classify("select purge(1)").kind is Kind.UNKNOWN
