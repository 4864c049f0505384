"""Statement analysis end to end (psql and psycopg against the real PostgreSQL): safe statements sqlglot cannot
parse run, nesting beyond what gw analyses is refused with a clear message (never a crash, the session goes
on), and a large statement is analysed while other sessions' statements complete."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
import trio
from gw_sqlanalysis import Classifier

STAGES = ('{ use = "recorder" }, { use = "guard", deny = [{ kind = ["unknown", "ddl"], '
          'message = "statement not recognised; rewrite it in plain SQL" }] }')


@pytest.mark.parametrize("statement, expected", [
    ("select @ -5", "5"),
    ("select xmlexists('//a' passing '<a/>')", "t"),
    ("select xmlexists('//b' passing by ref '<a/>')", "f"),
    ("select " + "(" * 60 + "1" + ")" * 60, "1"),
    ("select " + "(" * 1000 + "1" + ")" * 1000, "1"),
    ("select " + "(" * 25 + "1" + "+1)" * 25, "26"),
    ("select " + "(" * 60 + "1" + "+1)" * 60, "61"),
    ("select " + "(" * 120 + "1" + "+1)" * 120, "121"),
    ("select 1 where 1 in " + "(select 1 where 1 in " * 100 + "(1)" + ")" * 100, "1"),
    ("select " + "case when true then (" * 60 + "1" + ") end" * 60, "1"),
    ("select cardinality(" + "array[" * 6 + "1" + "]" * 6 + ")", "1"),
    ("select " + "coalesce(null, " * 25 + "1" + ")" * 25, "1"),
])
async def test_safe_statements_are_allowed(pg_gateway: Any, pg: Any, statement: str, expected: str) -> None:
    async with pg_gateway(stages=STAGES) as gw:
        code, out, err = await pg.psql(pg.dsn(gw.port("pg")), "-Atc", statement)
    assert code == 0, err
    assert out.strip() == expected


DEEP = [
    "select " + "(" * 1000 + "1" + "+1)" * 1000,
    "select 1 where 1 in " + "(select 1 where 1 in " * 1000 + "(1)" + ")" * 1000,
    "select " + "abs(" * 5000 + "1" + ")" * 5000,
    "select " + "(" * 100000 + "1" + "+1)" * 100000,  # 500 KB: analysed off the event loop
]


@pytest.mark.parametrize("statement", DEEP, ids=["arith-1000", "subquery-1000", "calls-5000", "arith-100000"])
async def test_deep_nesting_is_refused_clearly_and_the_session_goes_on(pg_gateway: Any, pg: Any,
                                                                        statement: str) -> None:
    async with pg_gateway(stages=STAGES) as gw:
        def run() -> list[Any]:
            out: list[Any] = []
            with psycopg.connect(pg.dsn(gw.port("pg")), autocommit=True) as c:
                for prepare in (False, True):  # simple Query, then Parse/Bind/Execute
                    try:
                        c.execute(statement, prepare=prepare)
                        out.append("ran")
                    except psycopg.Error as e:
                        assert "RecursionError" not in str(e)
                        if prepare and e.sqlstate == "42601":
                            # The server's own parser gave up on the Parse ("memory exhausted"): nothing ran.
                            out.append("54001")
                        else:
                            assert "nested too deeply for gw to analyse" in str(e), e
                            out.append(e.sqlstate)
                    out.append(c.execute("select 41 + 1").fetchone()[0])  # type: ignore[index]
            return out
        assert await pg.in_thread(run) == ["54001", 42, "54001", 42]
        code, _out, err = await pg.psql(pg.dsn(gw.port("pg")), "-At", "-f", "-",
                                     stdin=statement.encode() + b";\n")
        assert code != 0 and "nested too deeply" in err, err


async def test_another_session_completes_while_a_large_statement_is_analysed(
        pg_gateway: Any, pg: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The large statement's analysis does not return until the other session has run its statements: were it
    analysed on the event loop, the other session could never finish (the wait would run out and fail)."""
    other_done = threading.Event()
    waited: list[bool] = []
    entered = threading.Event()
    original = Classifier.classify

    def classify(self: Classifier, text: str, *args: Any) -> Any:
        if len(text) > 100_000:
            entered.set()
            waited.append(other_done.wait(120))
        return original(self, text, *args)

    monkeypatch.setattr(Classifier, "classify", classify)
    big = "select 1 where 1 in (" + ",".join(str(i) for i in range(200_000)) + ")"  # 1.3 MB
    async with pg_gateway(stages=STAGES, listener='max_analysis_size = "4MiB"') as gw:
        results: list[Any] = []

        def large() -> None:
            with psycopg.connect(pg.dsn(gw.port("pg")), autocommit=True) as c:
                results.append(("large", c.execute(big).fetchone()))

        def other() -> None:
            with psycopg.connect(pg.dsn(gw.port("pg")), autocommit=True) as c:
                for i in range(10):
                    assert c.execute(f"select {i}").fetchone() == (i,)
            results.append(("other", "done"))
            other_done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pg.in_thread, large)
            await trio.to_thread.run_sync(entered.wait, 120)  # the large statement is being analysed
            nursery.start_soon(pg.in_thread, other)
    assert waited == [True]
    assert results == [("other", "done"), ("large", (1,))]


