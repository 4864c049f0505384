"""Real clients through gw against the real MariaDB: the mariadb CLI, PyMySQL, mysqlclient,
mysql-connector-python (pure and C, prepared statements), aiomysql and SQLAlchemy.  Results are compared with
a direct connection."""

from __future__ import annotations

import datetime
import decimal
from typing import Any

import pytest

STAGES = '{ use = "recorder" }, { use = "guard", deny = [ { kind = "ddl", except_groups = ["dba"] } ] }'


def _setup(my: Any, table: str) -> None:
    my.direct(f"CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(40), price DECIMAL(8,2), born DATE, "
              f"ts DATETIME(3), big BIGINT UNSIGNED, f DOUBLE, blobby BLOB, note TEXT)", fetch=False)
    my.direct(f"INSERT INTO {table} VALUES (1, 'ann', 9.99, '1990-01-02', '2024-05-06 07:08:09.123', "
              f"18446744073709551615, 1.5, x'00ff10', NULL), (2, 'bøb \\'q\\'', -1.00, NULL, NULL, 0, -2.25, "
              f"NULL, 'line1\\nline2')", fetch=False)


async def test_mariadb_cli(my_gateway: Any, my: Any, table: str, events: list[Any]) -> None:
    _setup(my, table)
    async with my_gateway(stages=STAGES) as gw:
        port = gw.port("my")
        token = gw.token("agent-7", ["agents"])
        code, out, err = await my.cli(port, token, f"SELECT id, name, price FROM {table} ORDER BY id; SELECT 42")
        assert code == 0, err
        assert out.splitlines() == ["id\tname\tprice", "1\tann\t9.99", "2\tbøb 'q'\t-1.00", "42", "42"]
        code, out, err = await my.cli(port, token, f"DROP TABLE {table}")
        assert code == 1 and "ERROR 1227 (42000)" in err and "guard" in err, err
        code, out, err = await my.cli(port, "not-a-token", "SELECT 1")
        assert code == 1 and "ERROR 1045 (28000)" in err, err
        # a script on stdin, several statements, one of which fails: the CLI stops there
        code, out, err = await my.cli(port, token, "", stdin=f"SELECT COUNT(*) FROM {table};\nSELECT nope;\n"
                                      f"SELECT 2;\n".encode())
        assert code == 1 and out.splitlines() == ["COUNT(*)", "2"] and "Unknown column 'nope'" in err
    decided = [e[1] for e in events if e[0] == "decided"]
    assert any(d[0].startswith("DROP TABLE") and d[3] == "deny" for d in decided)


def _pymysql_rows(conn: Any, table: str) -> Any:
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {table} ORDER BY id")
        rows = cur.fetchall()
        cur.execute(f"SELECT name FROM {table} WHERE id = %s AND name LIKE %s", (2, "b%"))
        rows += cur.fetchall()
    return rows


async def test_pymysql_matches_direct(my_gateway: Any, my: Any, table: str) -> None:
    import pymysql

    _setup(my, table)
    direct = pymysql.connect(host="127.0.0.1", user="root", database="test")
    expected = _pymysql_rows(direct, table)
    direct.close()
    async with my_gateway(stages=STAGES) as gw:
        token = gw.token("agent-7", ["agents"])

        def run() -> Any:
            conn = my.connect(gw.port("my"), token)
            try:
                got = _pymysql_rows(conn, table)
                with conn.cursor() as cur:
                    cur.execute(f"UPDATE {table} SET name = 'x' WHERE id = 99")
                    affected = cur.rowcount
                    conn.begin()
                    cur.execute(f"UPDATE {table} SET note = 'n' WHERE id = 1")
                    conn.rollback()
                    cur.execute(f"SELECT note FROM {table} WHERE id = 1")
                    note = cur.fetchall()
                return got, affected, note
            finally:
                conn.close()

        got, affected, note = await my.in_thread(run)
    assert got == expected
    assert affected == 0 and note == ((None,),)


async def test_mysqlclient(my_gateway: Any, my: Any, table: str) -> None:
    import MySQLdb

    _setup(my, table)
    async with my_gateway(stages=STAGES) as gw:
        token = gw.token("agent-7", ["agents"])

        def run() -> Any:
            conn = MySQLdb.connect(host="127.0.0.1", port=gw.port("my"), user="agent-7", password=token,
                                   database="test", ssl_mode="DISABLED")
            try:
                cur = conn.cursor()
                cur.execute(f"SELECT id, name, price, born FROM {table} ORDER BY id")
                rows = cur.fetchall()
                cur.execute("SELECT %s, %s", ("it's", 3))
                rows += cur.fetchall()
                return rows
            finally:
                conn.close()

        rows = await my.in_thread(run)
    assert rows[0] == (1, "ann", decimal.Decimal("9.99"), datetime.date(1990, 1, 2))
    assert rows[1][1] == "bøb 'q'" and rows[2] == ("it's", 3)


