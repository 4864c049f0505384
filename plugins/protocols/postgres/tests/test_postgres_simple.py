"""End to end, simple query protocol: psql and psycopg through gw against the real PostgreSQL, plus the
refusals an agent meets (policy, token, group, database) and session endings (token expiry, shutdown)."""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
import pytest
from gw_postgres.messages import ErrorResponse, NoticeResponse, Query, ReadyForQuery


def table() -> str:
    return f"gw_pg_{secrets.token_hex(4)}"


SCRIPT = """
create table {t} (id int primary key, name text, ssn text);
insert into {t} values (1, 'ann', '111-22-3333'), (2, 'bob', null);
insert into {t} values (3, 'cy', '444-55-6666') returning id, name;
select * from {t} order by id; select count(*) as n from {t};
update {t} set name = upper(name) where id > 1;
select name, ssn as x, length(ssn) from {t} order by id;
delete from {t} where id = 3;
select '' as empty, null as nothing, 'tab\there' as tab, 1.5::numeric as num;
drop table {t};
"""


async def test_psql_gives_the_same_answers_as_direct(pg_gateway: Any, pg: Any, events: list[Any]) -> None:
    async with pg_gateway() as gw:
        t1, t2 = table(), table()
        code, via_gw, err = await pg.psql(pg.dsn(gw.port("pg")), "-c", SCRIPT.format(t=t1))
        assert code == 0, err
        code, direct, err = await pg.psql(pg.DIRECT, "-c", SCRIPT.format(t=t2))
        assert code == 0, err
    assert via_gw.replace(t1, "T") == direct.replace(t2, "T")
    assert "444-55-6666" in via_gw and "INSERT 0 1" in via_gw
    completed = [e[1] for e in events if e[0] == "completed"]
    assert completed and completed[0][1] == "ok" and completed[0][3] == "DROP TABLE"  # last tag of the batch
    assert ("started", ("alice", "alice")) in events
    assert ("ended", "client_closed") in events


async def test_psql_statements_one_by_one(pg_gateway: Any, pg: Any, events: list[Any]) -> None:
    t = table()
    async with pg_gateway() as gw:
        args: list[str] = []
        for stmt in SCRIPT.format(t=t).strip().splitlines():
            args += ["-c", stmt]
        code, _, err = await pg.psql(pg.dsn(gw.port("pg")), *args)
    assert code == 0, err
    completed = [e[1] for e in events if e[0] == "completed"]
    assert len(completed) == 9
    assert completed[1][1:4] == ("ok", 2, "INSERT 0 2")
    assert completed[3][2] == 4 and completed[3][3] == "SELECT 1"  # rows of both statements; last tag


def _psycopg_session(dsn: str, t: str) -> list[Any]:
    out: list[Any] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = psycopg.ClientCursor(conn)
        cur.execute(f"create table {t} (id int, v text)")
        cur.execute(f"insert into {t} values (%s, %s), (%s, %s)", (1, "a", 2, None))
        out.append(cur.rowcount)
        cur.execute(f"select * from {t} order by id")
        out.append(cur.fetchall())
        cur.execute(f"select v from {t} where id = %s; select count(*) from {t}", (1,))
        out.append(cur.fetchall())
        with conn.transaction():
            cur.execute(f"update {t} set v = 'z'")
            out.append(cur.rowcount)
        cur.execute(f"drop table {t}")
        out.append(conn.info.transaction_status.name)
    return out


async def test_psycopg_simple_protocol_same_as_direct(pg_gateway: Any, pg: Any) -> None:
    async with pg_gateway() as gw:
        via_gw = await pg.in_thread(_psycopg_session, pg.dsn(gw.port("pg")), table())
    direct = await pg.in_thread(_psycopg_session, pg.DIRECT, table())
    assert via_gw == direct == [2, [(1, "a"), (2, None)], [("a",)], 2, "IDLE"]


def _refused_then_usable(dsn: str) -> list[Any]:
    out: list[Any] = []
    notices: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        cur = psycopg.ClientCursor(conn)
        try:
            cur.execute("select 'forbidden fruit'")
        except psycopg.Error as e:
            out.append((e.sqlstate, str(e).splitlines()[0]))
        cur.execute("select 1")
        out.append(cur.fetchone())
        # In a transaction, a refusal aborts it, as any PostgreSQL error would.
        conn.execute("begin")
        cur.execute("select 2")
        try:
            cur.execute("select 'forbidden'")
        except psycopg.Error as e:
            out.append(e.sqlstate)
        out.append(conn.info.transaction_status.name)
        try:
            cur.execute("select 3")
        except psycopg.Error as e:
            out.append(e.sqlstate)
        conn.execute("rollback")
        cur.execute("select 'notice me'")
        out.append(cur.fetchone())
    out.append(notices)
    return out