# -- standard_conforming_strings = off: gw lexes as the server does -------------------------------------------

def _victim() -> str:
    import uuid
    name = f"gw_scs_{uuid.uuid4().hex[:8]}"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as c:
        c.execute(f"create table {name} (x int)")
    return name


def _survived(name: str) -> bool:
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as c:
        found = c.execute("select to_regclass(%s) is not null", (name,)).fetchone()[0]  # type: ignore[index]
        c.execute(f"drop table if exists {name}")
        return bool(found)


async def test_scs_off_is_lexed_as_the_server_lexes_it(pg_gateway: Any, pg: Any) -> None:
    """Under ``standard_conforming_strings = off`` a plain string takes backslash escapes: the harmless shapes
    run (gw reads one string, as the server does) and the ones that hide a DROP are refused as the DDL they are;
    with the setting on, the same texts mean the opposite and gw follows."""
    victim = await pg.in_thread(_victim)
    harmless = f"select '\\'; drop table {victim}; -- '"        # off: one string; on: a DROP
    dropping = f"select '\\' as \"x'; drop table {victim}; --\""  # off: a DROP; on: a string, an alias
    async with pg_gateway(stages=STAGES) as gw:
        def run() -> list[Any]:
            out: list[Any] = []
            for scs in ("off", "on", "off"):  # a new connection each time: psycopg reuses what it prepared
                with psycopg.connect(pg.dsn(gw.port("pg")), autocommit=True) as c:
                    c.execute(f"set standard_conforming_strings = {scs}")
                    for text, prepare in ((harmless, False), (dropping, False), (harmless, True), (dropping, True)):
                        try:
                            row = c.execute(text, prepare=prepare).fetchone()
                            out.append((scs, "ran", row[0] if row else None))
                        except psycopg.Error as e:
                            out.append((scs, "refused", e.sqlstate))
                    out.append((scs, "quote", c.execute("select '\\'' || 'x'").fetchone()[0]  # type: ignore[index]
                                if scs == "off" else None))
            return out
        got = await pg.in_thread(run)
    # Prepared (Parse), a text of two statements is rejected by the server itself (42601): nothing runs.
    off = [("off", "ran", f"'; drop table {victim}; -- "), ("off", "refused", "42501"),
           ("off", "ran", f"'; drop table {victim}; -- "), ("off", "refused", "42601"), ("off", "quote", "'x")]
    on = [("on", "refused", "42501"), ("on", "ran", "\\"), ("on", "refused", "42601"), ("on", "ran", "\\"),
          ("on", "quote", None)]
    assert got == off + on + off
    assert await pg.in_thread(_survived, victim)


async def test_scs_off_with_psql(pg_gateway: Any, pg: Any) -> None:
    victim = await pg.in_thread(_victim)
    async with pg_gateway(stages=STAGES) as gw:
        code, out, err = await pg.psql(pg.dsn(gw.port("pg")), "-At", "-f", "-", stdin=(
            b"set standard_conforming_strings = off;\n"
            b"select 'it\\'s';\n"
            b"select '\\'; drop table " + victim.encode() + b"; -- ';\n"))
        assert code == 0, err
        assert out.splitlines() == ["SET", "it's", f"'; drop table {victim}; -- "]
        code, out, err = await pg.psql(pg.dsn(gw.port("pg")), "-At", "-f", "-", stdin=(
            b"set standard_conforming_strings = off;\n"
            b"select 'a\\\\'; drop table " + victim.encode() + b"; --';\n"))
        assert code != 0 and "refused" in err, err
    assert await pg.in_thread(_survived, victim)