@pytest.mark.parametrize("pure", [True, False])
async def test_mysql_connector_prepared(my_gateway: Any, my: Any, table: str, events: list[Any],
                                        certs: dict[str, Any], pure: bool) -> None:
    """mysql-connector-python sends a cleartext password only over TLS, so this listener offers it."""
    import mysql.connector

    _setup(my, table)
    cert, key = certs["cert"], certs["key"]
    tls = f'tls = {{ cert = "{cert}", key = "{key}" }}\nrequire_tls = true'
    async with my_gateway(stages=STAGES, listener=tls) as gw:
        token = gw.token("agent-7", ["agents"])

        def run() -> Any:
            conn = mysql.connector.connect(host="127.0.0.1", port=gw.port("my"), user="agent-7", password=token,
                                           database="test", auth_plugin="mysql_clear_password", use_pure=pure,
                                           ssl_ca=str(certs["ca"]), ssl_verify_cert=True)
            try:
                cur = conn.cursor(prepared=True)
                cur.execute(f"SELECT id, name, price, born, ts, big, f, blobby FROM {table} WHERE id >= ? "
                            "ORDER BY id", (1,))
                rows = cur.fetchall()
                cur.execute(f"UPDATE {table} SET note = ? WHERE id = ?", ("hello", 2))
                conn.commit()
                cur.close()
                plain = conn.cursor()
                plain.execute(f"SELECT note FROM {table} WHERE id = 2")
                note = plain.fetchall()
                return rows, note
            finally:
                conn.close()

        rows, note = await my.in_thread(run)

        def plaintext() -> Any:
            import pymysql

            try:
                my.connect(gw.port("my"), token, ssl_disabled=True)
            except pymysql.MySQLError as e:
                return e.args
            return None

        refused = await my.in_thread(plaintext)
    assert refused is not None and refused[0] == 1045 and "requires TLS" in refused[1]
    direct = mysql.connector.connect(host="127.0.0.1", user="root", database="test", use_pure=pure,
                                     ssl_disabled=True)
    cur = direct.cursor(prepared=True)
    cur.execute(f"SELECT id, name, price, born, ts, big, f, blobby FROM {table} WHERE id >= ? ORDER BY id", (1,))
    expected = cur.fetchall()
    direct.close()
    assert rows == expected
    assert rows[0][:4] == (1, "ann", decimal.Decimal("9.99"), datetime.date(1990, 1, 2))
    assert rows[0][4] == datetime.datetime(2024, 5, 6, 7, 8, 9, 123000)
    assert rows[0][6] == 1.5 and bytes(rows[0][7]) == b"\x00\xff\x10"
    assert note == [("hello",)]
    executes = [e[1] for e in events if e[0] == "decided" and e[1][0].startswith("UPDATE")]
    assert executes and executes[0][4] == ("hello", 2)  # parameters shown to stages


async def test_aiomysql_and_sqlalchemy(my_gateway: Any, my: Any, table: str) -> None:
    import aiomysql  # noqa: F401  (driven from an asyncio loop in a thread)
    import sqlalchemy as sa

    _setup(my, table)
    async with my_gateway(stages=STAGES) as gw:
        port = gw.port("my")
        token = gw.token("agent-7", ["agents"])

        def run_aiomysql() -> Any:
            import asyncio

            async def main() -> Any:
                conn = await aiomysql.connect(host="127.0.0.1", port=port, user="agent-7", password=token,
                                              db="test")
                async with conn.cursor() as cur:
                    await cur.execute(f"SELECT id, name FROM {table} ORDER BY id")
                    rows = await cur.fetchall()
                conn.close()
                return rows

            import aiomysql

            return asyncio.run(main())

        def run_sqlalchemy() -> Any:
            from urllib.parse import quote

            engine = sa.create_engine(f"mysql+pymysql://agent-7:{quote(token, safe='')}@127.0.0.1:{port}/test")
            with engine.connect() as conn:
                rows = conn.execute(sa.text(f"SELECT id, name FROM {table} WHERE id = :i"), {"i": 1}).all()
                meta = sa.MetaData()
                t = sa.Table(table, meta, autoload_with=conn)
                names = conn.execute(sa.select(t.c.name).order_by(t.c.id)).scalars().all()
            engine.dispose()
            return rows, names

        rows = await my.in_thread(run_aiomysql)
        sa_rows, names = await my.in_thread(run_sqlalchemy)
    assert rows == ((1, "ann"), (2, "bøb 'q'"))
    assert [tuple(r) for r in sa_rows] == [(1, "ann")] and names == ["ann", "bøb 'q'"]
