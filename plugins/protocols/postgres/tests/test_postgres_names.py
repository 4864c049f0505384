"""Prepared statements and portals are what the server confirmed: the name-collision attack, names gw never
saw established, SQL PREPARE / EXECUTE / DEALLOCATE, all end to end against the real PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import trio

STAGES = '{ use = "recorder" }, { use = "deny_verbs", verbs = ["delete"] }'


def _table() -> str:
    return f"gw_names_{uuid.uuid4().hex[:8]}"


def _setup(t: str) -> None:
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as c:
        c.execute(f"create table {t} (x int)")
        c.execute(f"insert into {t} values (1), (1), (2)")


def _count(t: str) -> int:
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as c:
        n = c.execute(f"select count(*) from {t}").fetchone()[0]  # type: ignore[index]
        c.execute(f"drop table {t}")
        return int(n)


def _state(r: Any) -> str | None:
    code = r.error_field(psycopg.pq.DiagnosticField.SQLSTATE)
    return code.decode() if code is not None else None


def _collision(dsn: str, t: str) -> list[Any]:
    out: list[Any] = []
    with psycopg.connect(dsn, autocommit=True) as c:
        # SQL PREPARE is judged as its statement: a guard that refuses a DELETE refuses preparing one
        try:
            c.execute(f"prepare s2 as delete from {t} where x = 1")
        except psycopg.Error as e:
            out.append(("prepare", e.sqlstate))
    return out


def _collision_allowed_prepare(dsn: str, t: str) -> list[Any]:
    """The attack of the issue: SQL PREPARE of a DELETE (allowed: the guard here denies only "forbidden"),
    a protocol Parse of the same name with a cover text (rejected by the server: 42P05), then Bind/Execute."""
    out: list[Any] = []
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"prepare s2 as delete from {t} where x = 1")
        pg = c.pgconn
        r = pg.prepare(b"s2", b"select 1")
        out.append(("parse", _state(r)))
        r = pg.exec_prepared(b"s2", [])
        out.append(("execute", _state(r)))
        # A name nobody established
        r = pg.exec_prepared(b"never", [])
        out.append(("unknown", _state(r)))
        # SQL EXECUTE is judged as the prepared statement
        try:
            c.execute("execute s2")
        except psycopg.Error as e:
            out.append(("sql execute", e.sqlstate))
        try:
            c.execute("explain analyze execute s2")
        except psycopg.Error as e:
            out.append(("explain analyze execute", e.sqlstate))
        c.execute("deallocate s2")
        try:
            c.execute("execute s2")
        except psycopg.Error as e:
            out.append(("after deallocate", e.sqlstate))
        # A statement gw saw established runs, and the audit says what it was.
        c.execute("prepare s3 as select 42")
        out.append(("s3", c.execute("execute s3").fetchone()))
        r = pg.exec_prepared(b"s3", [])
        out.append(("s3 protocol", r.get_value(0, 0)))
    return out


async def test_name_collision_runs_the_servers_statement_and_the_audit_says_so(pg_gateway: Any, pg: Any,
                                                                                 events: list[Any]) -> None:
    t = _table()
    await pg.in_thread(_setup, t)
    async with pg_gateway(stages=STAGES) as gw:
        out = await pg.in_thread(_collision_allowed_prepare, pg.dsn(gw.port("pg")), t)
    assert out == [("parse", "42P05"), ("execute", "42501"), ("unknown", "26000"), ("sql execute", "42501"),
                   ("explain analyze execute", "42501"), ("after deallocate", "26000"), ("s3", (42,)),
                   ("s3 protocol", b"42")]
    assert await pg.in_thread(_count, t) == 3  # nothing deleted
    decided = [e[1] for e in events if e[0] == "decided"]
    # The protocol Execute of s2 was judged (and recorded) as the DELETE the server holds, not "select 1".
    executes = [d for d in decided if d[0] == f"delete from {t} where x = 1"]
    assert [d[1:4] for d in executes] == [("write", "delete", "deny")] * 2  # protocol Execute, SQL EXECUTE
    assert ("explain analyze execute s2", "write", "delete", "deny", ()) in decided
    assert not any(d[0] == "select 1" and d[3] == "allow" for d in decided[1:])
    assert ("select 42", "read", "select", "allow", ()) in decided


async def test_prepare_of_a_denied_statement_is_denied(pg_gateway: Any, pg: Any) -> None:
    t = _table()
    await pg.in_thread(_setup, t)
    async with pg_gateway(stages='{ use = "deny_words", words = ["delete"] }') as gw:
        out = await pg.in_thread(_collision, pg.dsn(gw.port("pg")), t)
    assert out == [("prepare", "42501")]
    assert await pg.in_thread(_count, t) == 3


async def test_pipelined_batches_wait_for_the_servers_answer(pg_gateway: Any, pg: Any, events: list[Any]) -> None:
    """Parse (rejected) ; Sync ; Bind/Execute of the name ; Sync sent in one write: gw waits for the Parse's
    answer before judging the Execute, so it judges the statement the server really holds."""
    await _pipelined_batches(pg_gateway, pg, events)


async def test_an_answer_relayed_while_gw_still_sends_is_not_missed(pg_gateway: Any, pg: Any, events: list[Any],
                                                                     monkeypatch: Any) -> None:
    """The same batches when the server's answer arrives, and is relayed, while gw is still sending what it
    queued: the waiting Bind sees it (it once waited for an answer that had already come, and the client hung)."""
    from gw_postgres.session import ProxySession

    flush = ProxySession._flush_upstream

    async def slow_flush(self: Any) -> None:
        await flush(self)
        await trio.sleep(0.3)  # the upstream answers before this send returns

    monkeypatch.setattr(ProxySession, "_flush_upstream", slow_flush)
    await _pipelined_batches(pg_gateway, pg, events)


async def _pipelined_batches(pg_gateway: Any, pg: Any, events: list[Any]) -> None:
    from gw_postgres.messages import (
        Bind,
        CommandComplete,
        ErrorResponse,
        Execute,
        Parse,
        Query,
        ReadyForQuery,
        Sync,
    )

    t = _table()
    await pg.in_thread(_setup, t)
    async with pg_gateway(stages=STAGES) as gw:
        client = await pg.RawClient.connect(gw.port("pg"))
        await client.login()
        await client.send(Query(f"prepare s2 as delete from {t} where x = 1"))
        assert any(isinstance(m, CommandComplete) for m in await client.until(ReadyForQuery))
        await client.send(Parse("s2", "select 1"), Sync(), Bind("", "s2"), Execute(""), Sync())
        first = await client.until(ReadyForQuery)
        second = await client.until(ReadyForQuery)
        await client.aclose()
    assert [m.code for m in first if isinstance(m, ErrorResponse)] == ["42P05"]
    assert [m.code for m in second if isinstance(m, ErrorResponse)] == ["42501"]
    assert await pg.in_thread(_count, t) == 3
    decided = [e[1] for e in events if e[0] == "decided"]
    assert decided[-1][0].startswith(f"delete from {t}") and decided[-1][3] == "deny"


async def test_same_batch_cover_text_never_runs(pg_gateway: Any, pg: Any) -> None:
    """Parse s2 (rejected), Bind, Execute in one batch: the server skips the rest of the batch."""
    from gw_postgres.messages import (
        Bind,
        CommandComplete,
        DataRow,
        ErrorResponse,
        Execute,
        Parse,
        Query,
        ReadyForQuery,
        Sync,
    )

    t = _table()
    await pg.in_thread(_setup, t)
    async with pg_gateway(stages=STAGES) as gw:
        client = await pg.RawClient.connect(gw.port("pg"))
        await client.login()
        await client.send(Query(f"prepare s2 as delete from {t} where x = 1"))
        await client.until(ReadyForQuery)
        await client.send(Parse("s2", "select 1"), Bind("", "s2"), Execute(""), Sync())
        got = await client.until(ReadyForQuery)
        await client.aclose()
    assert [m.code for m in got if isinstance(m, ErrorResponse)] == ["42P05"]
    assert not any(isinstance(m, (DataRow, CommandComplete)) for m in got)
    assert await pg.in_thread(_count, t) == 3


async def test_sql_prepared_names_are_usable_from_the_protocol(pg_gateway: Any, pg: Any) -> None:
    def run(dsn: str) -> Any:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("prepare q as select 1")
            return c.pgconn.exec_prepared(b"q", []).get_value(0, 0)

    async with pg_gateway(stages=STAGES) as gw:
        assert await pg.in_thread(run, pg.dsn(gw.port("pg"))) == b"1"


async def test_a_declared_cursor_is_a_portal_the_protocol_may_describe(pg_gateway: Any, pg: Any) -> None:
    from gw_postgres.messages import (
        Bind,
        CommandComplete,
        Describe,
        ErrorResponse,
        Execute,
        Parse,
        Query,
        ReadyForQuery,
        RowDescription,
        Sync,
    )

    async with pg_gateway(stages=STAGES) as gw:
        client = await pg.RawClient.connect(gw.port("pg"))
        await client.login()
        await client.send(Query("begin"))
        await client.until(ReadyForQuery)
        await client.send(Parse("", "declare c cursor for select 1"), Bind("", ""), Describe("P", ""), Execute(""),
                          Sync())
        assert isinstance((await client.until(ReadyForQuery))[-2], CommandComplete)
        await client.send(Describe("P", "c"), Sync(), Describe("P", "nope"), Sync())
        assert isinstance((await client.until(ReadyForQuery))[0], RowDescription)
        refused = (await client.until(ReadyForQuery))[0]
        await client.aclose()
    assert isinstance(refused, ErrorResponse) and refused.code == "34000"
