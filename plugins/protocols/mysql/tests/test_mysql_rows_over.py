"""``rows_over`` on MySQL: the server counts the rows (savepoint or gw's own transaction), over the limit the write
is rolled back and refused; within it the write runs once and is kept."""

from __future__ import annotations

from typing import Any

import pytest

STAGES = '{ use = "guard", deny = [ { kind = "write", rows_over = 3 } ] }'


async def test_rows_over_is_measured_by_the_server(my_gateway: Any, my: Any, table: str) -> None:
    import pymysql

    my.direct(f"CREATE TABLE {table} (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB", fetch=False)
    my.direct(f"INSERT INTO {table} VALUES (1, 'a'), (2, 'a'), (3, 'a'), (4, 'a'), (5, 'a')", fetch=False)
    async with my_gateway(stages=STAGES) as gw:
        token = gw.token("agent-7", ["agents"])

        def talk() -> tuple[Any, int, int]:
            conn = my.connect(gw.port("my"), token, autocommit=True)
            try:
                with conn.cursor() as cur:
                    try:
                        cur.execute(f"UPDATE {table} SET v = 'b' WHERE id > 0")
                        over: Any = cur.rowcount
                    except pymysql.MySQLError as e:
                        over = e
                    within = cur.execute(f"UPDATE {table} SET v = concat(v, '+') WHERE id <= 2")
                    conn.begin()
                    in_tx = cur.execute(f"DELETE FROM {table} WHERE id = 5")
                    conn.rollback()
                    return over, within, in_tx
            finally:
                conn.close()

        over, within, in_tx = await my.in_thread(talk)
    assert isinstance(over, pymysql.MySQLError) and "would change 5 rows" in str(over), over
    assert within == 2 and in_tx == 1
    rows = my.direct(f"SELECT id, v FROM {table} ORDER BY id")
    assert rows == ((1, "a+"), (2, "a+"), (3, "a"), (4, "a"), (5, "a")), rows


@pytest.mark.parametrize("sql", ["DELETE FROM {t} WHERE id > 0; SELECT 1"])
async def test_unmeasurable_writes_are_over_the_limit(my_gateway: Any, my: Any, table: str, sql: str) -> None:
    import pymysql

    my.direct(f"CREATE TABLE {table} (id INT PRIMARY KEY) ENGINE=InnoDB", fetch=False)
    my.direct(f"INSERT INTO {table} VALUES (1)", fetch=False)
    async with my_gateway(stages=STAGES) as gw:
        token = gw.token("agent-7", ["agents"])

        def talk() -> Any:
            conn = my.connect(gw.port("my"), token, autocommit=True,
                              client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
            try:
                with conn.cursor() as cur:
                    try:
                        cur.execute(sql.format(t=table))
                    except pymysql.MySQLError as e:
                        return e
                    return None
            finally:
                conn.close()

        error = await my.in_thread(talk)
    assert isinstance(error, pymysql.MySQLError) and "cannot count the rows" in str(error), error
    assert my.direct(f"SELECT COUNT(*) FROM {table}") == ((1,),)
