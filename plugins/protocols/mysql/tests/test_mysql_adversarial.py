"""The adversarial corpus, end to end against the real MariaDB: an agent with a valid token and full knowledge
of gw tries to make a statement mean one thing to gw and another to the server (character sets, sql_mode,
multi-statement texts, prepared statement ids, KILL), or to reach side effects.  Each attempt is refused or
correctly classified, and the victim table is intact afterwards."""

from __future__ import annotations

from typing import Any

import pytest

#: Agents may read and write; DDL, admin and unknown statements are denied (the canonical guard).
STAGES = ('{ use = "recorder" }, { use = "guard", deny = [ { kind = "ddl", except_groups = ["dba"] }, '
          '{ kind = "admin", except_groups = ["dba"] }, { kind = "unknown" } ] }')


def _victim(my: Any, table: str) -> None:
    my.direct(f"CREATE TABLE {table} (id INT PRIMARY KEY, v VARCHAR(40))", fetch=False)
    my.direct(f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b')", fetch=False)


def _attempts(port: int, token: str, my: Any, steps: list[tuple[str, bytes]], **kw: Any) -> list[Any]:
    """Run each (setup-or-attack) step on one connection; returns the error (or rows) of each."""
    import pymysql

    conn = my.connect(port, token, client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS, autocommit=True, **kw)
    out: list[Any] = []
    try:
        with conn.cursor() as cur:
            for _, sql in steps:
                try:
                    cur.execute(sql)
                    out.append(cur.fetchall())
                    while cur.nextset():
                        pass
                except pymysql.MySQLError as e:
                    out.append(e)
    finally:
        conn.close()
    return out


CHARSET_ATTACKS = [
    # GBK / Big5 / SJIS / CP932: a lead byte swallows the backslash that was meant to escape the quote
    ("gbk", b"SELECT '\xbf\\'; DROP TABLE {t}; -- '"),
    ("gbk", b"SELECT '\xbf\\' OR 1=1; DELETE FROM {t}; -- '"),
    ("big5", b"SELECT '\xa5\\'; DELETE FROM {t}; -- '"),
    ("sjis", b"SELECT '\x95\\'; DELETE FROM {t}; -- '"),
    ("cp932", b"SELECT '\x81\\'; DELETE FROM {t}; -- '"),
    # the backtick variant: the identifier does not end where a byte-wise reader thinks
    ("gbk", b"SELECT 1 AS `\xbf`; DELETE FROM {t}; -- `"),
]


@pytest.mark.parametrize(("charset", "attack"), CHARSET_ATTACKS)
async def test_multibyte_charset_injection_refused(my_gateway: Any, my: Any, table: str, charset: str,
                                                   attack: bytes) -> None:
    _victim(my, table)
    async with my_gateway(stages=STAGES) as gw:
        token = gw.token("agent-7", ["agents"])
        steps = [("set", f"SET NAMES {charset}".encode()), ("attack", attack.replace(b"{t}", table.encode())),
                 ("after", f"SELECT COUNT(*) FROM {table}".encode())]
        set_names, result, after = await my.in_thread(_attempts, gw.port("my"), token, my, steps)
    assert not isinstance(set_names, Exception) and not set_names
    assert isinstance(result, Exception) and result.args[0] == 1235 and "character set" in result.args[1], result
    assert after == ((2,),)
    assert my.direct(f"SELECT COUNT(*) FROM {table}") == ((2,),)


async def test_gbk_from_the_handshake_and_plain_gbk_text_works(my_gateway: Any, my: Any, table: str) -> None:
    """The start-up collation sets the character set too; Chinese text whose bytes are not ASCII works."""
    _victim(my, table)
    async with my_gateway(stages=STAGES) as gw:
        token = gw.token("agent-7", ["agents"])
        steps = [("attack", b"SELECT '\xbf\\'; DELETE FROM " + table.encode() + b"; -- '"),
                 ("ok", "SELECT '中文' AS x, 1".encode("gbk"))]
        attack, ok = await my.in_thread(lambda: _attempts(gw.port("my"), token, my, steps, charset="gbk"))
    assert isinstance(attack, Exception) and attack.args[0] == 1235
    assert ok == (("中文", 1),)
    assert my.direct(f"SELECT COUNT(*) FROM {table}") == ((2,),)


async def test_sql_mode_is_followed(my_gateway: Any, my: Any, table: str, events: list[Any]) -> None:
    """NO_BACKSLASH_ESCAPES and ANSI_QUOTES change where strings end; gw reads with the server's mode."""
    _victim(my, table)
    async with my_gateway(stages=STAGES) as gw:
        token = gw.token("agent-7", ["agents"])
        t = table.encode()
        steps = [
            ("mode", b"SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'"),
            # with NO_BACKSLASH_ESCAPES the backslash is a character: the DELETE is code, and seen
            ("attack", b"SELECT 'a\\'; DELETE FROM " + t + b" WHERE id = 1; -- '"),
            ("mode", b"SET SESSION sql_mode = 'ANSI_QUOTES'"),
            # with ANSI_QUOTES "..." is an identifier: a DROP hidden in it by default-mode reading is seen
            ("attack", b'SELECT 1 AS "x\\"; DROP TABLE ' + t + b'; -- "'),
            ("count", b"SELECT COUNT(*) FROM " + t),
        ]
        out = await my.in_thread(_attempts, gw.port("my"), token, my, steps)
    assert not out[0] and not out[2], out
    # the DELETE with a WHERE is allowed (agents may write) and ran: gw saw it as a write, not a read
    decided = [e[1] for e in events if e[0] == "decided"]
    attack = next(d for d in decided if b"a\\'" in d[0].encode() if isinstance(d[0], str))
    assert attack[1] == "write" and attack[2] == "delete"
    assert isinstance(out[3], Exception) and out[3].args[0] == 1227  # the DROP is denied (ddl)
    assert out[4] == ((1,),)


async def test_mode_changes_must_come_last_and_unfollowable_modes_are_restored(my_gateway: Any, my: Any,
                                                                               table: str) -> None:
    _victim(my, table)
    async with my_gateway(stages='{ use = "recorder" }') as gw:
        token = gw.token("agent-7", ["agents"])
        t = table.encode()
        steps = [
            ("multi", b"SET NAMES gbk; SELECT '\xbf\\'; DELETE FROM " + t + b"; -- '"),
            ("multi", b"SET sql_mode = 'NO_BACKSLASH_ESCAPES'; SELECT 'a\\'; DELETE FROM " + t + b"; -- '"),
            ("oracle", b"SET sql_mode = 'ORACLE'"),
            ("mode", b"SELECT @@sql_mode"),
            ("swe", b"SET NAMES ucs2"),
            ("count", b"SELECT COUNT(*) FROM " + t),
        ]
        out = await my.in_thread(_attempts, gw.port("my"), token, my, steps)
    assert all(isinstance(o, Exception) and o.args[0] == 1235 for o in out[:3]), out
    assert "must be the last statement" in out[0].args[1]
    assert "ORACLE" in out[2].args[1] and "restored" in out[2].args[1]
    assert "ORACLE" not in out[3][0][0]
    assert isinstance(out[4], Exception)  # the server refuses ucs2 as a client character set
    assert out[5] == ((2,),)


async def test_prepared_statement_ids_are_the_servers(my_gateway: Any, my: Any, table: str,
                                                      events: list[Any]) -> None:
    """An execute of an id the server did not confirm never reaches it; a failed prepare leaves no text."""
    import struct

    import trio

    _victim(my, table)
    async with my_gateway(stages=STAGES) as gw:
        token = gw.token("agent-7", ["agents"])

        def run() -> Any:
            conn = my.connect(gw.port("my"), token, autocommit=True)
            results = []
            # a prepare the server rejects: no id
            conn._execute_command(0x16, "SELEKT nonsense")
            try:
                conn._read_packet()
            except Exception as e:  # noqa: BLE001
                results.append(e)
            # execute of ids nobody prepared
            for sid in (1, 2, 0xFFFFFFFF):
                conn._execute_command(0x17, struct.pack("<IBI", sid, 0, 1).decode("latin-1"))
                try:
                    conn._read_packet()
                except Exception as e:  # noqa: BLE001
                    results.append(e)
            with conn.cursor() as cur:
                cur.execute(f"SELECT COUNT(*) FROM {table}")
                results.append(cur.fetchall())
            conn.close()
            return results

        results = await trio.to_thread.run_sync(run)
    assert results[0].args[0] == 1064
    assert [r.args[0] for r in results[1:4]] == [1243, 1243, 1243]
    assert results[4] == ((2,),)


@pytest.mark.parametrize(("sql", "kind"), [
    ("SELECT * FROM {t} INTO OUTFILE '/tmp/gw-x'", ("unknown", "admin")),
    ("SELECT LOAD_FILE('/etc/passwd')", ("admin",)),
    ("SELECT SLEEP(5)", ("admin",)),
    ("SELECT BENCHMARK(100000000, MD5('x'))", ("admin",)),
    ("DO SLEEP(5)", ("unknown", "admin")),
    ("SET GLOBAL max_connections = 1", ("admin",)),
    ("SET @@global.sql_mode = ''", ("admin",)),
    ("GRANT ALL ON *.* TO 'x'@'%'", ("admin",)),
    ("SELECT GET_LOCK('x', 10)", ("admin",)),
    ("/*!50000 DROP TABLE {t} */", ("unknown",)),
    ("SELECT 1 --\x7f\n; DELETE FROM {t}", ("write",)),
    ("CALL some_proc()", ("unknown",)),
    ("PREPARE s FROM 'DELETE FROM {t}'", ("unknown",)),
])
async def test_side_effects_are_classified(my_gateway: Any, my: Any, table: str, events: list[Any], sql: str,
                                           kind: tuple[str, ...]) -> None:
    _victim(my, table)
    async with my_gateway(stages=STAGES) as gw:
        token = gw.token("agent-7", ["agents"])
        text = sql.replace("{t}", table)
        (out,) = await my.in_thread(_attempts, gw.port("my"), token, my, [("x", text.encode())])
    decided = [e[1] for e in events if e[0] == "decided"]
    assert decided and decided[-1][1] in kind, decided
    if "write" not in kind:
        assert isinstance(out, Exception) and out.args[0] == 1227
    assert my.direct(f"SELECT COUNT(*) FROM {table}") == ((2,),) or "write" in kind


async def test_kill_translation_and_ownership(my_gateway: Any, my: Any) -> None:
    """KILL QUERY <gw id> from another connection stops the query; another identity's KILL is refused; an
    upstream thread id is not a gw id."""
    import pymysql
    import trio

    async with my_gateway(stages='{ use = "recorder" }') as gw:
        port = gw.port("my")
        token = gw.token("agent-7", ["agents"])
        other = gw.token("agent-9", ["agents"])

        def open_victim() -> Any:
            conn = my.connect(port, token)
            with conn.cursor() as cur:
                cur.execute("SELECT CONNECTION_ID()")
                return conn, cur.fetchall()[0][0]

        victim, upstream_id = await trio.to_thread.run_sync(open_victim)
        gw_id = victim.thread_id()
        result: dict[str, Any] = {}

        def sleeper() -> None:
            with victim.cursor() as cur:
                try:
                    cur.execute("SELECT SLEEP(20)")
                    result["sleep"] = cur.fetchall()
                except pymysql.MySQLError as e:
                    result["sleep"] = e.args[0]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, sleeper)
            await trio.sleep(0.5)

            def kill(tok: str, target: int) -> Any:
                conn = my.connect(port, tok)
                try:
                    with conn.cursor() as cur:
                        cur.execute(f"KILL QUERY {target}")
                    return None
                except pymysql.MySQLError as e:
                    return e
                finally:
                    conn.close()

            denied = await trio.to_thread.run_sync(kill, other, gw_id)
            unknown = await trio.to_thread.run_sync(kill, token, upstream_id + 1_000_000)
            ok = await trio.to_thread.run_sync(kill, token, gw_id)
        await trio.to_thread.run_sync(victim.close)
    assert denied is not None and denied.args[0] == 1095
    assert unknown is not None and unknown.args[0] == 1094
    assert ok is None
    # interrupted: MariaDB answers 1317, MySQL lets SLEEP return 1
    assert result["sleep"] in (1317, ((1,),)), result