async def test_policy_refusal_is_42501_and_the_session_stays_usable(pg_gateway: Any, pg: Any,
                                                                    events: list[Any]) -> None:
    async with pg_gateway() as gw:
        out = await pg.in_thread(_refused_then_usable, pg.dsn(gw.port("pg")))
    assert out[0] == ("42501", "statements mentioning 'forbidden' are not allowed here; rephrase without it")
    assert out[1] == (1,)
    assert out[2:5] == ["42501", "INERROR", "25P02"]  # current transaction is aborted
    assert out[5] == ("notice me",)
    assert out[6] == ["gw: this statement was noticed"]
    assert ("completed", ("select 'forbidden fruit'", "denied", None, None, "42501")) in events


@pytest.mark.parametrize("code,sqlstate", [("approval_timeout", "57014"), ("unavailable", "58000"),
                                           ("internal", "XX000"), ("approval_required", "42501")])
async def test_refusal_sqlstate_follows_the_deny_code(pg_gateway: Any, pg: Any, code: str,
                                                      sqlstate: str) -> None:
    stages = f'{{ use = "deny_words", words = ["forbidden"], code = "{code}" }}'
    async with pg_gateway(stages=stages) as gw:
        c = await pg.RawClient.connect(gw.port("pg"))
        assert isinstance((await c.login())[-1], ReadyForQuery)
        await c.send(Query("select 'forbidden'"))
        msgs = await c.until(ReadyForQuery)
        assert [type(m).__name__ for m in msgs] == ["ErrorResponse", "ReadyForQuery"]
        assert msgs[0].code == sqlstate and msgs[0].severity == "ERROR"
        assert "refused by gw stage 'deny_words', rule 'no-forbidden'" in msgs[0].get("D")
        await c.aclose()


async def test_wrong_token_group_and_database_are_refused(pg_gateway: Any, pg: Any, events: list[Any]) -> None:
    async with pg_gateway() as gw:
        port = gw.port("pg")
        code, _, err = await pg.psql(pg.dsn(port, "alice", password="forged.token"), "-c", "select 1")
        assert code == 2 and "FATAL:  invalid token: signature verification failed" in err
        code, _, err = await pg.psql(pg.dsn(port, "bob"), "-c", "select 1")
        assert code == 2 and "is not in a group allowed on listener 'pg'" in err
        code, _, err = await pg.psql(pg.dsn(port, "alice", dbname="postgres"), "-c", "select 1")
        assert code == 2 and "database 'postgres' is not served by listener 'pg'" in err
        c = await pg.RawClient.connect(port)
        (err_msg,) = await c.login("alice", token="")
        assert isinstance(err_msg, ErrorResponse) and err_msg.code == "28P01"
        c = await pg.RawClient.connect(port)
        (err_msg,) = await c.login("bob")
        assert err_msg.code == "28000" and err_msg.severity == "FATAL"
    refused = [e[1] for e in events if e[0] == "refused"]
    assert refused.count("invalid_token") == 2 and "group_not_allowed" in refused and "wrong_database" in refused


async def test_role_mapping_picks_the_first_matching_group(pg_gateway: Any, pg: Any) -> None:
    upstream = 'roles = [{ groups = ["dba"], user = "postgres" }, { groups = ["agents"], user = "gw_nobody" }]'
    async with pg_gateway(upstream=upstream) as gw:
        code, out, err = await pg.psql(pg.dsn(gw.port("pg"), "dana"), "-Atc", "select current_user")
        assert (code, out.strip()) == (0, "postgres"), err
        # alice maps to a role the upstream does not know: the upstream's refusal is reported, not leaked.
        code, _, err = await pg.psql(pg.dsn(gw.port("pg"), "alice"), "-Atc", "select 1")
        assert code == 2 and "refused gw's log-in (28000); tell the gateway operator" in err
    upstream = 'roles = [{ groups = ["dba"], user = "postgres" }]'
    async with pg_gateway(upstream=upstream) as gw:
        c = await pg.RawClient.connect(gw.port("pg"))
        (err_msg,) = await c.login("alice")
        assert err_msg.code == "28000" and "no upstream role of listener 'pg' is mapped to your groups" in \
            err_msg.message