async def test_scs_change_in_flight_is_ambiguous(pg_gateway: Any, pg: Any) -> None:
    """A statement sent while a SET of the setting is still in flight (a pipeline) cannot be lexed for certain:
    if the two readings differ it is unknown and refused; nothing is dropped."""
    victim = await pg.in_thread(_victim)
    async with pg_gateway(stages=STAGES) as gw:
        def run() -> list[Any]:
            out: list[Any] = []
            with psycopg.connect(pg.dsn(gw.port("pg")), autocommit=True) as c:
                try:
                    with c.pipeline():
                        c.execute("set standard_conforming_strings = off")
                        c.execute(f"select '\\'; drop table {victim}; -- '")
                except psycopg.Error as e:
                    out.append(e.sqlstate)
            return out
        assert await pg.in_thread(run) == ["42501"]
    assert await pg.in_thread(_survived, victim)


async def test_a_user_function_named_like_another_databases_builtin_is_not_vouched_for(pg_gateway: Any,
                                                                                      pg: Any) -> None:
    """``ifnull`` is a built-in of MySQL (sqlglot models it), not of PostgreSQL: here it can only be a function
    someone created, and this one deletes.  gw must not call it a read."""
    victim = await pg.in_thread(_victim)

    def create() -> None:
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as c:
            c.execute(f"insert into {victim} values (1), (2)")
            c.execute(f"create or replace function public.ifnull(a int, b int) returns int language sql as "
                      f"$$ delete from {victim}; select 1 $$")
    await pg.in_thread(create)
    try:
        async with pg_gateway(stages=STAGES) as gw:
            code, _out, err = await pg.psql(pg.dsn(gw.port("pg")), "-Atc", "select ifnull(1, 2)")
        assert code != 0 and "statement not recognised" in err, err

        def rows() -> int:
            with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test") as c:
                return int(c.execute(f"select count(*) from {victim}").fetchone()[0])  # type: ignore[index]
        assert await pg.in_thread(rows) == 2
    finally:
        def drop() -> None:
            with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as c:
                c.execute("drop function if exists public.ifnull(int, int)")
        await pg.in_thread(drop)
        await pg.in_thread(_survived, victim)


async def test_a_large_statement_is_masked_by_its_lineage_worked_out_off_the_loop(pg_gateway: Any, pg: Any,
                                                                               monkeypatch: pytest.MonkeyPatch
                                                                               ) -> None:
    """With a stage that needs sources, a long statement's lineage is worked out in a worker thread (here the
    thread waits until another session has run its statements), and its result is still masked by it."""
    from gw_postgres.provenance import Provenance

    table = await pg.in_thread(_victim)

    def fill() -> None:
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as c:
            c.execute(f"alter table {table} add column ssn text")
            c.execute(f"insert into {table} values (1, '123-45-6789')")
    await pg.in_thread(fill)
    other_done = threading.Event()
    entered = threading.Event()
    waited: list[bool] = []
    original = Provenance.prepare

    def prepare(self: Provenance, text: str) -> None:
        entered.set()
        waited.append(other_done.wait(120))
        original(self, text)

    monkeypatch.setattr(Provenance, "prepare", prepare)
    big = f"select x, ssn from {table} where x in (" + ",".join(str(i) for i in range(30_000)) + ")"
    stages = f'{{ use = "mask_sources", sources = ["public.{table}.ssn"] }}'
    try:
        async with pg_gateway(stages=stages) as gw:
            results: list[Any] = []

            def large() -> None:
                with psycopg.connect(pg.dsn(gw.port("pg")), autocommit=True) as c:
                    results.append(("large", c.execute(big).fetchall()))

            def other() -> None:
                with psycopg.connect(pg.dsn(gw.port("pg")), autocommit=True) as c:
                    assert c.execute("select 7").fetchone() == (7,)
                results.append(("other", "done"))
                other_done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(pg.in_thread, large)
                await trio.to_thread.run_sync(entered.wait, 120)
                nursery.start_soon(pg.in_thread, other)
        assert waited == [True]
        assert results == [("other", "done"), ("large", [(1, "***")])]
    finally:
        await pg.in_thread(_survived, table)