async def test_token_expiry_closes_the_session_with_57P01(pg_gateway: Any, pg: Any, events: list[Any]) -> None:
    async with pg_gateway(eve_ttl=0.6) as gw:
        c = await pg.RawClient.connect(gw.port("pg"))
        assert isinstance((await c.login("eve"))[-1], ReadyForQuery)
        await c.send(Query("select 1"))
        await c.until(ReadyForQuery)
        msgs = await c.until(ErrorResponse, timeout=3)
        assert msgs[-1].code == "57P01" and msgs[-1].severity == "FATAL"
        assert msgs[-1].message == "token expired; reconnect with a fresh token"
        assert await c.recv() is None
    assert ("ended", "token_expired") in events


async def test_shutdown_tells_idle_clients(pg_gateway: Any, pg: Any) -> None:
    async with pg_gateway() as gw:
        c = await pg.RawClient.connect(gw.port("pg"))
        assert isinstance((await c.login())[-1], ReadyForQuery)
        gw.gateway.shutdown()
        msgs = await c.until(ErrorResponse)
        assert msgs[-1].code == "57P01" and "shutting down" in msgs[-1].message


async def test_notice_and_parameter_status_are_relayed(pg_gateway: Any, pg: Any) -> None:
    async with pg_gateway() as gw:
        c = await pg.RawClient.connect(gw.port("pg"))
        hello = await c.login()
        names = {m.name for m in hello if type(m).__name__ == "ParameterStatus"}
        assert {"server_version", "client_encoding", "TimeZone", "integer_datetimes"} <= names
        await c.send(Query("do $$ begin raise notice 'hello from plpgsql'; end $$; set timezone = 'UTC'"))
        msgs = await c.until(ReadyForQuery)
        assert any(isinstance(m, NoticeResponse) and m.message == "hello from plpgsql" for m in msgs)
        assert any(type(m).__name__ == "ParameterStatus" and m.value == "UTC" for m in msgs)
        await c.aclose()


async def test_describe_upstream_and_classify(pg_gateway: Any) -> None:
    async with pg_gateway() as gw:
        handler = gw.runtime.listeners["pg"].handler
        assert handler.describe_upstream() == "127.0.0.1:5432/test"
        from gw.model import Identity, Session

        session = Session("s", "pg", "postgres", Identity("x"), "127.0.0.1:1", "u", 0.0)
        cmd = handler.classify("select 1", session=session)
        assert cmd.text == "select 1" and cmd.language == "sql"
        assert "password" not in handler.describe_upstream()


async def test_sources_are_worked_out_only_for_a_stage_that_wants_them(pg_gateway: Any, pg: Any,
                                                                      events: list[Any]) -> None:
    """A stage observing rows without ``wants_sources`` gets the wire's columns with unknown sources (gw does
    no lineage or catalog work for it); beside one that wants them, both see the real lineage."""
    t = table()
    code, _, err = await pg.psql(pg.DIRECT, "-c", f"create table {t} (id int, ssn text);"
                                 f"insert into {t} values (1, 's1')")
    assert code == 0, err
    query = f"select id, upper(ssn) as shout from {t}"
    try:
        async with pg_gateway(stages='{ use = "row_names" }') as gw:
            catalog = gw.runtime.listeners["pg"].handler.catalog
            code, out, err = await pg.psql(pg.dsn(gw.port("pg")), "-Atc", query)
            assert (code, out.strip()) == (0, "1|S1"), err
            assert [e[1] for e in events if e[0] == "row_names"] == [
                [("id", "int4", ("*.*.*",)), ("shout", "text", ("*.*.*",))]]
            assert ("row", (b"1", b"S1")) in events
            # the catalog was never asked (it connects on its first lookup)
            assert catalog._conn is None and not catalog._names and not catalog._tables
        events.clear()
        stages = f'{{ use = "mask_sources", sources = ["public.{t}.ssn"] }}, {{ use = "row_names" }}'
        async with pg_gateway(stages=stages) as gw:
            code, out, err = await pg.psql(pg.dsn(gw.port("pg")), "-Atc", query)
            assert (code, out.strip()) == (0, "1|***"), err
            assert [e[1] for e in events if e[0] == "row_names"] == [
                [("id", "int4", (f"public.{t}.id",)), ("shout", "text", (f"public.{t}.ssn",))]]
    finally:
        await pg.psql(pg.DIRECT, "-c", f"drop table {t}")


def _fetch(dsn: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:  # the extended protocol
        return conn.execute(query).fetchall()


async def test_a_large_result_is_masked_a_chunk_of_rows_at_a_time(pg_gateway: Any, pg: Any,
                                                                  events: list[Any]) -> None:
    """A filter that offers column edits sees each received chunk of DataRows in one call, never a row alone,
    and every value is masked as row by row: NULLs, non-ASCII text, a finding in a scanned column among many
    rows without one, rows larger than a read (split across reads, spanning several chunks)."""
    t = table()
    code, _, err = await pg.psql(pg.DIRECT, "-c", f"""
        create table {t} (id int, ssn text, note text, tail text);
        insert into {t} select g, case when g % 7 = 0 then null else 'ssn-' || g end,
            case when g % 13 = 0 then 'a secret ' || g when g % 5 = 0 then 'café 名前 ' || g
                 when g % 11 = 0 then null else 'note ' || g end,
            case when g % 1000 = 0 then repeat('ü', 150000) || ' secret' else 't' end
        from generate_series(1, 3000) g""")
    assert code == 0, err
    query = f"select id, ssn, note, tail from {t} order by id"
    try:
        direct = await pg.in_thread(_fetch, pg.DIRECT, query)

        def masked(row: tuple[Any, ...]) -> tuple[Any, ...]:
            return (row[0], None if row[1] is None else "***",
                    *(None if v is None else "[x]" if "secret" in v else v for v in row[2:]))

        expected = [masked(r) for r in direct]
        assert sum(1 for r in expected if r[2] == "[x]") == 230 and expected[999][3] == "[x]"
        stages = (f'{{ use = "mask_sources", sources = ["public.{t}.ssn"], scan = ["note", "tail"], '
                  'columnwise = true }')
        async with pg_gateway(stages=stages) as gw:
            assert await pg.in_thread(_fetch, pg.dsn(gw.port("pg")), query) == expected
            code, out, err = await pg.psql(pg.dsn(gw.port("pg")), "-Atc", query)
            assert code == 0, err
            assert out.splitlines() == ["|".join("" if v is None else str(v) for v in r) for r in expected]
        calls = [e[1] for e in events if e[0] == "edit call"]
        assert ("row call", None) not in events
        assert 2 < len(calls) < 2 * 3000 / 10
        # each call: the scanned values of its rows, and how many ssn values it replaced
        assert sum(n for n, _ in calls) == 2 * 2 * 3000
        assert sum(r for _, r in calls) == 2 * (3000 - 3000 // 7)
    finally:
        await pg.psql(pg.DIRECT, "-c", f"drop table {t}")


async def test_masking_filters_rows_one_at_a_time(pg_gateway: Any, pg: Any, events: list[Any]) -> None:
    t = table()
    code, _, err = await pg.psql(pg.DIRECT, "-c", f"create table {t} (id int, ssn text, note text);"
                                 f"insert into {t} select g, 'ssn-' || g, 'n' from generate_series(1, 500) g")
    assert code == 0, err
    try:
        stages = f'{{ use = "mask_sources", sources = ["public.{t}.ssn"], names = ["secret"] }}'
        async with pg_gateway(stages=stages) as gw:
            code, out, err = await pg.psql(pg.dsn(gw.port("pg")), "-Atc",
                                           f"select id, ssn as x, note from {t} order by id limit 3;"
                                           f"select 'abc' as secret, 2 as y")
            assert code == 0, err
            assert out.split() == ["1|***|n", "2|***|n", "3|***|n", "***|2"]
            code, out, err = await pg.psql(pg.dsn(gw.port("pg")), "-Atc", f"select count(*) from {t}")
            assert out.strip() == "500"
            # an expression over a masked column is masked too: its sources come from SQL lineage
            code, out, err = await pg.psql(pg.dsn(gw.port("pg")), "-Atc",
                                           f"select upper(ssn) as shout, id from {t} where id = 1")
            assert out.strip() == "***|1", err
    finally:
        await pg.psql(pg.DIRECT, "-c", f"drop table {t}")
    cols = [e[1] for e in events if e[0] == "columns"]
    assert cols[0] == [("id", "int4", False, (f"public.{t}.id",)), ("x", "text", False, (f"public.{t}.ssn",)),
                       ("note", "text", False, (f"public.{t}.note",))]
